"""The largest micro-batch that fits, measured: a few real steps per candidate in a throwaway subprocess.

`python -m trainer probe CONFIG.yaml` runs, for each candidate micro-batch, two optimizer steps at the
worst case (rows of exactly cutoff_len tokens, every token carrying loss) through the same model
loading and SFTTrainer construction as `train`, in a fresh subprocess (so an out-of-memory error kills
only that try and every try starts from an empty card). A candidate fits when it finishes and
torch.cuda.max_memory_reserved() plus what lives outside torch's pool (the CUDA context) stays under
90% of the card. Candidates are searched by doubling and
then bisection (plan/fit.py largest_fitting), starting at the memory plan's estimate, and the result keeps
the effective batch by adjusting gradient accumulation (trainer.plan.batching, the rule the memory plan
and the out-of-memory advice use too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from trainer.config import TrainConfig
from trainer.plan.batching import keep_effective_batch
from trainer.plan.fit import largest_fitting
from trainer.plan.memory import FITS_BELOW
from trainer.run.layout import write_run_config

PROBE_STEPS = 2
CHILD_TIMEOUT_S = 900


class ProbeNeedsGPU(RuntimeError):
    """The probe measures GPU memory: there is nothing to measure on a CPU."""


@dataclass
class ProbeTry:
    micro_batch: int
    fits: bool
    peak_reserved_gb: Optional[float] = None
    share_of_gpu: Optional[float] = None
    seconds: Optional[float] = None
    error: Optional[str] = None


@dataclass
class ProbeResult:
    micro_batch: int  # largest that fits (0: not even 1)
    gradient_accumulation_steps: int  # keeps the effective batch with `micro_batch`
    effective_batch_size: int
    original_micro_batch: int
    original_gradient_accumulation_steps: int
    gpu_name: str
    gpu_total_gb: float
    max_share: float
    seq_len: int
    tries: list[ProbeTry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(fits: Callable[[int], bool], *, start: int, limit: int) -> int:
    """The largest micro-batch in [1, limit] with fits(b): doubling from `start`, then bisection."""
    return largest_fitting(fits, start=max(1, min(start, limit)), limit=limit)


# --- the parent: search with one subprocess per candidate ----------------------------------------

def run_probe(cfg: TrainConfig, *, max_share: float = FITS_BELOW, limit: Optional[int] = None,
              say: Callable[[str], None] = lambda s: None) -> ProbeResult:
    """Search the micro-batch on the GPU. Raises ProbeNeedsGPU on a machine without CUDA."""
    from trainer.plan.catalog import model_shape
    from trainer.plan.hardware import detect
    from trainer.plan.fit import largest_micro_batch
    from trainer.plan.memory import GB, MemorySettings
    from trainer.plan.resolve import resolve_attention, resolve_precision

    hw = detect()
    if hw.device != "cuda" or not hw.gpu_total_gb:
        raise ProbeNeedsGPU("the probe measures GPU memory and this machine has no CUDA GPU. "
                            "`python -m trainer check CONFIG --json` gives the memory plan's estimate instead.")
    effective = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    limit = min(limit or effective, effective, 4096)  # a micro-batch above the effective batch changes it
    precision = resolve_precision(cfg, hw)
    liger = cfg.use_liger_kernel if cfg.use_liger_kernel is not None else hw.liger
    # Start where the memory plan expects the limit, so the search needs only a few tries.
    shape = model_shape(cfg.model_name_or_path)
    estimated = 1
    if shape is not None:
        settings = MemorySettings.from_config(cfg, precision=precision, attn_implementation=resolve_attention(cfg, hw),
                                              use_liger_kernel=bool(liger))
        estimated = largest_micro_batch(shape, settings, hw.gpu_total_gb * GB, share=max_share, limit=limit)
    start = max(1, min(estimated, limit))
    say(f"probing {cfg.model_name_or_path} at {cfg.cutoff_len} tokens a row on {hw.gpu_name} "
        f"({hw.gpu_total_gb:.1f} GB), up to {max_share:.0%} of it; the memory plan suggests micro-batch {start}")
    tries: list[ProbeTry] = []
    cache: dict[int, bool] = {}

    def fits(batch: int) -> bool:
        if batch in cache:
            return cache[batch]
        attempt = _try_in_subprocess(cfg, batch, max_share)
        tries.append(attempt)
        peak = f"{attempt.peak_reserved_gb:.1f} GB ({attempt.share_of_gpu:.0%})" if attempt.peak_reserved_gb else "-"
        say(f"  micro-batch {batch:>4}: {'fits' if attempt.fits else 'does not fit'}, peak {peak}"
            + (f" — {attempt.error}" if attempt.error and not attempt.fits else ""))
        cache[batch] = attempt.fits
        return attempt.fits

    best = search(fits, start=start, limit=limit)
    micro, accum = keep_effective_batch(effective, best)
    return ProbeResult(micro_batch=micro, gradient_accumulation_steps=accum,
                       effective_batch_size=micro * accum if micro else effective,
                       original_micro_batch=cfg.per_device_train_batch_size,
                       original_gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                       gpu_name=hw.gpu_name or "cuda", gpu_total_gb=hw.gpu_total_gb, max_share=max_share,
                       seq_len=cfg.cutoff_len, tries=tries)


def _try_in_subprocess(cfg: TrainConfig, batch: int, max_share: float) -> ProbeTry:
    with tempfile.TemporaryDirectory(prefix="tunedeck-probe-") as tmp:
        config_path = write_run_config(cfg, tmp)
        result_path = Path(tmp) / "result.json"
        started = time.time()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "trainer.engine.probe", "--child", str(config_path), str(batch), str(result_path)],
                capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            return ProbeTry(batch, False, error=f"no result in {CHILD_TIMEOUT_S} s")
        seconds = round(time.time() - started, 1)
        if not result_path.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            return ProbeTry(batch, False, seconds=seconds, error=f"exit {proc.returncode}: {' | '.join(tail)}")
        data = json.loads(result_path.read_text())
    peak, total = data.get("peak_reserved_bytes"), data.get("total_bytes")
    if peak:
        peak += data.get("outside_torch_bytes") or 0
    share = peak / total if peak and total else None
    fits = bool(data.get("finished")) and share is not None and share <= max_share
    error = data.get("error") or (None if fits else f"above {max_share:.0%} of the card")
    return ProbeTry(batch, fits, round(peak / 1024 ** 3, 2) if peak else None,
                    round(share, 3) if share is not None else None, seconds, error)


# --- the child: one candidate, a few real steps --------------------------------------------------

def _child(config_path: str, batch: int, result_path: str) -> int:
    """Train PROBE_STEPS steps at micro-batch `batch` on full-length rows; write the peak memory."""
    import torch

    from trainer.plan.hardware import detect
    from trainer.engine.model import apply_lora, load_model, load_tokenizer, model_source
    from trainer.plan.resolve import resolve_plan
    from trainer.engine.train import _build_trainer

    cfg = TrainConfig.from_yaml(config_path).replace(
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=PROBE_STEPS,
        save_strategy="no", eval_strategy="no", val_size=0, load_best_model_at_end=False,
        early_stopping_patience=None, resume_from_checkpoint=None, logging_steps=1,
        packing=False, group_by_length=False,  # rows are all cutoff_len long: nothing to pack or group
        report_to=[])  # trial steps are no run: nothing goes to the team's trackers
    out: dict[str, Any] = {"micro_batch": batch, "finished": False}
    hw = detect()
    cuda = torch.cuda.is_available()
    # The parent refuses a CPU; run by hand there, the child measures RAM instead (the tests do that).
    total = torch.cuda.get_device_properties(0).total_memory if cuda else _ram_bytes()
    out["total_bytes"] = total
    out["device"] = "cuda" if cuda else "cpu"
    rows = _full_length_rows(cfg.cutoff_len, batch * PROBE_STEPS)
    try:
        source = model_source(cfg)
        tokenizer = load_tokenizer(cfg, source)
        rows = _full_length_rows(cfg.cutoff_len, batch * PROBE_STEPS, vocab=len(tokenizer))
        plan = resolve_plan(cfg, len(rows), hw=hw, token_lengths=[cfg.cutoff_len] * len(rows))
        model = load_model(cfg, precision=plan.precision, device=hw.device,
                           attn_implementation=plan.attn_implementation, source=source)
        if cfg.finetuning_type == "lora":
            model = apply_lora(model, cfg)
        with tempfile.TemporaryDirectory(prefix="tunedeck-probe-run-") as run_dir:
            os.environ.setdefault("TENSORBOARD_LOGGING_DIR", run_dir)
            trainer = _build_trainer(cfg, Path(run_dir), plan, hw, model, tokenizer, rows, [])
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
        out["finished"] = True
    except torch.OutOfMemoryError as exc:
        out["error"] = "out of memory: " + str(exc).splitlines()[0][:200]
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    if cuda:
        out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        # What the card holds beyond torch's pool (CUDA context, library workspaces) counts against it too.
        free, _ = torch.cuda.mem_get_info()
        out["outside_torch_bytes"] = max(0, total - free - torch.cuda.memory_reserved())
    else:
        import resource

        out["peak_reserved_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    Path(result_path).write_text(json.dumps(out))
    return 0 if out["finished"] else 1


def _ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _full_length_rows(length: int, count: int, vocab: int = 1000) -> list[dict]:
    """Rows of exactly `length` tokens, every one carrying loss: the most memory a step can take."""
    top = max(4, min(vocab, 32000)) - 1
    return [{"input_ids": [3 + (i * 7919 + j * 104729) % (top - 3) for j in range(length)],
             "completion_mask": [1] * length} for i in range(count)]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    print("internal: python -m trainer.engine.probe --child CONFIG BATCH RESULT (use `python -m trainer probe`)",
          file=sys.stderr)
    sys.exit(2)
