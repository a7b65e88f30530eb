"""`python -m trainer check CONFIG.yaml [--json] [--gpu-gb N]`: validate a config and its dataset, print the plan.

Nothing trains. Exit 0 when the config and the dataset are usable, 2 when not (the message names the
field, or the file and line; never a traceback). Offline, a Hub model or dataset that cannot be reached
is a warning and the numbers that need it are reported as unknown; a local path that does not exist is
an error. torch is imported only when a tokenizer is loaded (for the token lengths).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Optional

from trainer.plan.mfu import throughput_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the config (YAML) to check: a preset or a saved config.yaml")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.add_argument("--gpu-gb", type=_gigabytes, default=None, metavar="N",
                        help="judge the memory estimate against a GPU of N GB (default: the GPU of this machine)")


def _gigabytes(text: str) -> float:
    """A GPU's memory in GB: a finite number above 0 (argparse names the option when this refuses)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of GB above 0, got '{text}'")
    return value


def run(args: argparse.Namespace) -> int:
    from trainer.config import ConfigError, TrainConfig

    try:
        cfg = TrainConfig.from_yaml(args.config)
    except ConfigError as exc:
        return _invalid(args, "config", str(exc), [{"field": f, "message": m} for f, m in exc.errors])
    try:
        report = check_config(cfg, gpu_gb=args.gpu_gb)
    except _Invalid as exc:
        return _invalid(args, exc.kind, str(exc), [{"field": exc.field, "message": exc.detail}] if exc.field else None)
    report["config"] = str(args.config)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        print(format_report(report, cfg))
    return 0


class _Invalid(Exception):
    def __init__(self, kind: str, message: str, field: str = ""):
        self.kind, self.field, self.detail = kind, field, message
        super().__init__(f"{field}: {message}" if field else message)


def _invalid(args: argparse.Namespace, kind: str, message: str, errors: Optional[list] = None) -> int:
    if args.json:
        print(json.dumps({"valid": False, "kind": kind, "error": message, "errors": errors or
                          [{"field": "", "message": message}]}, ensure_ascii=False, indent=2))
    print(f"invalid {kind}: {message}" if kind != "config" else f"invalid config: {message}", file=sys.stderr)
    return 2


def _hub_tokenizer_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "tokenizer_config.json")
        return isinstance(found, str)
    except Exception:
        return False


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _hardware(gpu_gb: Optional[float]):
    from trainer.plan.resolve import Hardware

    if gpu_gb:
        return Hardware(device="cuda", num_devices=1, gpu_name=f"a {gpu_gb:g} GB GPU", gpu_total_gb=gpu_gb,
                        bf16_supported=True)
    from trainer.plan.hardware import detect, gpu_count

    if gpu_count() == 0:
        return Hardware()  # no GPU visible: no need to import torch to know it
    return detect()


def check_config(cfg, gpu_gb: Optional[float] = None) -> dict[str, Any]:
    """The check's findings as a dict: the plan's numbers, warnings, dataset and token-length facts.

    Raises _Invalid for a dataset or model path that cannot be used.
    """
    from trainer.datasets import DataError, length_stats, load_examples, resolve_source
    from trainer.engine.model import DEMO_NAME, ModelNotFoundError, looks_like_local_path
    from trainer.hub import (MODELSCOPE, chosen_hub, hub_label, hub_model_id, model_page, modelscope_missing,
                             reachable, unreachable_message)
    from trainer.plan.resolve import resolve_plan
    from trainer.trackers import tracker_links, tracker_problems

    from trainer.config import ConfigError
    from trainer.run.layout import RESUME_LATEST, resolve_resume

    resume = (cfg.resume_from_checkpoint or "").strip()
    if resume and resume.lower() not in RESUME_LATEST:
        try:  # `train` refuses a checkpoint path that is not there: so does `check`
            resolve_resume(resume, ".")
        except ConfigError as exc:
            raise _Invalid("config", str(exc)) from None
    warnings: list[str] = []
    unknown: list[str] = []
    dataset_info: dict[str, Any] = {"name": cfg.dataset}
    loaded = None
    source_kind = ""
    try:
        source_kind, _ = resolve_source(cfg.dataset)
        loaded = load_examples(cfg)
    except DataError as exc:
        text = str(exc)
        if source_kind == "hub" and ("cannot be reached" in text or "offline" in text):
            warnings.append(f"{text}. Steps per epoch, total steps and padding efficiency are unknown until "
                            "the dataset can be read.")
            unknown += ["num_train_samples", "steps_per_epoch", "total_steps", "warmup_steps", "padding_efficiency"]
        else:
            raise _Invalid("dataset", text) from None
    if loaded is not None:
        dataset_info.update(source=str(loaded.source), format=loaded.format, train_rows=len(loaded.train),
                            eval_rows=len(loaded.eval), skipped=loaded.skipped)
        warnings += [str(w) for w in loaded.warnings][:5]
        if loaded.skipped:
            warnings.append(f"{loaded.skipped} invalid rows will be skipped (skip_invalid_rows is on).")
        if cfg.eval_strategy != "no" and not loaded.eval:
            raise _Invalid("dataset", "val_size: the validation split is empty: raise val_size or set eval_strategy no")

    # Token lengths need the model's tokenizer: the demo, a local directory, or a cached/reachable Hub model.
    name = cfg.model_name_or_path.strip()
    tokenizer = None
    model_info: dict[str, Any] = {"name": name, "method": cfg.method_label}
    is_local = name.lower() == DEMO_NAME or looks_like_local_path(name)
    hub = chosen_hub(cfg.model_hub)
    if not is_local:
        model_info.update(hub=hub_label(hub), hub_id=hub_model_id(name, hub), page=model_page(name, hub))
    if not is_local and hub == MODELSCOPE:
        missing = modelscope_missing("model", name)
        if missing:  # the run would stop on it before its first step: so does check
            raise _Invalid("model", missing)
        # ModelScope downloads whole snapshots: check leaves that to the run.
        warnings.append(f"model '{name}' comes from ModelScope ({hub_model_id(name, hub)}), downloaded when the run "
                        "starts: token lengths and padding efficiency are unknown here.")
        unknown.append("padding_efficiency")
    elif is_local or _hub_tokenizer_cached(name) or reachable(hub):
        from trainer.engine.model import load_tokenizer, lora_target_problem_unloaded, model_source

        try:
            source = model_source(cfg)
            model_info["source"] = source
            if loaded is not None:
                tokenizer = load_tokenizer(cfg, source)
            targets = lora_target_problem_unloaded(cfg, source)
            if targets:  # the run would stop on it once the model has loaded: so does check, now
                raise _Invalid("config", targets, field="lora_target")
        except ModelNotFoundError as exc:
            if is_local:
                raise _Invalid("model", str(exc)) from None
            warnings.append(f"{exc} Token lengths and padding efficiency are unknown.")
            unknown.append("padding_efficiency")
    else:
        warnings.append(f"{unreachable_message('model', name, hub)}. Its tokenizer cannot be loaded, so token "
                        "lengths and padding efficiency are unknown.")
        unknown.append("padding_efficiency")

    num_rows: Optional[int] = len(loaded.train) if loaded is not None else None
    lengths: Optional[list[int]] = None
    stats = None
    sample_of: Optional[int] = None  # the lengths are a sample of this many training rows
    hw = _hardware(gpu_gb)
    if tokenizer is not None and loaded is not None:
        from trainer.datasets import tokenize_sample

        # Rows are counted by loading; token lengths come from a bounded sample (its size is reported).
        try:
            sample = tokenize_sample(loaded.train, tokenizer, cfg)
            if sample.tokenized.dropped and not cfg.skip_invalid_rows:
                raise sample.no_loss_error(loaded.source)
        except DataError as exc:
            raise _Invalid("dataset", str(exc)) from None
        except Exception as exc:  # a broken chat template surfaces here
            from trainer.engine.telemetry import classify_failure

            reason, _ = classify_failure(exc, cfg)
            raise _Invalid("template" if "template" in reason.lower() else "dataset", reason) from None
        warnings += sample.warnings
        lengths = sample.lengths
        num_rows = sample.train_rows
        stats = sample.describe(length_stats(sample.tokenized.full_lengths, cfg, hw))
        dataset_info.update(sampled_rows=sample.sampled, train_rows_estimated=sample.estimated)
        sample_of = num_rows if sample.is_sample else None

    plan = resolve_plan(cfg, num_rows, hw=hw, token_lengths=lengths, gpu_memory_gb=gpu_gb,
                        token_lengths_sample_of=sample_of)
    if plan.attn_implementation == "flash_attention_2" and not _importable("flash_attn"):
        warnings.append("attn_implementation is flash_attention_2 but the flash_attn package is not installed "
                        "here: training will stop at once. Use auto (it picks FlashAttention only where it works).")
    problems = tracker_problems(cfg)
    if problems:
        raise _Invalid("trackers", "; ".join(f"{field}: {message}" for field, message in problems))
    if not gpu_gb:  # judged against this machine: what it lacks for the launch (GPUs, DeepSpeed)
        from trainer.engine.distributed import machine_problems
        from trainer.plan.hardware import visible_gpus

        warnings += [f"{name}: {text}" for name, text in machine_problems(cfg, visible_gpus())]
    report = plan.to_dict()
    report["warnings"] = warnings + list(plan.warnings)
    report["trackers"] = [{"tracker": title, "link": link} for title, link in tracker_links(cfg, "<run>")]
    report.update(valid=True, unknown=sorted(set(unknown)), dataset=dataset_info, model=model_info,
                  hardware={"device": hw.device, "num_devices": hw.num_devices, "gpu_name": hw.gpu_name,
                            "gpu_total_gb": hw.gpu_total_gb})
    if stats is not None:
        report["length_stats"] = {k: v for k, v in stats.items() if k != "histogram"}
    return report


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


def _rows(count: int, kind: str) -> str:
    return f"{count:,} {kind} row{'' if count == 1 else 's'}"


def format_report(report: dict[str, Any], cfg) -> str:
    """The plan in words, for a terminal."""
    lines = [f"{report.get('config', 'config')}: valid"]
    model, dataset = report["model"], report["dataset"]
    lines.append(f"  model    {model['name']} ({model['method']})")
    if "train_rows" in dataset:
        lines.append(f"  dataset  {dataset['source']} ({dataset['format']}): "
                     f"{_rows(dataset['train_rows'], 'training')}, {_rows(dataset['eval_rows'], 'validation')}" +
                     (f", {dataset['skipped']} skipped" if dataset.get("skipped") else ""))
    else:
        lines.append(f"  dataset  {dataset['name']} (not readable now)")
    hw = report["hardware"]
    lines.append(f"  hardware {hw['gpu_name'] or 'CPU (no GPU found; --gpu-gb N judges the memory against a GPU of N GB)'}"
                 + (f" × {hw['num_devices']}" if hw["num_devices"] > 1 else ""))
    lines.append("")
    lines.append("Plan")
    for line in report.get("summary", []):
        lines.append(f"  {line}")
    lines.append(f"  effective batch size {report['effective_batch_size']}, steps per epoch "
                 f"{_fmt(report['steps_per_epoch'])}, total optimizer steps {_fmt(report['total_steps'])}, "
                 f"warmup steps {_fmt(report['warmup_steps'])}, epochs {_fmt(report['epochs_effective'])}")
    batching = "packing" if report["packing"] else ("group_by_length" if report["group_by_length"] else "plain batches")
    pad = report.get("padding_efficiency")
    lines.append(f"  precision {report['precision']}, attention {report['attn_implementation']}, batching {batching}"
                 + (f" (padding efficiency {pad:.0%}: real tokens / processed tokens)" if pad is not None else "")
                 + (f"; {report['batching_note']}" if report.get("batching_note") else ""))
    stats = report.get("length_stats")
    if stats and stats.get("count"):
        sampled = (f" (a sample of {stats['sampled_rows']:,} of {stats['rows_in_split']:,} rows)"
                   if stats.get("sampled_rows", 0) < stats.get("rows_in_split", 0) else "")
        lines.append(f"  row length in tokens{sampled}: median {stats['p50']}, p90 {stats['p90']}, max {stats['max']}; "
                     f"{stats['truncated_rows']} rows longer than cutoff_len {stats['cutoff_len']}")
    throughput = throughput_line(report)
    if throughput:
        lines.append(f"  {throughput}")
    mem = report.get("memory_estimate_gb")
    lines.append(f"  memory estimate {_fmt(mem, ' GB') if mem is not None else 'unknown'}")
    for tracker in report.get("trackers", []):
        lines.append(f"  tracker  {tracker['tracker']}: {tracker['link']}")
    if report.get("unknown"):
        lines.append(f"  unknown until the model/dataset can be read: {', '.join(report['unknown'])}")
    if report["warnings"]:
        lines.append("")
        lines.append("Warnings")
        for warning in report["warnings"]:
            lines.append(f"  - {warning}")
    return "\n".join(lines)
