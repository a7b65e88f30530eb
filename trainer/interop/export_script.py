"""Export a config as a plain Python script (transformers + peft + trl + datasets, no tunedeck import)
that reproduces the run: the same model loading, data normalisation, chat-template rendering and
answer-only loss mask, LoRA/QLoRA/full setup and SFTConfig values as tunedeck's trainer.

The script's text is script_template.py filled in with code copied from tunedeck's own modules: the
named chat template (trainer/templates.py), the answer finder (trainer/datasets) and the SFTConfig
mapping with its routes from the schema (trainer/engine/sft_args.py), so a new field reaches the script
without editing it. What stays tied to the machine is resolved when the script runs, by the same rules
tunedeck applies (precision auto -> bf16/fp16 on a GPU, fp32 on a CPU; attention, packing,
group_by_length and Liger `auto`). The benchmarks compare tunedeck's overhead against this script.

`export_script(cfg) -> str` is pure apart from resolving `demo` (the built demo model's directory, the
shipped dataset's path). CLI: `python -m trainer export-script CONFIG.yaml OUT.py`.
"""

from __future__ import annotations

import inspect
import pprint
from pathlib import Path
from typing import Any, Union

from trainer.config import ConfigError, TrainConfig
from trainer.datasets import ROW_LIST_COLUMNS, SHAREGPT_ROLES
from trainer.engine import sft_args
from trainer.interop.script_template import SCRIPT_BODY, SCRIPT_HEAD
from trainer.textio import write_text_atomic


def _template_source(name: str) -> str:
    """The source of the named template renderer the script needs (tunedeck's own, copied in)."""
    from trainer import templates

    renderer = templates.NAMED_TEMPLATES[name].render
    helpers = [templates._split_system] + ([templates._chatml] if name in ("qwen", "qwen3") else [])
    parts = [f"{constant} = {getattr(templates, constant)!r}"
             for constant in ("ALPACA_SYSTEM", "VICUNA_SYSTEM", "QWEN_SYSTEM", "EMPTY_THOUGHT")] + [""]
    parts += [inspect.getsource(fn) for fn in helpers] + [inspect.getsource(renderer),
                                                          f"NAMED_TEMPLATE = {renderer.__name__}"]
    return "\n".join(parts)


def _answer_finder_source() -> str:
    """tunedeck's own fallback that locates answers by their text (trainer/datasets/render.py), copied in."""
    from trainer.datasets import END_OF_TURN_MARKERS, render

    return f"END_OF_TURN_MARKERS = {END_OF_TURN_MARKERS!r}\n\n\n" + inspect.getsource(render._find_answers)


def _sft_mapping_source(cfg: TrainConfig) -> str:
    """tunedeck's TrainConfig -> SFTConfig mapping (trainer/engine/sft_args.py): what follows from the config
    as literal arguments, and the converters for what depends on the machine, with their routes."""
    runtime = sft_args.runtime_routes()
    converters = {via: sft_args.CONVERTERS[via] for _, _, via in runtime if via}
    static = "".join(f"    {key}={value!r},\n" for key, value in sft_args.static_sft_kwargs(cfg).items())
    parts = ["# SFTConfig arguments derived from CONFIG when exported (change a training value here; the\n"
             "# machine-dependent rest is decided in sft_config below).\n"
             f"SFT_ARGS = dict(\n{static})"]
    parts += [inspect.getsource(fn).rstrip() for fn in converters.values()]
    parts.append("CONVERTERS = {" + ", ".join(f"{key!r}: {fn.__name__}" for key, fn in converters.items()) + "}")
    parts += [inspect.getsource(sft_args.sft_kwargs).rstrip(), inspect.getsource(sft_args.device_kwargs).rstrip()]
    parts.append("# (field, SFTConfig argument it passes to unchanged, converter) of the machine-dependent fields.\n"
                 f"RUNTIME_ROUTES = {pprint.pformat(runtime, width=100)}")
    return "\n\n\n".join(parts)


def _resolve_paths(cfg: TrainConfig, base_dir: Union[str, Path, None]) -> tuple[str, str]:
    from trainer.datasets import DataError, resolve_source
    from trainer.engine.demo import resolve_model_path

    model = cfg.model_name_or_path
    if model.strip().lower() == "demo":
        model = resolve_model_path(model)
    elif Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    try:
        kind, where = resolve_source(cfg.dataset, base_dir)
    except DataError as exc:
        raise ConfigError([("dataset", str(exc))]) from None
    dataset = str(Path(where).resolve()) if kind == "file" else where
    return model, dataset


def export_script(cfg: TrainConfig, base_dir: Union[str, Path, None] = None, *, title: str | None = None,
                  filename: str = "train_plain.py") -> str:
    """The plain script's text for ``cfg``. ``demo`` model and dataset names become local paths; a
    relative dataset path is resolved against ``base_dir`` (default: the current directory)."""
    from trainer.datasets import ROW_LIST_COLUMNS, SHAREGPT_ROLES
    from trainer.templates import AUTO, FALLBACK_TEMPLATE, NAMED_TEMPLATES

    model, dataset = _resolve_paths(cfg, base_dir)
    values: dict[str, Any] = cfg.to_dict()
    values["dataset"] = dataset
    values.pop("model_name_or_path")
    template = cfg.template if cfg.template != AUTO else FALLBACK_TEMPLATE
    if template not in NAMED_TEMPLATES:
        raise ConfigError([("template", f"unknown chat template '{cfg.template}'")])
    what = "adapter" if cfg.finetuning_type == "lora" else "model"
    head = SCRIPT_HEAD.format(title=title or f"Fine-tune {cfg.model_name_or_path} ({cfg.method_label}) on "
                               f"{cfg.dataset}.", filename=filename, what=what)
    config_text = pprint.pformat(values, indent=1, width=100, sort_dicts=False)
    lines = [
        head,
        f"MODEL = {model!r}",
        f"RUN_NAME = {cfg.display_name!r}",
        f"DATASET_FORMAT = {cfg.dataset_format!r}",
        "# The tunedeck config this script reproduces (every field, so nothing depends on defaults).",
        f"CONFIG = {config_text}",
        "",
        "# The named chat template used when TEMPLATE is not auto, or the tokenizer has no chat template.",
        _template_source(template),
        "",
        "# Locates each answer by its text when the chat template rewrites earlier turns.",
        _answer_finder_source(),
        "",
        "# tunedeck's TrainConfig -> SFTConfig mapping.",
        _sft_mapping_source(cfg),
        SCRIPT_BODY.replace("__ROW_LIST_COLUMNS__", repr(tuple(sorted(ROW_LIST_COLUMNS))))
        # The script renders plain chat turns only: tool-calling rows are tunedeck's (templates.flatten_tools).
        .replace("__SHAREGPT_ROLES__", repr({k: v for k, v in SHAREGPT_ROLES.items()
                                             if v in ("system", "user", "assistant")})),
    ]
    return "\n".join(lines)


def write_script(cfg: TrainConfig, out: Union[str, Path], base_dir: Union[str, Path, None] = None) -> Path:
    out = Path(out)
    write_text_atomic(out, export_script(cfg, base_dir, filename=out.name))
    return out
