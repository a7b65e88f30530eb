"""What a run produced, and loading it for inference: the shared first step of chat, evaluate, merge, push.

    weights = resolve_weights(run_dir, checkpoint=None)  # the final adapter/ or any checkpoints/checkpoint-N
    loaded = load_run(weights)                            # base (+ adapter via PEFT, not merged), tokenizer
    with loaded.use("base") as model: ...                 # the same weights with the adapter switched off

Any checkpoint of any run is usable (finished, aborted, interrupted): a LoRA checkpoint holds
adapter_config.json + adapter weights, a full fine-tuning one a whole model. The run's config.yaml
gives the base model, the method and the chat template. Everything that cannot be done raises
AfterTrainingError with one sentence a user can act on. This module imports torch only inside
load_run, so the CLI and the web server can resolve and list weights without it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from trainer.config import ConfigError, TrainConfig
from trainer.run.layout import ADAPTER_DIR, CHECKPOINTS_DIR, CONFIG_FILE, checkpoint_step

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TUNED, BASE = "tuned", "base"

Progress = Callable[[str], None]


class AfterTrainingError(ValueError):
    """A request about a run's result that cannot be done (no adapter, no base model, bad input); the
    message is one sentence that says why and what to do."""


def _has_adapter(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file() and any((path / name).is_file() for name in ADAPTER_WEIGHTS)


def _has_model(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        any(path.glob("model*.safetensors")) or any(path.glob("pytorch_model*.bin")))


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The run's config.yaml (what the trainer used), or AfterTrainingError naming the file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AfterTrainingError(f"{run_dir}: no such run directory")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise AfterTrainingError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        return TrainConfig.from_yaml(path)
    except ConfigError as exc:
        raise AfterTrainingError(f"{path}: {' '.join(str(exc).split())}") from None


def list_weights(run_dir: str | Path) -> list[str]:
    """Names of the usable weights of a run: `adapter` (the final one) first, then checkpoints, newest first."""
    run_dir = Path(run_dir)
    names: list[str] = []
    final = run_dir / ADAPTER_DIR
    if _has_adapter(final) or _has_model(final):
        names.append(ADAPTER_DIR)
    steps: list[tuple[int, str]] = []
    try:
        entries = list((run_dir / CHECKPOINTS_DIR).iterdir())
    except OSError:
        entries = []
    for entry in entries:
        step = checkpoint_step(entry)
        if step is not None and (_has_adapter(entry) or _has_model(entry)):
            steps.append((step, entry.name))
    return names + [name for _, name in sorted(steps, reverse=True)]


@dataclass(frozen=True)
class RunWeights:
    """One set of trained weights of a run: where it is and what it is."""

    run_dir: Path
    cfg: TrainConfig
    name: str  # "adapter" or "checkpoint-N"
    path: Path
    is_adapter: bool  # LoRA weights on top of the base (else a whole fine-tuned model)

    @property
    def step(self) -> Optional[int]:
        return checkpoint_step(self.name)

    @property
    def label(self) -> str:
        return "final adapter" if self.name == ADAPTER_DIR and self.is_adapter else (
            "final model" if self.name == ADAPTER_DIR else self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "name": self.name, "path": str(self.path), "label": self.label,
                "is_adapter": self.is_adapter, "step": self.step, "base_model": self.cfg.model_name_or_path,
                "method": self.cfg.method_label, "template": self.cfg.template}


def resolve_weights(run_dir: str | Path, checkpoint: Optional[str] = None) -> RunWeights:
    """The weights to use: `checkpoint` by name (`adapter`, `checkpoint-N` or just N), else the final
    adapter, else the newest checkpoint. AfterTrainingError when the run has none."""
    run_dir = Path(run_dir).expanduser().resolve()
    # A checkpoint's or the adapter's own directory names its run and the weights at once.
    if not (run_dir / CONFIG_FILE).is_file() and checkpoint is None:
        if checkpoint_step(run_dir) is not None and run_dir.parent.name == CHECKPOINTS_DIR:
            run_dir, checkpoint = run_dir.parent.parent, run_dir.name
        elif run_dir.name == ADAPTER_DIR and (run_dir.parent / CONFIG_FILE).is_file():
            run_dir, checkpoint = run_dir.parent, ADAPTER_DIR
    cfg = read_run_config(run_dir)
    available = list_weights(run_dir)
    if checkpoint is not None and str(checkpoint).strip():
        wanted = str(checkpoint).strip()
        if wanted.isdigit():
            wanted = f"checkpoint-{int(wanted)}"
        if wanted in ("final", "last", "latest"):
            wanted = available[0] if available else ADAPTER_DIR
        if wanted not in available:
            shown = ", ".join(available) if available else "none"
            raise AfterTrainingError(f"{run_dir.name}: no usable weights named '{checkpoint}' (this run has: {shown})")
        name = wanted
    elif available:
        name = available[0]
    else:
        raise AfterTrainingError(
            f"{run_dir.name}: the run has no adapter and no checkpoint yet (it stopped before its first save, or "
            "save_strategy is no): nothing to load")
    path = run_dir / ADAPTER_DIR if name == ADAPTER_DIR else run_dir / CHECKPOINTS_DIR / name
    return RunWeights(run_dir=run_dir, cfg=cfg, name=name, path=path, is_adapter=_has_adapter(path))


def inference_config(cfg: TrainConfig) -> TrainConfig:
    """The run's config for loading without training: no activation checkpointing."""
    return cfg.replace(gradient_checkpointing=False) if cfg.gradient_checkpointing else cfg


@dataclass
class LoadedRun:
    """A run's weights in memory: `model` is the base with the adapter applied (PEFT, not merged), or the
    fine-tuned full model; `use(TUNED | BASE)` gives the model to call for either side."""

    weights: RunWeights
    model: Any
    tokenizer: Any
    device: str
    precision: str
    loaded_in_bits: Optional[int]  # 4 or 8 when the base is quantized as in training
    seconds: float = 0.0
    _base_model: Any = field(default=None, repr=False)  # the untouched base of a full fine-tuning run

    @property
    def cfg(self) -> TrainConfig:
        return self.weights.cfg

    @contextmanager
    def use(self, which: str) -> Iterator[Any]:
        if which not in (TUNED, BASE):
            raise AfterTrainingError(f"model: '{which}' is neither '{TUNED}' nor '{BASE}'")
        if which == TUNED:
            yield self.model
        elif self.weights.is_adapter:
            previous = getattr(self._side, "which", TUNED)
            self._side.which = BASE
            try:
                yield self.model
            finally:
                self._side.which = previous
        else:
            if self._base_model is None:  # loaded on first use: a full fine-tune is a second whole model
                self._base_model = _load_base(self.cfg, self.precision, self.device)
            yield self._base_model

    def __post_init__(self) -> None:
        self._side = threading.local()  # which side (tuned or base) the calling thread's forwards run as
        if self.weights.is_adapter:
            self._switch_adapter_per_forward()

    def _switch_adapter_per_forward(self) -> None:
        """Each forward of the shared base runs with the adapter on or off for the thread that calls it,
        one forward at a time, so the tuned and the base reply can be generated side by side from one copy
        of the weights (PEFT's disable_adapter() would switch it for every thread at once)."""
        lock = threading.Lock()
        tuner = self.model.base_model

        def before(module, args, kwargs):
            lock.acquire()
            if getattr(self._side, "which", TUNED) == BASE:
                tuner.disable_adapter_layers()
            else:
                tuner.enable_adapter_layers()

        def after(module, args, kwargs, output):
            lock.release()

        inner = self.model.get_base_model()
        inner.register_forward_pre_hook(before, with_kwargs=True)
        inner.register_forward_hook(after, with_kwargs=True, always_call=True)

    def info(self) -> dict[str, Any]:
        return {**self.weights.to_dict(), "device": self.device, "precision": self.precision,
                "loaded_in_bits": self.loaded_in_bits, "load_seconds": round(self.seconds, 1)}


def _load_base(cfg: TrainConfig, precision: str, device: str, source: Optional[str] = None):
    from trainer.engine.model import ModelNotFoundError, load_model

    try:
        model = load_model(inference_config(cfg), precision=precision, device=device, source=source)
    except (ModelNotFoundError, RuntimeError) as exc:
        raise AfterTrainingError(str(exc).splitlines()[0]) from None
    model.config.use_cache = True  # training turned it off; generation needs it
    if not cfg.quantization_bit:
        model.to(device)
    model.eval()
    return model


def base_source(cfg: TrainConfig) -> str:
    """Where the base model loads from (the demo cache, a directory or a Hub id); AfterTrainingError if gone."""
    from trainer.engine.model import ModelNotFoundError, model_source

    try:
        return model_source(cfg)
    except ModelNotFoundError as exc:
        raise AfterTrainingError(str(exc)) from None


def load_tokenizer_of(cfg: TrainConfig):
    """The tokenizer exactly as training loaded it (the same pad token and padding side)."""
    from trainer.engine.model import ModelNotFoundError, load_tokenizer

    try:
        return load_tokenizer(cfg, base_source(cfg))
    except ModelNotFoundError as exc:
        raise AfterTrainingError(str(exc).splitlines()[0]) from None


def load_run(weights: RunWeights, *, device: Optional[str] = None, progress: Optional[Progress] = None) -> LoadedRun:
    """Load a run's weights for inference on `device` (default: the GPU when there is one, else the CPU),
    in the run's precision; a 4/8-bit base loads quantized as in training."""
    import time

    from trainer.plan.hardware import detect
    from trainer.plan.resolve import resolve_precision

    say = progress or (lambda text: None)
    started = time.time()
    cfg = weights.cfg
    hw = detect()
    device = device or hw.device
    precision = resolve_precision(cfg, hw) if device == hw.device else "fp32"
    bits = cfg.quantization_bit if weights.is_adapter else None
    tokenizer = load_tokenizer_of(cfg)
    if weights.is_adapter:
        kind = f", {bits}-bit as in training" if bits else ""
        say(f"loading the base model {cfg.model_name_or_path} ({precision} on {device}{kind})")
        model = _load_base(cfg, precision, device)
        say(f"applying the {weights.label} with PEFT (not merged)")
        model = apply_adapter(model, weights)
        model.eval()
    else:
        say(f"loading the fine-tuned model {weights.label} ({precision} on {device})")
        model = _load_base(cfg, precision, device, source=str(weights.path))
    say("ready")
    return LoadedRun(weights=weights, model=model, tokenizer=tokenizer, device=device, precision=precision,
                     loaded_in_bits=bits, seconds=time.time() - started)


def apply_adapter(model, weights: RunWeights):
    """The run's adapter on `model` with PEFT, not merged. A damaged or foreign adapter is one line naming its
    folder: it fails in safetensors, json, PEFT or torch, each with its own exception type."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(weights.path), is_trainable=False)
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0]
        if isinstance(exc, KeyError) or not detail:  # KeyError('peft_type') reads as just 'peft_type'
            detail = f"{type(exc).__name__} {detail}".strip()
        raise AfterTrainingError(f"{weights.path}: the adapter does not load on {weights.cfg.model_name_or_path}: "
                                 f"{detail[:300]}") from None
