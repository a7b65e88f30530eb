"""Shapes of common open models and GPUs, so the plan and the memory estimate work without a download.

`model_shape(name_or_path)` answers from, in order: the shipped `demo` model, a local directory (or
file) holding a `config.json` (no weights are read), or the catalog below (exact `config.json` values
of the published checkpoints). It returns None when the model is unknown, never raises for that.
Pure Python: no torch, no network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

# Linear layers each architecture family has per decoder layer, as named in its modeling code; these
# are what LoRA's `all-linear` targets (lm_head excluded, as peft does).
_GATED_MLP_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mixtral", "olmo",
                    "olmo2", "granite", "cohere", "starcoder2_gated", "internlm2", "deepseek", "yi", "baichuan"}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that decide its memory and compute."""

    name: str
    model_type: str  # config.json's model_type: llama, mistral, qwen2, gemma2, phi3, chatglm, ...
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int = 0  # 0: hidden_size // num_attention_heads
    attention_bias: bool = False  # bias on the q/k/v projections (Qwen2, ChatGLM)
    gated_mlp: bool = True  # SwiGLU/GeGLU: gate + up + down; False: up + down (GPT-2, GPT-NeoX, OPT)
    num_experts: int = 1  # mixture-of-experts MLPs per layer (1: dense)
    max_position_embeddings: Optional[int] = None
    gated: bool = False  # the Hub repository asks you to accept a licence before downloading
    license: str = ""
    published_parameters: Optional[int] = None  # as stated by the model card, when it differs from ours
    source: str = "catalog"  # catalog | config.json | demo
    aliases: tuple[str, ...] = field(default=(), compare=False)

    # --- derived -------------------------------------------------------------------------------
    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.resolved_head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.resolved_head_dim

    def linear_modules(self) -> list[tuple[str, int, int]]:
        """(module name, in_features, out_features) of the linear layers of ONE decoder layer."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_size, self.kv_size
        if self.model_type == "phi3":
            return [("qkv_proj", h, q + 2 * kv), ("o_proj", q, h), ("gate_up_proj", h, 2 * i), ("down_proj", i, h)]
        if self.model_type == "chatglm":
            return [("query_key_value", h, q + 2 * kv), ("dense", q, h),
                    ("dense_h_to_4h", h, 2 * i), ("dense_4h_to_h", i, h)]
        attention = [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)]
        mlp = [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)] if self.gated_mlp else \
            [("up_proj", h, i), ("down_proj", i, h)]
        if self.num_experts > 1:
            mlp = [(f"experts.{name}", n_in, n_out) for name, n_in, n_out in mlp] * self.num_experts
        return attention + mlp

    def linear_parameters_per_layer(self) -> int:
        return sum(n_in * n_out for _, n_in, n_out in self.linear_modules())

    def bias_parameters_per_layer(self) -> int:
        return (self.q_size + 2 * self.kv_size) if self.attention_bias else 0

    def norm_parameters_per_layer(self) -> int:
        # Gemma 2 and 3 normalise before and after both attention and MLP; most others twice.
        return self.hidden_size * (4 if self.model_type in ("gemma2", "gemma3_text") else 2)

    def embedding_parameters(self) -> int:
        """Input embedding plus, when untied, the output projection (lm_head)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def parameter_count(self) -> int:
        """Total parameters, counted from the shape (tied embeddings counted once)."""
        per_layer = self.linear_parameters_per_layer() + self.bias_parameters_per_layer() + \
            self.norm_parameters_per_layer()
        return self.num_layers * per_layer + self.embedding_parameters() + self.hidden_size

    @property
    def num_parameters(self) -> int:
        return self.published_parameters or self.parameter_count()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        data["head_dim"] = self.resolved_head_dim
        data["num_parameters"] = self.num_parameters
        return data


def _m(name: str, model_type: str, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int,
       vocab: int, tied: bool, *, aliases: tuple[str, ...] = (), **kw: Any) -> ModelShape:
    return ModelShape(name=name, model_type=model_type, num_layers=layers, hidden_size=hidden,
                      intermediate_size=intermediate, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      vocab_size=vocab, tie_word_embeddings=tied, aliases=aliases, **kw)


_LLAMA3 = "llama3.1"
# Values copied from each checkpoint's config.json. Instruct/chat variants share the base's shape.
_CATALOG: list[ModelShape] = [
    _m("meta-llama/Llama-3.1-8B", "llama", 32, 4096, 14336, 32, 8, 128256, False,
       aliases=("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B",
                "meta-llama/Meta-Llama-3.1-8B-Instruct"),
       max_position_embeddings=131072, gated=True, license=_LLAMA3),
    _m("meta-llama/Llama-3.1-70B", "llama", 80, 8192, 28672, 64, 8, 128256, False,
       aliases=("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Meta-Llama-3.1-70B",
                "meta-llama/Meta-Llama-3.1-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct"),
       max_position_embeddings=131072, gated=True, license=_LLAMA3),
    _m("meta-llama/Llama-3.2-1B", "llama", 16, 2048, 8192, 32, 8, 128256, True, head_dim=64,
       aliases=("meta-llama/Llama-3.2-1B-Instruct",), max_position_embeddings=131072, gated=True,
       license="llama3.2"),
    _m("meta-llama/Llama-3.2-3B", "llama", 28, 3072, 8192, 24, 8, 128256, True, head_dim=128,
       aliases=("meta-llama/Llama-3.2-3B-Instruct",), max_position_embeddings=131072, gated=True,
       license="llama3.2"),
    _m("meta-llama/Meta-Llama-3-8B", "llama", 32, 4096, 14336, 32, 8, 128256, False,
       aliases=("meta-llama/Meta-Llama-3-8B-Instruct",), max_position_embeddings=8192, gated=True,
       license="llama3"),
    _m("meta-llama/Llama-2-7b-hf", "llama", 32, 4096, 11008, 32, 32, 32000, False,
       aliases=("meta-llama/Llama-2-7b-chat-hf",), max_position_embeddings=4096, gated=True, license="llama2"),
    _m("mistralai/Mistral-7B-v0.3", "mistral", 32, 4096, 14336, 32, 8, 32768, False,
       aliases=("mistralai/Mistral-7B-Instruct-v0.3",), max_position_embeddings=32768, gated=True,
       license="apache-2.0"),
    _m("mistralai/Mistral-7B-v0.1", "mistral", 32, 4096, 14336, 32, 8, 32000, False,
       aliases=("mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.2"),
       max_position_embeddings=32768, gated=True, license="apache-2.0"),
    _m("Qwen/Qwen2.5-0.5B", "qwen2", 24, 896, 4864, 14, 2, 151936, True, attention_bias=True,
       aliases=("Qwen/Qwen2.5-0.5B-Instruct",), max_position_embeddings=32768, license="apache-2.0"),
    _m("Qwen/Qwen2.5-1.5B", "qwen2", 28, 1536, 8960, 12, 2, 151936, True, attention_bias=True,
       aliases=("Qwen/Qwen2.5-1.5B-Instruct",), max_position_embeddings=32768, license="apache-2.0"),
    _m("Qwen/Qwen2.5-3B", "qwen2", 36, 2048, 11008, 16, 2, 151936, True, attention_bias=True,
       aliases=("Qwen/Qwen2.5-3B-Instruct",), max_position_embeddings=32768, license="qwen-research"),
    _m("Qwen/Qwen2.5-7B", "qwen2", 28, 3584, 18944, 28, 4, 152064, False, attention_bias=True,
       aliases=("Qwen/Qwen2.5-7B-Instruct",), max_position_embeddings=131072, license="apache-2.0"),
    _m("Qwen/Qwen2.5-14B", "qwen2", 48, 5120, 13824, 40, 8, 152064, False, attention_bias=True,
       aliases=("Qwen/Qwen2.5-14B-Instruct",), max_position_embeddings=131072, license="apache-2.0"),
    _m("google/gemma-2-2b", "gemma2", 26, 2304, 9216, 8, 4, 256000, True, head_dim=256,
       aliases=("google/gemma-2-2b-it",), max_position_embeddings=8192, gated=True, license="gemma"),
    _m("google/gemma-2-9b", "gemma2", 42, 3584, 14336, 16, 8, 256000, True, head_dim=256,
       aliases=("google/gemma-2-9b-it",), max_position_embeddings=8192, gated=True, license="gemma"),
    _m("microsoft/Phi-3-mini-4k-instruct", "phi3", 32, 3072, 8192, 32, 32, 32064, False,
       aliases=("microsoft/Phi-3-mini-128k-instruct", "microsoft/Phi-3.5-mini-instruct"),
       max_position_embeddings=4096, license="mit"),
    _m("THUDM/chatglm3-6b", "chatglm", 28, 4096, 13696, 32, 2, 65024, False, head_dim=128, attention_bias=True,
       aliases=("zai-org/chatglm3-6b", "THUDM/chatglm3-6b-base"), max_position_embeddings=8192,
       license="chatglm3 (registration for commercial use)"),
    _m("openlm-research/open_llama_7b_v2", "llama", 32, 4096, 11008, 32, 32, 32000, False,
       max_position_embeddings=2048, license="apache-2.0"),
    _m("openlm-research/open_llama_3b_v2", "llama", 26, 3200, 8640, 32, 32, 32000, False,
       max_position_embeddings=2048, license="apache-2.0"),
    _m("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", 22, 2048, 5632, 32, 4, 32000, False,
       aliases=("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",), max_position_embeddings=2048,
       license="apache-2.0"),
    _m("HuggingFaceTB/SmolLM2-135M", "llama", 30, 576, 1536, 9, 3, 49152, True,
       aliases=("HuggingFaceTB/SmolLM2-135M-Instruct",), max_position_embeddings=8192, license="apache-2.0"),
    _m("HuggingFaceTB/SmolLM2-360M", "llama", 32, 960, 2560, 15, 5, 49152, True,
       aliases=("HuggingFaceTB/SmolLM2-360M-Instruct",), max_position_embeddings=8192, license="apache-2.0"),
    _m("HuggingFaceTB/SmolLM2-1.7B", "llama", 24, 2048, 8192, 32, 32, 49152, True,
       aliases=("HuggingFaceTB/SmolLM2-1.7B-Instruct",), max_position_embeddings=8192, license="apache-2.0"),
]


def list_models() -> list[ModelShape]:
    """The catalog, in a stable order (family, then size)."""
    return list(_CATALOG)


def _lookup_key(name: str) -> str:
    return name.strip().rstrip("/").lower()


_BY_NAME: dict[str, ModelShape] = {}
_BY_SHORT: dict[str, ModelShape] = {}
for _shape in _CATALOG:
    for _name in (_shape.name, *_shape.aliases):
        _BY_NAME[_lookup_key(_name)] = _shape
        _BY_SHORT.setdefault(_lookup_key(_name.split("/")[-1]), _shape)


# The same checkpoints on ModelScope, for users who download from there (model_hub / USE_MODELSCOPE_HUB).
# Qwen and SmolLM2 keep their Hugging Face ids there; open_llama has no official copy.
_MODELSCOPE_IDS: dict[str, str] = {
    "meta-llama/Llama-3.1-8B": "LLM-Research/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B-Instruct": "LLM-Research/Meta-Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B": "LLM-Research/Meta-Llama-3.1-70B",
    "meta-llama/Llama-3.1-70B-Instruct": "LLM-Research/Meta-Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct": "LLM-Research/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-3.2-1B": "LLM-Research/Llama-3.2-1B",
    "meta-llama/Llama-3.2-1B-Instruct": "LLM-Research/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B": "LLM-Research/Llama-3.2-3B",
    "meta-llama/Llama-3.2-3B-Instruct": "LLM-Research/Llama-3.2-3B-Instruct",
    "meta-llama/Meta-Llama-3-8B": "LLM-Research/Meta-Llama-3-8B",
    "meta-llama/Meta-Llama-3-8B-Instruct": "LLM-Research/Meta-Llama-3-8B-Instruct",
    "meta-llama/Llama-2-7b-hf": "modelscope/Llama-2-7b-ms",
    "meta-llama/Llama-2-7b-chat-hf": "modelscope/Llama-2-7b-chat-ms",
    "mistralai/Mistral-7B-v0.3": "LLM-Research/mistral-7b-v0.3",
    "mistralai/Mistral-7B-Instruct-v0.3": "LLM-Research/Mistral-7B-Instruct-v0.3",
    "mistralai/Mistral-7B-v0.1": "AI-ModelScope/Mistral-7B-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.1": "AI-ModelScope/Mistral-7B-Instruct-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.2": "AI-ModelScope/Mistral-7B-Instruct-v0.2",
    "google/gemma-2-2b": "LLM-Research/gemma-2-2b",
    "google/gemma-2-2b-it": "LLM-Research/gemma-2-2b-it",
    "google/gemma-2-9b": "LLM-Research/gemma-2-9b",
    "google/gemma-2-9b-it": "LLM-Research/gemma-2-9b-it",
    "microsoft/Phi-3-mini-4k-instruct": "LLM-Research/Phi-3-mini-4k-instruct",
    "microsoft/Phi-3-mini-128k-instruct": "LLM-Research/Phi-3-mini-128k-instruct",
    "microsoft/Phi-3.5-mini-instruct": "LLM-Research/Phi-3.5-mini-instruct",
    "THUDM/chatglm3-6b": "ZhipuAI/chatglm3-6b",
    "THUDM/chatglm3-6b-base": "ZhipuAI/chatglm3-6b-base",
    "zai-org/chatglm3-6b": "ZhipuAI/chatglm3-6b",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": "AI-ModelScope/TinyLlama-1.1B-Chat-v1.0",
}
_SAME_ID_ON_MODELSCOPE = ("qwen/", "huggingfacetb/")
_MODELSCOPE_BY_KEY = {_lookup_key(k): v for k, v in _MODELSCOPE_IDS.items()}
for _hf_id, _ms_id in _MODELSCOPE_IDS.items():  # a ModelScope id typed in the form finds the same shape
    _BY_NAME.setdefault(_lookup_key(_ms_id), _BY_NAME[_lookup_key(_hf_id)])


def modelscope_id(name: str) -> Optional[str]:
    """The ModelScope id of a catalog model given by its Hugging Face id (or alias), else None."""
    key = _lookup_key(name)
    if key in _MODELSCOPE_BY_KEY:
        return _MODELSCOPE_BY_KEY[key]
    if key.startswith(_SAME_ID_ON_MODELSCOPE) and key in _BY_NAME:
        return name.strip().rstrip("/")
    return None


def catalog_shape(name: str) -> Optional[ModelShape]:
    """A catalog entry by Hub id, alias, or bare repository name (`Llama-3.1-8B`)."""
    key = _lookup_key(name)
    return _BY_NAME.get(key) or (_BY_SHORT.get(key) if "/" not in key else None)


# --- config.json ---------------------------------------------------------------------------------

# transformers' defaults for tie_word_embeddings when config.json omits it.
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "opt", "bloom", "falcon"}
_UNGATED_MLP = {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "starcoder2", "gpt_bigcode"}


def _first(config: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def shape_from_config(config: dict[str, Any], name: str = "", source: str = "config.json") -> ModelShape:
    """A ModelShape from the dict of a transformers config.json. Raises ValueError naming a missing key."""
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers keep the language model inside
        outer_tied = config.get("tie_word_embeddings")
        config = {**config["text_config"]}
        if outer_tied is not None:
            config.setdefault("tie_word_embeddings", outer_tied)
    model_type = str(config.get("model_type") or "unknown")
    layers = _first(config, "num_hidden_layers", "num_layers", "n_layer")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    heads = _first(config, "num_attention_heads", "n_head")
    vocab = _first(config, "padded_vocab_size", "vocab_size")
    missing = [k for k, v in (("num_hidden_layers", layers), ("hidden_size", hidden),
                              ("num_attention_heads", heads), ("vocab_size", vocab)) if v is None]
    if missing:
        raise ValueError(f"config.json has no {', '.join(missing)}: not a decoder-only language model config")
    for key, value in (("num_hidden_layers", layers), ("hidden_size", hidden), ("num_attention_heads", heads),
                       ("vocab_size", vocab)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"config.json: {key} must be a positive whole number, got {value!r}")
    intermediate = _first(config, "intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim")
    if isinstance(config.get("moe_intermediate_size"), int) and _first(config, "num_local_experts", "num_experts"):
        intermediate = config["moe_intermediate_size"]
    intermediate = int(intermediate or 4 * int(hidden))
    if model_type == "chatglm":
        kv_heads = config.get("multi_query_group_num") if config.get("multi_query_attention") else heads
    else:
        kv_heads = _first(config, "num_key_value_heads", "num_kv_heads") or heads
    tied = config.get("tie_word_embeddings")
    if tied is None:
        tied = model_type in _TIED_BY_DEFAULT
    experts = int(_first(config, "num_local_experts", "num_experts") or 1)
    if not kv_heads or int(kv_heads) <= 0 or intermediate <= 0 or experts <= 0:
        raise ValueError("config.json: key/value heads, intermediate size and experts must be positive")
    return ModelShape(
        name=name or str(config.get("_name_or_path") or model_type),
        model_type=model_type,
        num_layers=int(layers),
        hidden_size=int(hidden),
        intermediate_size=intermediate,
        num_attention_heads=int(heads),
        num_key_value_heads=int(kv_heads),
        vocab_size=int(vocab),
        tie_word_embeddings=bool(tied),
        head_dim=int(_first(config, "head_dim", "kv_channels") or 0),
        attention_bias=bool(config.get("attention_bias") or config.get("add_qkv_bias")
                            or model_type in ("qwen2",)),
        gated_mlp=model_type not in _UNGATED_MLP,
        num_experts=experts,
        max_position_embeddings=_first(config, "max_position_embeddings", "seq_length", "n_positions"),
        source=source,
    )


def read_config_json(path: str | Path) -> Optional[dict[str, Any]]:
    """The config.json of a local model directory (or the file itself); None when there is none."""
    path = Path(path).expanduser()
    candidate = path / "config.json" if path.is_dir() else path
    if candidate.name != "config.json" or not candidate.is_file():
        return None
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _hub_cache_config(repo_id: str) -> Optional[dict[str, Any]]:
    """config.json of a Hub model from the local Hugging Face cache (newest snapshot), without network."""
    import os

    parts = repo_id.strip().strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"),
             os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None,
             os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")]
    for root in filter(None, roots):
        snapshots = Path(root) / f"models--{parts[0]}--{parts[1]}" / "snapshots"
        try:
            candidates = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            continue
        for candidate in candidates:
            config = read_config_json(candidate)
            if config is not None:
                return config
    return None


def _demo_shape() -> ModelShape:
    """The shipped demo model's shape: its built config.json, else the demo module's constants (no build)."""
    from trainer.engine import demo  # no torch at import time

    config = read_config_json(demo.demo_model_dir()) or {
        "model_type": "llama", "num_hidden_layers": demo.NUM_LAYERS, "hidden_size": demo.HIDDEN_SIZE,
        "intermediate_size": demo.INTERMEDIATE_SIZE, "num_attention_heads": demo.NUM_HEADS,
        "num_key_value_heads": demo.NUM_KV_HEADS, "vocab_size": demo.VOCAB_SIZE,
        "max_position_embeddings": demo.MAX_POSITIONS, "tie_word_embeddings": False}
    return replace(shape_from_config(config, "demo", "demo"), license="apache-2.0")


def model_shape(name_or_path: str) -> Optional[ModelShape]:
    """The shape of `demo`, a local model directory, a catalog model or a Hub model in the local Hub
    cache; None when unknown (never raises for a bad name)."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        return None
    name = str(name_or_path).strip()
    if name == "demo":
        return _demo_shape()
    try:
        config = read_config_json(name)
        is_local = config is not None or Path(name).expanduser().exists()
    except (OSError, ValueError):  # a name no file system accepts (a NUL byte, too long)
        return None
    source = "config.json"
    if config is None:
        known = catalog_shape(name)
        if known is not None or is_local:
            return known
        # A Hub model downloaded before: its config.json is in the local Hub cache, readable offline.
        config = _hub_cache_config(name)
        source = "hub cache"
        if config is None:
            return None
    try:
        local = shape_from_config(config, name, source)
    except (ValueError, TypeError):
        return None
    known = catalog_shape(str(config.get("_name_or_path") or "")) or catalog_shape(name)
    return replace(local, gated=known.gated, license=known.license) if known else local


# --- GPUs ----------------------------------------------------------------------------------------

GIB = 1024 ** 3


@dataclass(frozen=True)
class GpuModel:
    """A GPU model and its peak dense tensor-core throughput at 16 bits (bf16; fp16 where the card has no
    bf16), without sparsity, as the vendor's data sheet states it: the denominator of MFU."""

    name: str
    match: tuple[str, ...]  # words that all appear in the driver's name ("NVIDIA H100 80GB HBM3")
    peak_tflops: float
    bf16: bool = True


# Most specific first: "H100 PCIe" before "H100", "L40S" before "L40" before "L4".
GPU_MODELS: list[GpuModel] = [
    GpuModel("H200", ("h200",), 989),
    GpuModel("H100 PCIe", ("h100", "pcie"), 756),
    GpuModel("H100 NVL", ("h100", "nvl"), 835),
    GpuModel("H100 SXM", ("h100",), 989),
    GpuModel("A100", ("a100",), 312),
    GpuModel("L40S", ("l40s",), 362),
    GpuModel("L40", ("l40",), 181),
    GpuModel("L4", ("l4",), 121),
    GpuModel("A10G", ("a10g",), 125),
    GpuModel("RTX 4090", ("4090",), 165),
    GpuModel("RTX 3090", ("3090",), 71),
    GpuModel("V100", ("v100",), 125, bf16=False),
    GpuModel("T4", ("t4",), 65, bf16=False),
]


def gpu_model(name: Optional[str]) -> Optional[GpuModel]:
    """The GpuModel a driver's or a person's GPU name means ("NVIDIA A100-SXM4-80GB", "Tesla T4", "h100");
    None when it is not one we know the peak of."""
    if not name:
        return None
    words = set(str(name).lower().replace("-", " ").replace("_", " ").split())
    for model in GPU_MODELS:
        if all(word in words for word in model.match):
            return model
    return None


@dataclass(frozen=True)
class GpuChoice:
    """A GPU size to plan against. `memory_gib` is the marketed size (cards are sized in GiB); `models` the
    GPU_MODELS of that size, whose peaks bound the expected throughput when only the size is known."""

    memory_gib: int
    label: str
    bf16: bool = True
    models: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.memory_gib * GIB

    @property
    def key(self) -> str:
        return f"{self.memory_gib}GB"


GPU_CHOICES: list[GpuChoice] = [
    GpuChoice(16, "16 GB — T4, V100 16GB, RTX 4080/A4000-class", bf16=False, models=("T4", "V100")),
    GpuChoice(24, "24 GB — RTX 3090/4090, A10G, L4", models=("RTX 3090", "L4", "A10G", "RTX 4090")),
    GpuChoice(40, "40 GB — A100 40GB", models=("A100",)),
    GpuChoice(48, "48 GB — RTX A6000, L40S", models=("L40S",)),
    GpuChoice(80, "80 GB — A100 80GB, H100", models=("A100", "H100 SXM")),
    GpuChoice(141, "141 GB — H200", models=("H200",)),
]


def gpu_choice(value: str | int | float) -> Optional[GpuChoice]:
    """A GpuChoice from 24, "24", "24GB" or "24 GB"; None when it is not in the list."""
    text = str(value).strip().upper().replace(" ", "").removesuffix("GB").removesuffix("GIB")
    try:
        size = float(text)
    except ValueError:
        return None
    for choice in GPU_CHOICES:
        if abs(choice.memory_gib - size) < 0.5:
            return choice
    return None
