"""Exporting a run's weights: merged into the base, to GGUF, or the adapter as a zip.

    result = merge_run(run_dir, out_dir, checkpoint=None)   # sharded safetensors + tokenizer + generation config
    gguf = export_gguf(out_dir, out_dir / "model-f16.gguf")  # when llama.cpp's converter is installed
    zip_path = adapter_zip(run_dir, out_zip, checkpoint=None)

The merged model loads alone with AutoModelForCausalLM.from_pretrained(out_dir), and its tokenizer
carries the chat template the run trained with (a named template is saved as jinja), so it prompts as
training did. A 4/8-bit QLoRA adapter is merged into the base loaded in 16 bits: the quantization was
a way to train in less memory, and merging into quantized weights would lose the adapter's precision.
Nothing is written into the run directory, and the output appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

from trainer.engine.artifacts import (
    AfterTrainingError, RunWeights, apply_adapter, base_source, load_tokenizer_of, resolve_weights,
)

LLAMA_CPP_ENV = "TUNEDECK_LLAMA_CPP"  # a llama.cpp checkout, or its convert_hf_to_gguf.py
CONVERTER = "convert_hf_to_gguf.py"
MAX_SHARD_SIZE = "2GB"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "tokenizer.model", "vocab.json", "merges.txt")


@dataclass
class MergeResult:
    out_dir: Path
    weights: str  # which weights of the run
    dtype: str
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AfterTrainingError(f"{out_dir}: already exists and is not empty; choose a new directory")


def saved_chat_template(tokenizer, cfg) -> Optional[str]:
    """The chat template to save with the exported tokenizer: the named one training rendered with."""
    from trainer.datasets import chat_template_for_saving

    return chat_template_for_saving(tokenizer, cfg)


def merge_run(run_dir: str | Path, out_dir: str | Path, checkpoint: Optional[str] = None, *,
              max_shard_size: str = MAX_SHARD_SIZE, progress: Optional[Callable[[str], None]] = None) -> MergeResult:
    """Merge the run's adapter (or copy its full model) into OUT_DIR as a standalone model."""
    say = progress or (lambda text: None)
    weights = resolve_weights(run_dir, checkpoint)
    out_dir = Path(out_dir).expanduser().resolve()
    _check_out_dir(out_dir)
    try:  # before minutes of loading: a directory that cannot be written is known now
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir.parent).close()
    except OSError as exc:
        raise AfterTrainingError(f"{out_dir}: cannot write there: {exc.strerror or exc}") from None
    cfg = weights.cfg
    notes: list[str] = []
    import torch
    from transformers import AutoModelForCausalLM

    source = base_source(cfg) if weights.is_adapter else str(weights.path)
    tokenizer = load_tokenizer_of(cfg)
    say(f"loading {'the base model ' + cfg.model_name_or_path if weights.is_adapter else weights.label} in 16 bits "
        "on the CPU")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AfterTrainingError(f"model '{cfg.model_name_or_path}' could not be loaded: "
                                 f"{str(exc).splitlines()[0]}") from None
    dtype = str(model.dtype).replace("torch.", "")
    if weights.is_adapter:
        if cfg.quantization_bit:
            notes.append(f"this {cfg.quantization_bit}-bit QLoRA adapter was merged into the base loaded unquantized "
                         f"in {dtype}, not in {cfg.quantization_bit} bits: the merged model is that base plus the "
                         "adapter, so its outputs differ slightly from the quantized model chat and evaluate use")
        say(f"merging the {weights.label}")
        model = apply_adapter(model, weights)
        with torch.no_grad():
            model = model.merge_and_unload()
    template = saved_chat_template(tokenizer, cfg)
    if template:
        tokenizer.chat_template = template
        notes.append(f"the tokenizer carries the '{cfg.template}' chat template the run trained with")
    staging: Optional[Path] = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        say(f"saving sharded safetensors to {out_dir}")
        model.config.use_cache = True
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(staging)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(staging)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(staging, out_dir)
        os.chmod(out_dir, 0o755)
    except OSError as exc:
        raise AfterTrainingError(f"{out_dir}: cannot write the merged model: {exc.strerror or exc}") from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    files = sorted(p.name for p in out_dir.iterdir())
    return MergeResult(out_dir=out_dir, weights=weights.name, dtype=dtype, notes=notes, files=files)


def find_gguf_converter() -> Optional[Path]:
    """llama.cpp's convert_hf_to_gguf.py: from $TUNEDECK_LLAMA_CPP (the script or its checkout), or on PATH."""
    configured = os.environ.get(LLAMA_CPP_ENV, "").strip()
    candidates = []
    if configured:
        path = Path(configured).expanduser()
        candidates.append(path / CONVERTER if path.is_dir() else path)
    on_path = shutil.which(CONVERTER)
    if on_path:
        candidates.append(Path(on_path))
    return next((c for c in candidates if c.is_file()), None)


def export_gguf(model_dir: str | Path, out_file: str | Path, outtype: str = "f16",
                progress: Optional[Callable[[str], None]] = None) -> Path:
    """Convert a merged model directory to one GGUF file with llama.cpp's converter."""
    model_dir, out_file = Path(model_dir), Path(out_file).expanduser().resolve()
    converter = find_gguf_converter()
    if converter is None:
        raise AfterTrainingError(
            f"GGUF export needs llama.cpp's {CONVERTER}, which is not installed: clone "
            f"https://github.com/ggml-org/llama.cpp, pip install -r its requirements.txt, and set {LLAMA_CPP_ENV} "
            "to the checkout (the merged safetensors model is ready without it)")
    if not (model_dir / "config.json").is_file():
        raise AfterTrainingError(f"{model_dir}: not a merged model (no config.json); merge the run first")
    if out_file.exists():
        raise AfterTrainingError(f"{out_file}: already exists; choose a new file name")
    if progress:
        progress(f"converting to GGUF ({outtype}) with {converter}")
    staging = out_file.with_name(f".{out_file.name}.partial")
    proc = subprocess.run([sys.executable, str(converter), str(model_dir), "--outfile", str(staging),
                           "--outtype", outtype], capture_output=True, text=True)
    if proc.returncode != 0 or not staging.is_file():
        staging.unlink(missing_ok=True)
        last = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
        raise AfterTrainingError(f"GGUF conversion failed: {last[-1] if last else f'exit code {proc.returncode}'}")
    os.replace(staging, out_file)
    return out_file


def adapter_files(weights: RunWeights) -> list[Path]:
    """The files that make up an adapter for someone else: weights, config, card and tokenizer (no optimizer
    state)."""
    if not weights.is_adapter:
        raise AfterTrainingError(f"{weights.run_dir.name}: a full fine-tuning run has no adapter; merge (export the "
                                 "model) instead")
    return [weights.path / name for name in _ADAPTER_FILES + _TOKENIZER_FILES if (weights.path / name).is_file()]


def adapter_chat_template(weights: RunWeights) -> Optional[str]:
    """The chat template a shared adapter should carry: the named one (or the `auto` fallback) the run
    trained with, which the saved tokenizer files do not hold; None when the tokenizer's own was used."""
    from trainer.datasets import chat_template_for_saving

    own = None
    jinja = weights.path / "chat_template.jinja"
    if jinja.is_file():
        own = jinja.read_text(encoding="utf-8")
    else:
        try:
            own = json.loads((weights.path / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError, AttributeError):
            own = None
    return chat_template_for_saving(SimpleNamespace(chat_template=own), weights.cfg)


def adapter_zip(run_dir: str | Path, out_zip: str | Path, checkpoint: Optional[str] = None) -> Path:
    """The adapter (final, or a checkpoint without its optimizer state) as a zip a page can offer for download."""
    weights = resolve_weights(run_dir, checkpoint)
    files = adapter_files(weights)
    out_zip = Path(out_zip).expanduser().resolve()
    if out_zip.exists():
        raise AfterTrainingError(f"{out_zip}: already exists; choose a new file name")
    staging = out_zip.with_name(f".{out_zip.name}.partial")
    folder = f"{weights.run_dir.name}-{weights.name}"
    try:
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            template = adapter_chat_template(weights)
            for path in files:
                if not (template and path.name == "chat_template.jinja"):
                    archive.write(path, f"{folder}/{path.name}")
            if template:
                archive.writestr(f"{folder}/chat_template.jinja", template)
            archive.writestr(f"{folder}/tunedeck-config.yaml", weights.cfg.to_yaml())
        os.replace(staging, out_zip)
    except OSError as exc:
        raise AfterTrainingError(f"{out_zip}: cannot write the zip: {exc.strerror or exc}") from None
    finally:
        staging.unlink(missing_ok=True)
    return out_zip
