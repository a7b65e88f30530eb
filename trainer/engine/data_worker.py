"""The data worker: work on a user's data in a child process with a memory and time cap, never in the web
server. `python -m trainer.engine.data_worker` reads one JSON request on stdin and writes one JSON
answer on stdout; trainer/jobs/sandbox.py starts it under RLIMIT_AS and a deadline.

Jobs:
  facts    {"config"}                                   -> {"num_train", "num_eval", "format", "skipped"}
  preview  {"config", "page", "page_size", "pages", "base_dir"}
           -> the Data tab's content as plain data: summary facts, statistics with the histogram, token
              lengths, and `pages` pages of rendered rows from `page` on
  export   {"config", "kind": "llamafactory" | "script"} -> {"text"}: the Presets tab's exports

Loading a tokenizer may run a model repository's code (trust_remote_code, admin-only on a shared server):
that happens here, in a process that holds no secret of the server and dies after one answer.
A dataset that is not a regular file (/dev/zero, a FIFO) or larger than the limit is refused before it
is read.
"""

from __future__ import annotations

import resource
import sys


def _cap_memory(argv: list[str]) -> None:
    """RLIMIT_AS from `--memory-bytes N`, before anything else is imported or allocated."""
    if "--memory-bytes" in argv:
        limit = int(argv[argv.index("--memory-bytes") + 1])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


if __name__ == "__main__":
    _cap_memory(sys.argv)

import json  # noqa: E402 - after the cap: every allocation from here on counts against it
import math  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from trainer.config import ConfigError, TrainConfig  # noqa: E402
from trainer.datasets import DataError, inspect_dataset, load_examples, preview_rows, resolve_source  # noqa: E402
from trainer.local_names import hub_id_only  # noqa: E402

MAX_DATASET_BYTES = int(os.environ.get("TUNEDECK_MAX_DATASET_BYTES", str(2 * 1024**3)))
MAX_RAW_ROW_CHARS = 2000  # an untokenized row shown as text: a long document would swamp the page


def check_dataset_file(cfg: TrainConfig, base_dir: Any = None) -> None:
    """DataError for a local dataset that is not a regular file or is too large; Hub ids pass."""
    kind, where = resolve_source(cfg.dataset, base_dir, cfg.dataset_split)
    if kind != "file":
        return
    info = os.stat(where)
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"dataset '{cfg.dataset}': not a regular file")
    if info.st_size > MAX_DATASET_BYTES:
        raise DataError(f"dataset '{cfg.dataset}': {info.st_size:,} bytes is larger than the limit "
                        f"({MAX_DATASET_BYTES:,} bytes)")


def facts(request: dict[str, Any]) -> dict[str, Any]:
    cfg = TrainConfig.from_dict(request["config"])
    check_dataset_file(cfg)
    loaded = load_examples(cfg)
    return {"num_train": len(loaded.train), "num_eval": len(loaded.eval), "format": loaded.format,
            "skipped": loaded.skipped}


def preview(request: dict[str, Any]) -> dict[str, Any]:
    cfg = TrainConfig.from_dict(request["config"])
    base_dir = request.get("base_dir")
    page, page_size = max(1, int(request.get("page") or 1)), max(1, int(request.get("page_size") or 5))
    pages_wanted = max(1, min(50, int(request.get("pages") or 1)))
    check_dataset_file(cfg, base_dir)
    note = ""
    try:
        from trainer.engine.model import load_tokenizer

        tokenizer = load_tokenizer(cfg)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded: show the rows untokenized
        tokenizer = None
        note = (f"The tokenizer of '{cfg.model_name_or_path}' could not be loaded ({' '.join(str(exc).split())[:300]}): "
                "rows are shown without the template, masks and lengths.")
    report = inspect_dataset(cfg, tokenizer, base_dir)
    loaded = report.loaded
    answer: dict[str, Any] = {"note": note, "error": report.error, "warnings": list(report.warnings),
                              "stats": report.stats, "lengths": report.lengths, "loaded": None, "pages": [],
                              "last_page": 1}
    if loaded is not None:
        answer["loaded"] = {
            "source": str(loaded.source), "format": loaded.format, "skipped": loaded.skipped,
            "train_rows": report.train_rows if report.train_rows is not None else len(loaded.train),
            "eval_rows": len(loaded.eval), "errors": [str(i) for i in loaded.errors]}
        last = max(1, math.ceil(len(loaded.train) / page_size))
        answer["last_page"] = last
        window = range(min(page, last), min(page + pages_wanted, last + 1))
        try:
            answer["pages"] = [_page(loaded.train, tokenizer if report.tokenized is not None else None, cfg, p,
                                     page_size) for p in window]
        except Exception as exc:  # noqa: BLE001 - a template failing on one row
            answer["rows_error"] = str(exc)
    return answer


def _page(rows: list, tokenizer: Any, cfg: TrainConfig, page: int, page_size: int) -> dict[str, Any]:
    """One page of rows as the model sees them; as plain text when there is no tokenizer."""
    if tokenizer is not None:
        return preview_rows(rows, tokenizer, cfg, page, page_size)
    start = (page - 1) * page_size
    return {"page": page, "raw": [str(dict(ex))[:MAX_RAW_ROW_CHARS] for ex in rows[start:start + page_size]]}


def export(request: dict[str, Any]) -> dict[str, Any]:
    """The form's config as a LLaMA-Factory YAML or a plain script: both read the dataset file (its format
    and columns), so they run here, under the caps, never in the web server."""
    cfg = TrainConfig.from_dict(request["config"])
    check_dataset_file(cfg)
    if request.get("kind") == "llamafactory":
        from trainer.interop.llamafactory import to_llamafactory_yaml

        return {"text": to_llamafactory_yaml(cfg)}
    from trainer.interop.export_script import export_script

    if not hub_id_only(cfg.model_name_or_path):
        return {"text": export_script(cfg)}
    # A shared server's bare org/name is a Hub id: the script must not name a local folder of that name (which
    # would tell that it exists), so the model is resolved from an empty folder, the dataset from here.
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tunedeck-export-") as empty:
        os.chdir(empty)
        try:
            return {"text": export_script(cfg, base_dir=here)}
        finally:
            os.chdir(here)


JOBS = {"facts": facts, "preview": preview, "export": export}


def main() -> int:
    # Libraries print to stdout while loading; the answer owns it, so everything else goes to stderr.
    answer_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        request = json.loads(sys.stdin.read())
        answer = {"ok": True, "result": JOBS[request["job"]](request)}
    except (ConfigError, DataError, OSError) as exc:
        answer = {"ok": False, "kind": "input", "error": str(exc)}
    except MemoryError:
        answer = {"ok": False, "kind": "memory", "error": "ran out of its memory limit"}
    except Exception as exc:  # noqa: BLE001 - anything else is still one answer, not a traceback in the page
        answer = {"ok": False, "kind": "error", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
    answer_out.write(json.dumps(answer, default=str))
    answer_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
