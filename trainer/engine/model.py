"""Model and tokenizer loading: local directory, the demo model, or a Hub id; quantization; LoRA.

    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, precision="fp32", device="cpu")   # quantized when cfg.quantization_bit
    model = apply_lora(model, cfg)                            # unless cfg.finetuning_type == "full"

A model that cannot be found raises ModelNotFoundError with a message a user can act on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from trainer.config import LORA_TARGET_ALL, ConfigError, TrainConfig
from trainer.engine.demo import DEMO_NAME, resolve_model_path
from trainer.engine.distributed import SHARDED
from trainer.hub import (HUGGINGFACE, MODELSCOPE, chosen_hub, endpoint_problem, hub_label, hub_model_id, hub_offline,
                         modelscope_missing)
from trainer.local_names import hub_id_only, shadowed_locally

# bitsandbytes warns at import, on CPUs with AVX512-BF16, that an optional kernel package is missing;
# the fallback it uses works, so the warning would only alarm the reader of stdout.log.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


class ModelNotFoundError(FileNotFoundError):
    """The model (or its tokenizer) cannot be loaded from where the config says."""


def looks_like_local_path(name: str) -> bool:
    """A path the user meant as a directory, not a Hub id (`org/model`; on a shared server always a Hub id)."""
    if hub_id_only(name):
        return False
    return (name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or "\\" in name
            or (len(name) > 1 and name[1] == ":") or Path(name).expanduser().exists())


def model_source(cfg: TrainConfig) -> str:
    """Where the model is loaded from: the demo's cache dir, a local directory, or a Hub id."""
    name = cfg.model_name_or_path.strip()
    if name.lower() == DEMO_NAME:
        return resolve_model_path(name)
    if looks_like_local_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"model '{name}' not found: the directory {path.resolve()} does not exist.")
        if not path.is_dir():
            raise ModelNotFoundError(f"model '{name}' is a file: point model_name_or_path at the directory "
                                     "that holds config.json.")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model '{name}': the directory has no config.json, so it is not a "
                                     "saved model (an adapter directory needs its base model here instead).")
        return str(path)
    if chosen_hub(cfg.model_hub) == MODELSCOPE:
        return _modelscope_snapshot(name)
    if shadowed_locally(name):  # transformers would load the local folder: answer as for a Hub id not there
        raise _not_found(name, OSError(f"{name} is not a valid model identifier"))
    problem = None if hub_offline() else endpoint_problem(HUGGINGFACE)
    if problem:  # huggingface_hub would fail on it with a bare URL error deep in the download
        raise ModelNotFoundError(f"model '{name}' cannot be loaded: {problem}")
    return name  # Hugging Face, or the mirror HF_ENDPOINT names: huggingface_hub reads the variable itself


def _modelscope_snapshot(name: str) -> str:
    """The local directory of a model downloaded from ModelScope (its id there may differ: see the catalog)."""
    missing = modelscope_missing("model", name)
    if missing:
        raise ModelNotFoundError(missing)
    from modelscope import snapshot_download

    try:
        return snapshot_download(hub_model_id(name, MODELSCOPE), local_files_only=hub_offline())
    except Exception as exc:  # modelscope raises its own types for a missing or unreachable repository
        first_line = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ModelNotFoundError(f"model '{name}' (ModelScope id {hub_model_id(name, MODELSCOPE)}) could not be "
                                 f"downloaded from ModelScope: {first_line}") from None


def _not_found(name: str, exc: BaseException) -> ModelNotFoundError:
    text = f"{type(exc).__name__}: {exc}"
    if any(s in text for s in ("401", "403", "gated", "restricted", "authenticated")):
        return ModelNotFoundError(
            f"model '{name}' is gated or private on {hub_label(chosen_hub())}: accept its license on the model page "
            "and set the HF_TOKEN environment variable before starting tunedeck.")
    if hub_offline() or any(s in text.lower() for s in ("offline", "connect", "resolve", "network", "timed out",
                                                          "unreachable", "max retries")):
        return ModelNotFoundError(
            f"model '{name}' not found: not a local directory and {hub_label(chosen_hub())} is unreachable (offline "
            "or no network), "
            "and it is not in the local Hugging Face cache. Download it on a connected machine "
            f"(huggingface-cli download {name}) or give the path of a local copy.")
    if "404" in text or "not a valid model identifier" in text or "Repository Not Found" in text:
        return ModelNotFoundError(
            f"model '{name}' not found: not a local directory and no such model on the Hugging Face Hub "
            "(check the spelling, e.g. meta-llama/Llama-3.1-8B).")
    return ModelNotFoundError(f"model '{name}' could not be loaded: {str(exc).splitlines()[0] if str(exc) else text}")


def load_tokenizer(cfg: TrainConfig, source: str | None = None):
    """The tokenizer, with a pad token (the eos token when the model defines none) and right padding."""
    from transformers import AutoTokenizer

    source = source or model_source(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _not_found(cfg.model_name_or_path, exc) from exc
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelNotFoundError(f"model '{cfg.model_name_or_path}': its tokenizer has neither a pad, an eos "
                                     "nor an unk token to pad batches with.")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def quantization_config(cfg: TrainConfig, precision: str):
    """The BitsAndBytesConfig for cfg.quantization_bit (None for a 16/32-bit base)."""
    if not cfg.quantization_bit:
        return None
    from transformers import BitsAndBytesConfig

    if cfg.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quantization_type,
        bnb_4bit_use_double_quant=cfg.double_quantization,
        bnb_4bit_compute_dtype=torch_dtype(precision),
        # FSDP and ZeRO-3 shard only tensors of one float dtype: the 4-bit weights are stored in that dtype.
        **({"bnb_4bit_quant_storage": torch_dtype(precision)} if cfg.distributed_type in SHARDED else {}),
    )


def load_model(cfg: TrainConfig, *, precision: str = "fp32", device: str = "cpu",
               attn_implementation: str = "sdpa", source: str | None = None):
    """The base model, quantized and prepared for k-bit training when asked, on `device`."""
    from transformers import AutoModelForCausalLM

    source = source or model_source(cfg)
    # Full fine-tuning in fp16 keeps fp32 master weights (the grad scaler cannot unscale fp16 grads).
    load_precision = "fp32" if cfg.finetuning_type == "full" and precision == "fp16" else precision
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(load_precision),
        "trust_remote_code": cfg.trust_remote_code,
        "attn_implementation": attn_implementation,
    }
    quant = quantization_config(cfg, precision)
    if quant is not None:
        kwargs["quantization_config"] = quant
        if cfg.distributed_type not in SHARDED:  # sharded: FSDP/ZeRO-3 place the shards themselves
            kwargs["device_map"] = {"": _local_device(device)}  # each process's model on its own GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if "attn_implementation" in str(exc) or "Flash" in str(exc) or "flash" in str(exc):
            raise RuntimeError(f"attention '{attn_implementation}' is not available here: {exc}. "
                               "Set attn_implementation to auto or sdpa.") from exc
        raise _not_found(cfg.model_name_or_path, exc) from exc
    model.config.use_cache = False  # the KV cache only costs memory while training
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    elif cfg.gradient_checkpointing:
        kwargs_ckpt = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs_ckpt)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs_ckpt)
    return model


def _local_device(device: str) -> Any:
    if device == "cuda":
        return int(os.environ.get("LOCAL_RANK", "0"))
    return "cpu"


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    target = cfg.lora_target
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=LORA_TARGET_ALL if target == LORA_TARGET_ALL else list(target),
        bias=cfg.lora_bias,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
    )


def apply_lora(model, cfg: TrainConfig):
    """Wrap the base in a PEFT LoRA model (only the adapters train)."""
    from peft import get_peft_model

    problem = lora_target_problem(model, cfg)
    if problem:
        raise ConfigError([("lora_target", problem)])
    try:
        return get_peft_model(model, lora_config(cfg))
    except ValueError as exc:
        if "Target modules" in str(exc) or "not found in the base model" in str(exc):
            raise ConfigError([("lora_target", _unknown_targets(list(cfg.lora_target), _linear_names(model)))]) \
                from exc
        raise


def lora_target_problem(model, cfg: TrainConfig) -> str | None:
    """Why lora_target names a layer this model lacks, or None. PEFT adapts the names it finds and drops the
    rest without a word: a typo (v_prj) would train q_proj alone while the config says both. PEFT matches a
    name or a dotted suffix of a module's name."""
    if cfg.finetuning_type != "lora" or cfg.lora_target == LORA_TARGET_ALL:
        return None
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in cfg.lora_target if not any(n == t or n.endswith("." + t) for n in names)]
    return _unknown_targets(missing, _linear_names(model)) if missing else None


def lora_target_problem_unloaded(cfg: TrainConfig, source: str) -> str | None:
    """lora_target judged against the model's layers without loading its weights (built on the meta
    device from config.json), for `check`. None when the targets exist, or when the model cannot be built
    that way (the run then judges it when it loads)."""
    if cfg.finetuning_type != "lora" or cfg.lora_target == LORA_TARGET_ALL:
        return None
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    except Exception:  # an architecture meta cannot build, a config only the run can fetch
        return None
    return lora_target_problem(model, cfg)


def _linear_names(model) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if type(m).__name__ in ("Linear", "Linear4bit", "Linear8bitLt")})


def _unknown_targets(missing: list[str], linear: list[str]) -> str:
    import difflib

    guesses = {t: difflib.get_close_matches(t, linear, n=1) for t in missing}
    named = ", ".join(f"{t} (did you mean {g[0]}?)" if g else t for t, g in guesses.items())
    return (f"no layer of this model is named {named}. Its linear layers are: {', '.join(linear)} "
            "(or use all-linear).")


def trainable_parameters(model) -> tuple[int, int]:
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if hasattr(param, "quant_state") or type(param).__name__ == "Params4bit":
            n *= 2  # two 4-bit weights per stored byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
