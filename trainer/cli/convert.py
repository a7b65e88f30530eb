"""`python -m trainer convert`: LLaMA-Factory training YAML <-> tunedeck preset.

    python -m trainer convert --from llamafactory IN.yaml OUT.yaml   # LLaMA-Factory -> tunedeck preset
    python -m trainer convert --to llamafactory IN.yaml OUT.yaml     # tunedeck config/preset -> LLaMA-Factory
    python -m trainer convert --to script IN.yaml OUT.py             # tunedeck config -> plain Python script

Keys that could not be carried over are listed on stderr (and as comments in OUT). Exit codes: 0
converted, 2 a file that cannot be read, parsed or validated (a message, no traceback).
With --to llamafactory the dataset is described in dataset_info.json next to OUT (merged into an
existing one), and OUT's dataset_dir points there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainer.errors import ConfigError
from trainer.textio import write_text_atomic

EXIT_OK, EXIT_INVALID = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="from_format", choices=["llamafactory"],
                           help="convert a file in this format into a tunedeck preset")
    direction.add_argument("--to", dest="to_format", choices=["llamafactory", "script"],
                           help="convert a tunedeck config or preset into this format")
    parser.add_argument("input", help="the file to convert")
    parser.add_argument("output", help="where to write the result")
    parser.add_argument("--allow-unknown", action="store_true",
                        help="with --to: ignore keys of the tunedeck file this version does not know")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        return _fail(f"{dst}: the output would overwrite the input; name another file")
    try:
        if args.from_format:
            return _from_llamafactory(src, dst)
        if args.to_format == "script":
            return _to_script(src, dst, args.allow_unknown)
        return _to_llamafactory(src, dst, args.allow_unknown)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or dst}: {exc.strerror or exc}")


def _from_llamafactory(src: Path, dst: Path) -> int:
    from trainer.interop.llamafactory import import_llamafactory_file
    from trainer.interop.presets import preset_to_yaml

    result = import_llamafactory_file(src)
    description = f"Imported from the LLaMA-Factory training config {src.name}."
    if result.unmapped:
        description += " Not imported: " + ", ".join(result.unmapped) + "."
    header = [f"# tunedeck preset imported from LLaMA-Factory: {src}"]
    header += [f"# not imported: {key}: {why}" for key, why in result.unmapped.items()]
    text = preset_to_yaml(result.config, title=f"Imported: {src.stem}", description=description,
                          meta={"imported_from": "llamafactory"})
    write_text_atomic(dst, "\n".join(header) + "\n" + text)
    _report("not imported", result.unmapped, result.notes)
    print(f"wrote {dst} ({len(result.unmapped)} key{'s' if len(result.unmapped) != 1 else ''} not imported)")
    return EXIT_OK


def _report(what: str, unmapped: dict[str, str], notes: list[str]) -> None:
    """Every key a conversion left behind, with why, and its notes: on stderr, so OUT stays clean."""
    for key, why in unmapped.items():
        print(f"{what}: {key}: {why}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _load_config(src: Path, allow_unknown: bool):
    from trainer.interop.presets import preset_from_file

    loaded = preset_from_file(src, allow_unknown=allow_unknown)
    for key, why in loaded.ignored.items():
        print(f"ignored: {key}: {why}", file=sys.stderr)
    return loaded.config


def _to_llamafactory(src: Path, dst: Path, allow_unknown: bool) -> int:
    from trainer.interop.lf_datasets import merge_dataset_info
    from trainer.interop.llamafactory import export_llamafactory

    cfg = _load_config(src, allow_unknown)
    dataset_dir = dst.resolve().parent
    result = export_llamafactory(cfg, dataset_dir=dataset_dir)
    info_path = dataset_dir / "dataset_info.json"
    merged = merge_dataset_info(info_path, result.dataset_info)
    write_text_atomic(dst, result.yaml_text)
    write_text_atomic(info_path, json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    _report("not exported", result.unmapped, result.notes)
    print(f"wrote {dst} and the dataset entry '{result.dataset_name}' in {info_path}")
    return EXIT_OK


def _to_script(src: Path, dst: Path, allow_unknown: bool) -> int:
    from trainer.interop.export_script import write_script

    cfg = _load_config(src, allow_unknown)
    write_script(cfg, dst)
    print(f"wrote {dst}: python {dst} --output-dir OUT")
    return EXIT_OK
