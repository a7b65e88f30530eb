"""What the training subprocess runs: config -> data -> plan -> model -> TRL SFTTrainer -> run directory.

`run_training(cfg, run_dir) -> exit code` (0 finished, 3 aborted, 1 failed, 2 invalid config, dataset,
model path or chat template). It writes the run directory (trainer.run.layout) and always ends with a `status` event when it can:
finished, aborted (stopped at a step boundary with a checkpoint), or failed with a reason, advice and
the last lines of the log.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from trainer.config import ConfigError, TrainConfig
from trainer.engine.ranks import RankEventWriter, all_ranks_done, local_rank, rank, world_size
from trainer.run.events import ABORTED, FAILED, FINISHED, RUNNING, tail_lines
from trainer.run.layout import (
    ADAPTER_DIR, CHECKPOINTS_DIR, STDOUT_FILE, TENSORBOARD_DIR, latest_checkpoint, resolve_resume, write_run_config,
)

EXIT_FINISHED, EXIT_FAILED, EXIT_INVALID, EXIT_ABORTED = 0, 1, 2, 3
LOG_TAIL_LINES = 40


class _Run:
    """State shared by the steps of one training, so the final status can say what happened."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        # Several processes train one run: rank 0 alone writes its events, checkpoints and adapter.
        self.writer = RankEventWriter(run_dir)
        self.callback = None
        self.trainer = None
        self.torch_threads: Optional[int] = None  # to give back when run in someone else's process
        self.started = time.time()

    def log_tail(self, exc: BaseException | None = None) -> list[str]:
        lines = tail_lines(self.run_dir / STDOUT_FILE, LOG_TAIL_LINES)
        if not lines and exc is not None:  # not run by the job manager: no stdout.log to read
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
            lines = "".join(lines).splitlines()[-LOG_TAIL_LINES:]
        return lines

    def progress(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.trainer is not None:
            data["step"] = self.trainer.state.global_step
            if self.trainer.state.max_steps:
                data["total_steps"] = self.trainer.state.max_steps
        if self.callback is not None:
            if self.callback.last_loss is not None:
                data["last_loss"] = self.callback.last_loss
            if self.callback.best_eval_loss is not None:
                data["best_eval_loss"] = self.callback.best_eval_loss
        data["elapsed_s"] = round(time.time() - self.started, 1)
        return data


def run_training(cfg: TrainConfig, run_dir: str | Path) -> int:
    """Train one run in this process; returns the exit code. Never raises (except a second Ctrl-C)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(cfg, run_dir)
    from trainer.engine.telemetry import AbortSignal, classify_failure, failure_kind

    abort = AbortSignal(run_dir)
    abort.install()
    tensorboard_env = os.environ.get("TENSORBOARD_LOGGING_DIR")
    try:
        return _train(run, abort)
    except KeyboardInterrupt:
        run.writer.emit("status", status=ABORTED, reason="interrupted by a second Ctrl-C (no checkpoint saved)",
                        **run.progress())
        return EXIT_ABORTED
    except BaseException as exc:  # noqa: BLE001 — every failure must end in a status event
        if run.callback is not None:
            run.callback.stop()
        kind = failure_kind(exc)
        reason, advice = classify_failure(exc, cfg, run.log_tail())
        if kind == "other":
            traceback.print_exc()
        print(f"tunedeck: training failed: {reason}", file=sys.stderr)
        for line in advice:
            print(f"  - {line}", file=sys.stderr)
        sys.stderr.flush()
        run.writer.emit("status", status=FAILED, kind=kind, reason=reason, advice=advice,
                        log_tail=run.log_tail(exc), **run.progress())
        return EXIT_INVALID if kind in ("config", "data", "not_found", "template") else EXIT_FAILED
    finally:
        abort.uninstall()
        if run.torch_threads:
            import torch

            torch.set_num_threads(run.torch_threads)
        if run.callback is not None:
            run.callback.stop()
        if tensorboard_env is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = tensorboard_env


def _rows(count: int, kind: str) -> str:
    return f"{count:,} {kind} row{'' if count == 1 else 's'}"


def _say(text: str) -> None:
    who = f"[rank {rank()}]" if world_size() > 1 else ""
    print(f"tunedeck{who}: {text}", flush=True)


def _train(run: _Run, abort) -> int:
    cfg, run_dir, writer = run.cfg, run.run_dir, run.writer
    main = rank() == 0
    if main:
        write_run_config(cfg, run_dir)
    writer.emit("status", status=RUNNING, pid=os.getpid(), processes=world_size())
    resume_from = resolve_resume(cfg.resume_from_checkpoint, run_dir)

    from trainer.datasets import TokenizingStopped, chat_template_for_saving, load_examples, tokenize_cached
    from trainer.engine.demo import needs_build
    from trainer.plan.hardware import detect
    from trainer.engine.model import apply_lora, load_model, load_tokenizer, model_source, trainable_parameters
    from trainer.plan.resolve import resolve_plan
    from trainer.engine.telemetry import FaultInjector, TelemetryCallback

    from trainer.trackers import tracker_problems

    problems = tracker_problems(cfg)  # before the minutes of loading a model, not after
    if problems:
        raise ConfigError(problems)
    fault = FaultInjector.from_env()
    hw = detect()
    loaded = load_examples(cfg)
    _say(f"dataset {loaded.source} ({loaded.format}): {_rows(len(loaded.train), 'training')}, "
         f"{_rows(len(loaded.eval), 'validation')}" + (f", {loaded.skipped} skipped" if loaded.skipped else ""))
    if needs_build(cfg.model_name_or_path):  # said first: the page would show "step 0 / ?" for half a minute
        _say("building the demo model (first run only)...")
        writer.emit("message", level="info", phase="building_demo_model",
                    text="Building the demo model (first run only, about half a minute)…")
    source = model_source(cfg)
    tokenizer = load_tokenizer(cfg, source)
    # Tokenized once per data, tokenizer and options, into Arrow files under the runs root: a second run
    # or a resume of the same data starts at once (the events say whether the cache was used).
    def stop() -> bool:  # asked between chunks of tokenizing: an abort need not wait for every row
        return abort.requested

    # Each machine's first rank tokenizes; the others take its rows from the cache when they are stored.
    follower = local_rank() > 0
    if follower:
        _say("waiting for the first rank of this machine to tokenize the rows (or finding them cached)")
    try:
        train_rows = tokenize_cached(loaded.train, tokenizer, cfg, loaded, runs_root=run_dir.parent, events=writer,
                                     should_stop=stop, made_by_another=follower)
        eval_rows = (tokenize_cached(loaded.eval, tokenizer, cfg, loaded, split="eval", runs_root=run_dir.parent,
                                     events=writer, should_stop=stop, made_by_another=follower)
                     if loaded.eval else [])
    except TokenizingStopped as stopped:
        return _stopped_before_training(run, abort, f"while tokenizing ({stopped})")
    # The checkpoints and the adapter carry the named template the rows were rendered with (they are
    # tokenized already), so whoever loads the saved tokenizer prompts the model as training did.
    saved_template = chat_template_for_saving(tokenizer, cfg)
    if saved_template:
        tokenizer.chat_template = saved_template
    dataset_warnings = list(getattr(loaded, "warnings", []))
    if len(dataset_warnings) > 5:  # one line each would bury the rest; the dataset tab lists them all
        dataset_warnings = dataset_warnings[:5] + [f"... and {len(dataset_warnings) - 5} more dataset warnings"]
    for text in dataset_warnings + list(getattr(train_rows, "warnings", [])) + list(getattr(eval_rows, "warnings", [])):
        _say(f"warning: {text}")
        writer.emit("message", level="warning", text=text)
    if loaded.skipped:
        writer.emit("message", level="warning",
                    text=f"{_rows(loaded.skipped, 'invalid')} {'was' if loaded.skipped == 1 else 'were'} skipped "
                         "(skip_invalid_rows is on).")
    lengths = train_rows.lengths

    plan = resolve_plan(cfg, len(train_rows), hw=hw, token_lengths=lengths)
    writer.emit("plan", plan=plan.to_dict(), hardware=asdict(hw), model=cfg.model_name_or_path,
                dataset={"source": str(loaded.source), "format": loaded.format, "train_rows": len(train_rows),
                         "eval_rows": len(eval_rows), "skipped": loaded.skipped},
                resume_from=str(resume_from) if resume_from else None)
    for line in plan.summary:
        _say(line)
    for line in plan.warnings:
        _say(f"warning: {line}")
    if cfg.offload_activations and hw.device != "cuda":
        writer.emit("message", level="info", text="offload_activations is ignored on a CPU: the activations are "
                    "in RAM already.")
    if cfg.resume_from_checkpoint and resume_from is None:
        writer.emit("message", level="info", text="resume_from_checkpoint is 'last' but this run has no "
                    "checkpoint yet: training starts from the beginning.")

    from transformers import set_seed

    set_seed(cfg.seed)
    model = load_model(cfg, precision=plan.precision, device=hw.device,
                       attn_implementation=plan.attn_implementation, source=source)
    if cfg.finetuning_type == "lora":
        model = apply_lora(model, cfg)
    fault.attach(model)
    trainable, total = trainable_parameters(model)
    run.torch_threads = _cpu_threads(hw.device, total)
    _say(f"model {cfg.model_name_or_path} ({cfg.method_label}): {trainable:,} trainable of {total:,} parameters "
         f"({100 * trainable / max(1, total):.2f}%), precision {plan.precision}, device {hw.device}")
    writer.emit("message", level="info", text=f"{trainable:,} trainable parameters of {total:,} "
                f"({100 * trainable / max(1, total):.2f}%)", trainable_parameters=trainable, total_parameters=total)

    trainer = _build_trainer(cfg, run_dir, plan, hw, model, tokenizer, train_rows, eval_rows)
    run.trainer = trainer
    callback = TelemetryCallback(writer, abort=abort, effective_batch_size=plan.effective_batch_size,
                                 fault=fault, device=hw.device)
    run.callback = callback
    trainer.add_callback(callback)

    if abort.requested:  # stopped while loading: nothing trained, nothing to save
        return _stopped_before_training(run, abort, "before the first step")

    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    callback.stop()
    if callback.nan_error is not None:
        raise callback.nan_error
    if callback.aborted_at_step is not None or abort.requested:
        checkpoint = latest_checkpoint(run_dir)
        where = f"; checkpoint {checkpoint.name} saved, resume to continue" if checkpoint else ""
        writer.emit("status", status=ABORTED, reason=f"{abort.reason} at step {trainer.state.global_step}{where}",
                    checkpoint=str(checkpoint) if checkpoint else None, **run.progress())
        _say(f"aborted at step {trainer.state.global_step}{where}")
        all_ranks_done()
        return EXIT_ABORTED

    out_dir = run_dir / ADAPTER_DIR
    trainer.save_model(str(out_dir))  # on every rank: FSDP/ZeRO-3 gather the shards; only rank 0 writes
    if main:
        tokenizer.save_pretrained(str(out_dir))
    metrics = result.metrics if result is not None else {}
    summary = {k: metrics[k] for k in ("train_loss", "train_runtime", "train_samples_per_second") if k in metrics}
    best = trainer.state.best_model_checkpoint
    writer.emit("status", status=FINISHED, reason=None, adapter=str(out_dir),
                best_checkpoint=best, **summary, **run.progress())
    _say(f"finished: {trainer.state.global_step} steps, final {'adapter' if cfg.finetuning_type == 'lora' else 'model'} "
         f"saved to {out_dir}")
    all_ranks_done()
    return EXIT_FINISHED


def _stopped_before_training(run: _Run, abort, when: str) -> int:
    """An abort that came before the first step: nothing trained, nothing to save."""
    run.writer.emit("status", status=ABORTED, reason=f"{abort.reason} {when}", **run.progress())
    _say(f"aborted {when}")
    return EXIT_ABORTED


def _cpu_threads(device: str, parameters: int) -> Optional[int]:
    """One intra-op thread for a tiny model on a CPU (TUNEDECK_CPU_THREADS overrides).

    A tiny model's ops are too small to split: the threads mostly wait for each other at every op, and
    on a busy CPU each wait costs a scheduler time slice. Measured on the 2-core dev box with other
    work running: the demo took 94 s with 2 threads and 16 s with 1.
    """
    if device != "cpu":
        return None
    import torch

    previous = torch.get_num_threads()
    wanted = os.environ.get("TUNEDECK_CPU_THREADS", "").strip()
    if wanted.isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    elif parameters < 50_000_000 and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)
    return previous


def _build_trainer(cfg: TrainConfig, run_dir: Path, plan, hw, model, tokenizer, train_rows, eval_rows):
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    from trainer.engine.sft_args import sft_config_kwargs
    from trainer.engine.telemetry import TrackerLinksCallback
    from trainer.trackers import RECORDED, tracker_environment

    # transformers' TensorBoard callback takes its directory from the environment in v5.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
    os.environ.update(tracker_environment(cfg, run_dir))
    args = SFTConfig(**sft_config_kwargs(cfg, run_dir / CHECKPOINTS_DIR, plan, hw))
    columns = ("input_ids", "completion_mask")
    # A tokenize_cached split is an Arrow dataset already; other callers (probe, benchmarks) pass lists.
    train_dataset = (train_rows.dataset if hasattr(train_rows, "dataset")
                     else Dataset.from_list([{k: r[k] for k in columns} for r in train_rows]))
    eval_dataset = None
    if cfg.eval_strategy != "no":
        if not eval_rows:
            raise ConfigError([("val_size", "the validation split is empty: raise val_size or set eval_strategy no")])
        eval_dataset = (eval_rows.dataset if hasattr(eval_rows, "dataset")
                         else Dataset.from_list([{k: r[k] for k in columns} for r in eval_rows]))
    callbacks = [TrackerLinksCallback(run_dir)] if set(RECORDED) & set(cfg.report_to) else []
    if cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience,
                                               early_stopping_threshold=cfg.early_stopping_threshold))
    return SFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      processing_class=tokenizer, callbacks=callbacks)

