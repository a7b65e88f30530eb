"""What a running training tells the outside world: events, memory readings, abort, failure reasons.

- `TelemetryCallback`: a transformers TrainerCallback that writes `log`, `eval`, `checkpoint`,
  `memory` and `heartbeat` events (trainer.events), watches for an abort request and for a NaN loss.
- `memory_snapshot()`: on a GPU, torch's allocated/reserved/peak for this process and NVML's
  device-wide used/total; on a CPU, this process's resident memory (`rss_gb`) — labelled as what it is.
- `AbortSignal`: SIGTERM (and a first Ctrl-C) or the file `RUN_DIR/ABORT` ask the run to stop at the
  next optimizer step, after saving a checkpoint.
- `classify_failure(exc, cfg, log_tail)`: a reason a user can act on, and advice computed from the config.
- `FaultInjector`: `TUNEDECK_FAULT=oom@STEP` / `nan@STEP` makes the real forward pass fail at that step,
  so the failure paths are tested end to end (`TUNEDECK_FAULT_RANK=1`: in one rank only).

torch is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

# bitsandbytes (pulled in by transformers) warns at import, on CPUs with AVX512-BF16, that an optional
# kernel package is missing; its fallback works, so the warning would only alarm the reader of stdout.log.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from transformers import TrainerCallback  # noqa: E402

from trainer.config import ConfigError, TrainConfig
from trainer.datasets import DataError
from trainer.engine.ranks import any_rank, gather_memory, rank, world_size
from trainer.engine.model import ModelNotFoundError
from trainer.plan.batching import smaller_micro_batch
from trainer.plan.hardware import nvml_memory
from trainer.run.events import EventWriter
from trainer.run.layout import ABORT_FILE
from trainer.trackers import record_live_links

GB = 1024**3
HEARTBEAT_SECONDS = float(os.environ.get("TUNEDECK_HEARTBEAT_S", "10"))


# --- memory ---------------------------------------------------------------------------------------

def _gb(n: float) -> float:
    return round(n / GB, 3)


def memory_snapshot(device: Optional[str] = None) -> dict[str, Any]:
    """Memory readings for the training device, each key saying what it measures."""
    try:
        import torch

        cuda = torch.cuda.is_available() and device != "cpu"
    except ImportError:
        cuda = False
    if cuda:
        index = torch.cuda.current_device()
        data: dict[str, Any] = {
            "device": f"cuda:{index}",
            "allocated_gb": _gb(torch.cuda.memory_allocated(index)),
            "reserved_gb": _gb(torch.cuda.memory_reserved(index)),
            "peak_gb": _gb(torch.cuda.max_memory_allocated(index)),
        }
        data.update(nvml_memory(index))
        # In a run of several processes each reads its own device; rank 0 gathers them (gather_memory).
        if torch.cuda.device_count() > 1 and world_size() == 1:
            data["devices"] = [
                {"device": f"cuda:{i}", "allocated_gb": _gb(torch.cuda.memory_allocated(i)),
                 "reserved_gb": _gb(torch.cuda.memory_reserved(i)), "peak_gb": _gb(torch.cuda.max_memory_allocated(i)),
                 **nvml_memory(i)}
                for i in range(torch.cuda.device_count())]
        return data
    data = {"device": "cpu"}
    try:
        import psutil

        data["rss_gb"] = _gb(psutil.Process().memory_info().rss)
        data["system_total_gb"] = _gb(psutil.virtual_memory().total)
    except Exception:  # psutil missing or /proc unreadable: no reading rather than no run
        pass
    return data


# --- abort ----------------------------------------------------------------------------------------

class AbortSignal:
    """An abort request: SIGTERM, a first Ctrl-C, or the ABORT file in the run directory."""

    def __init__(self, run_dir: str | Path):
        self.abort_file = Path(run_dir) / ABORT_FILE
        # A plain flag, never a lock: the signal handler runs between two bytecodes of the main thread, which
        # may be inside request() already (the ABORT file seen at a step end); an Event's lock taken again
        # there deadlocks the run, and a second SIGTERM (the launcher sends its own) is routine.
        self._requested = False
        self.reason = ""
        self._interrupts = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGTERM/SIGINT (main thread only): the run stops at the next step instead of dying."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        """Give the signals back to whoever had them (a test runner, an embedding program)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:  # a second Ctrl-C means now
                raise KeyboardInterrupt
        self.request("stopped by " + ("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"))

    def request(self, reason: str) -> None:
        if not self._requested:
            self.reason = reason
            self._requested = True

    @property
    def requested(self) -> bool:
        if not self._requested and self.abort_file.exists():
            self.request("stopped by the user (abort requested)")
        return self._requested


# --- fault injection --------------------------------------------------------------------------------

class FaultInjector:
    """`TUNEDECK_FAULT=oom@N` / `nan@N`: the real forward pass fails at optimizer step N (1-based).

    oom raises torch.OutOfMemoryError from inside the first decoder layer; nan turns the final hidden
    states into NaN from step N on, so the logits, the loss and the gradients really are NaN.
    """

    def __init__(self, spec: str | None):
        self.kind: str | None = None
        self.step = 0
        self.current_step = 0
        if spec:
            kind, _, step = spec.strip().partition("@")
            if kind not in ("oom", "nan") or not step.strip().isdigit() or int(step) < 1:
                raise ValueError(f"TUNEDECK_FAULT={spec!r}: expected oom@STEP or nan@STEP with STEP >= 1")
            self.kind, self.step = kind, int(step)

    @classmethod
    def from_env(cls) -> "FaultInjector":
        """From TUNEDECK_FAULT; with TUNEDECK_FAULT_RANK=R only rank R of a multi-process run fails."""
        only = os.environ.get("TUNEDECK_FAULT_RANK", "").strip()
        if only.isdigit() and int(only) != rank():
            return cls(None)
        return cls(os.environ.get("TUNEDECK_FAULT"))

    def attach(self, model) -> None:
        if not self.kind:
            return
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder = getattr(base, "model", None)
        layers = getattr(decoder, "layers", None)
        if self.kind == "oom":
            (layers[0] if layers is not None else base).register_forward_pre_hook(self._oom_hook)
        else:
            # The final norm's output feeds the LM head (TRL may compute the loss from lm_head's weight
            # without calling it), so NaN hidden states make NaN logits, loss and gradients on every path.
            norm = getattr(decoder, "norm", None)
            target = norm if norm is not None else (layers[-1] if layers is not None else base)
            target.register_forward_hook(self._nan_hook)

    def _active(self, module) -> bool:
        return module.training and self.current_step >= self.step

    def _oom_hook(self, module, args):
        if self._active(module):
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by TUNEDECK_FAULT=oom@{self.step} "
                f"at step {self.current_step})")

    def _nan_hook(self, module, args, output):
        if not self._active(module):
            return output
        if isinstance(output, tuple):
            return (output[0] * float("nan"),) + tuple(output[1:])
        return output * float("nan")


# --- the callback -----------------------------------------------------------------------------------

class NaNLossError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""

    def __init__(self, step: int, what: str = "loss", value: Any = math.nan):
        self.step = step
        super().__init__(f"the {what} became {value} at step {step}")


class TelemetryCallback(TrainerCallback):
    """Training progress -> events.jsonl; abort requests and NaN losses -> a clean stop."""

    def __init__(self, writer: EventWriter, *, abort: AbortSignal, effective_batch_size: int,
                 fault: FaultInjector | None = None, device: str = "cpu"):
        self.writer = writer
        self.abort = abort
        self.effective_batch_size = effective_batch_size
        self.fault = fault
        self.device = device
        self.nan_error: NaNLossError | None = None
        self.aborted_at_step: int | None = None
        self.last_loss: float | None = None
        self.best_eval_loss: float | None = None
        self.step = 0
        self._last_log_time: float | None = None
        self._last_log_step = 0
        self._last_tokens = 0
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # heartbeat: proves the process is alive between log lines (long steps, evaluation, saving)
    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_SECONDS):
            try:
                self.writer.emit("heartbeat", step=self.step)
                self.writer.emit("memory", step=self.step, **memory_snapshot(self.device))
            except OSError:
                pass

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step
        self._last_log_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen or 0
        self._last_log_time = time.time()
        if self.fault:
            self.fault.current_step = state.global_step
        self.writer.emit("memory", step=state.global_step, **memory_snapshot(self.device))
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="tunedeck-heartbeat", daemon=True)
            self._heartbeat.start()
        if self.abort.requested:  # asked to stop while the model was loading
            control.should_training_stop = True

    def on_step_begin(self, args, state, control, **kwargs):
        if self.fault:
            self.fault.current_step = state.global_step + 1

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        requested = any_rank(self.abort.requested, args.device)
        if requested and not self.abort.requested:
            self.abort.request("stopped by the user (abort requested)")
        if requested and self.aborted_at_step is None:
            self.aborted_at_step = state.global_step
            control.should_save = True  # even with save_strategy "no": an aborted run must be resumable
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "loss" not in logs:
            return control  # eval metrics go out through on_evaluate; the final summary through train.py
        now = time.time()
        elapsed = max(1e-9, now - (self._last_log_time or now))
        steps = state.global_step - self._last_log_step
        tokens = state.num_input_tokens_seen or 0
        event: dict[str, Any] = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": logs.get("loss"),
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "samples_per_second": round(steps * self.effective_batch_size / elapsed, 3) if steps else None,
            "tokens_per_second": round((tokens - self._last_tokens) / elapsed, 1) if tokens else None,
            "tokens_seen": tokens or None,
            "memory": gather_memory(memory_snapshot(self.device)),
        }
        for key in ("mean_token_accuracy", "entropy"):  # TRL's extra metrics, when present
            if key in logs:
                event[key] = logs[key]
        self._last_log_time, self._last_log_step, self._last_tokens = now, state.global_step, tokens
        if world_size() > 1:  # every rank says it trained this step, in the shared stdout.log
            print(f"tunedeck: rank {rank()}/{world_size()} step {state.global_step} loss {logs.get('loss')}",
                  flush=True)
        self.writer.emit("log", **{k: v for k, v in event.items() if v is not None})
        for what in ("loss", "grad_norm"):
            value = logs.get(what)
            if isinstance(value, (int, float)) and not math.isfinite(value) and self.nan_error is None:
                self.nan_error = NaNLossError(state.global_step, what, value)
                control.should_training_stop = True
                control.should_save = False  # a checkpoint of NaN weights is worth nothing
        if isinstance(logs.get("loss"), (int, float)) and math.isfinite(logs["loss"]):
            self.last_loss = float(logs["loss"])
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        eval_loss = metrics.get("eval_loss")
        if eval_loss is not None and math.isfinite(eval_loss):
            self.best_eval_loss = eval_loss if self.best_eval_loss is None else min(self.best_eval_loss, eval_loss)
        extra = {k[len("eval_"):]: v for k, v in metrics.items()
                 if k.startswith("eval_") and k != "eval_loss" and isinstance(v, (int, float))}
        self.writer.emit("eval", step=state.global_step, epoch=round(state.epoch or 0.0, 4), eval_loss=eval_loss,
                         **{k: v for k, v in extra.items() if k in ("runtime", "mean_token_accuracy")})

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.writer.emit("checkpoint", step=state.global_step, path=str(path))

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=2)


# --- failure classification ----------------------------------------------------------------------

def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:
        pass
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or isinstance(exc, MemoryError) or "cudnn_status_alloc_failed" in text)


def oom_advice(cfg: TrainConfig) -> list[str]:
    """What to change after an out-of-memory error, with the numbers worked out from the config."""
    advice: list[str] = []
    micro, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    smaller = smaller_micro_batch(micro, accum)
    if smaller is not None:
        new_micro, new_accum = smaller
        how = ("Halve the micro-batch and double the accumulation" if new_micro * 2 == micro
               else "Lower the micro-batch and raise the accumulation by the same factor")
        advice.append(
            f"{how}: per_device_train_batch_size {micro} → {new_micro} and gradient_accumulation_steps {accum} → "
            f"{new_accum}, keeping the effective batch at {new_micro * new_accum} per device.")
    if cfg.cutoff_len > 256:
        advice.append(f"Shorten the rows: cutoff_len {cfg.cutoff_len} → {cfg.cutoff_len // 2} "
                      "(activation memory grows with the row length).")
    if not cfg.gradient_checkpointing:
        advice.append("Turn on gradient_checkpointing: activations are recomputed instead of stored "
                      "(much less memory, about 30% slower).")
    elif not cfg.offload_activations:
        advice.append("Turn on offload_activations to keep the saved activations in CPU RAM.")
    if cfg.finetuning_type == "full":
        advice.append("Use finetuning_type lora (with quantization_bit 4 for QLoRA): full fine-tuning keeps "
                      "gradients and optimizer state for every weight.")
    elif cfg.quantization_bit != 4:
        advice.append("Load the base model in 4 bits: quantization_bit 4 (QLoRA) stores the frozen weights in "
                      "about a quarter of the memory.")
    if cfg.optim in ("adamw_torch", "adamw_torch_fused") and cfg.finetuning_type == "full":
        advice.append("Use optim paged_adamw_8bit: the optimizer state takes a quarter of the memory.")
    if micro == 1 and cfg.cutoff_len <= 256 and cfg.gradient_checkpointing and cfg.quantization_bit == 4:
        advice.append("The model itself does not fit this GPU: pick a smaller model or a larger GPU.")
    return advice


def _is_disk_full(exc: BaseException) -> bool:
    """No space left on the device (ENOSPC, EDQUOT), however deep the library wrapped it: a checkpoint, a
    TensorBoard file or the events file could not be written."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "no space left on device" in text or "disk quota exceeded" in text or "database or disk is full" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def failure_kind(exc: BaseException) -> str:
    """One of trainer.run.events.FAILURE_KINDS: oom, disk_full, not_found, template, nan, config, data, other."""
    if _is_oom(exc):
        return "oom"
    if _is_disk_full(exc):
        return "disk_full"
    if isinstance(exc, NaNLossError):
        return "nan"
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, ModelNotFoundError):
        return "not_found"
    if _is_template_error(exc):
        return "template"
    if isinstance(exc, DataError):
        return "data"
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    return "other"


def _is_template_error(exc: BaseException) -> bool:
    lowered = str(exc).lower()
    return ("chat template" in lowered or "chat_template" in lowered
            or type(exc).__name__ in ("TemplateError", "TemplateSyntaxError", "UndefinedError"))


def classify_failure(exc: BaseException, cfg: Optional[TrainConfig],
                     log_tail: Optional[list[str]] = None) -> tuple[str, list[str]]:
    """(reason, advice) for a failed run, in words a user can act on."""
    text = f"{exc}"
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if _is_oom(exc):
        where = "GPU" if "cuda" in text.lower() or "gpu" in text.lower() else "device"
        reason = f"Out of memory: the {where} ran out of memory during training ({first_line[:300]})."
        return reason, (oom_advice(cfg) if cfg else ["Lower the micro-batch size or cutoff_len."])
    if _is_disk_full(exc):
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        return (f"The disk is full: a file of the run could not be written{where}.",
                ["Free space on the disk that holds the runs folder: delete old runs (each keeps its checkpoints) "
                 "or move them elsewhere, then Resume: training continues from the last checkpoint.",
                 "Keep fewer checkpoints: save_total_limit 1 or 2, or a larger save_steps.",
                 "Or point the server at a larger disk (--runs-dir / TUNEDECK_RUNS_DIR)."])
    if isinstance(exc, NaNLossError):
        advice = []
        if cfg is not None:
            advice.append(f"Lower the learning rate: learning_rate {cfg.learning_rate:g} → {cfg.learning_rate / 2:g}.")
            if cfg.max_grad_norm == 0 or cfg.max_grad_norm > 1:
                advice.append("Clip the gradients: max_grad_norm 1.0.")
            if cfg.precision == "fp16":
                advice.append("fp16 overflows easily: use precision bf16 on a GPU that has it, or fp32.")
            if cfg.warmup_ratio < 0.05 and cfg.warmup_steps == 0:
                advice.append("Warm up longer: warmup_ratio 0.05-0.1.")
        advice.append("Check the data for empty answers or rows the template renders oddly.")
        return f"NaN loss: {text}. Training was stopped because the weights stop learning once the loss is NaN.", advice
    if isinstance(exc, ModelNotFoundError):
        return text, ["Check model_name_or_path: `demo`, a local directory with config.json, or a Hub id "
                      "(the Hub needs network access, and HF_TOKEN for gated models)."]
    lowered = text.lower()
    if isinstance(exc, ConfigError):
        return f"Invalid config: {text}", ["Fix the field named above (python -m trainer check CONFIG.yaml)."]
    if _is_template_error(exc):
        return (f"The chat template failed: {first_line[:400]}",
                ["Set `template` to a named template (chatml, llama3, alpaca, ...) or fix the tokenizer's "
                 "chat_template; `auto` uses the tokenizer's own template or a plain fallback."])
    if isinstance(exc, DataError):
        if "no usable rows" in text:
            advice = ["Fix the rows named above: no row is usable, so skipping bad rows cannot help (check "
                      "dataset_format and column_mapping if every row misses the same field)."]
        elif getattr(exc, "issues", None):
            advice = ["Fix the rows named above, or turn on skip_invalid_rows to train without them (they are "
                      "counted and reported)."]
        else:
            advice = ["Check the dataset setting: a shipped name (demo), a local JSON/JSONL/CSV/Parquet file that "
                      "exists, or a Hub dataset id (needs the network); `python -m trainer check CONFIG.yaml` "
                      "tests it without training."]
        return f"Dataset problem: {text}", advice
    if isinstance(exc, FileNotFoundError):
        return f"Not found: {text}", ["Check the paths in the config (dataset, model_name_or_path)."]
    if isinstance(exc, ImportError):
        advice = ["Install the missing package in the environment tunedeck runs in (see the message), or turn "
                  "off the setting that needs it."]
        if "flash" in lowered:
            advice.insert(0, "Set attn_implementation to auto: it uses FlashAttention only where it is installed.")
        if "bitsandbytes" in lowered:
            advice.insert(0, "quantization_bit and the 8-bit optimizers need bitsandbytes: pip install bitsandbytes, "
                             "or leave quantization_bit empty and use optim adamw_torch.")
        return f"A package is missing: {first_line[:400]}", advice
    advice = ["See the last lines of the log below."]
    if log_tail:
        last = " ".join(log_tail[-5:]).lower()
        if "killed" in last or "memoryerror" in last:
            advice.insert(0, "The process may have run out of RAM: lower the micro-batch or cutoff_len.")
    return f"{type(exc).__name__}: {first_line[:500]}", advice


class TrackerLinksCallback(TrainerCallback):
    """Records the W&B / MLflow run links for the Monitor: the trackers' callbacks come first in the Trainer's
    list, so their runs exist when this one's on_train_begin runs."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            record_live_links(self.run_dir)
