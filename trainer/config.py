"""TrainConfig: the one schema of every hyperparameter.

Each field is declared once, here, with its type, default, bounds, help text and group. The form,
the presets, the CLI, validation and the trainer all read this module; nothing else lists fields by
hand. Field names follow transformers' ``TrainingArguments`` and LLaMA-Factory where they exist, so
an existing YAML reads as-is.
"""

from __future__ import annotations

import difflib
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Groups, in the order the form shows them. (key, title, open by default)
GROUPS: list[tuple[str, str, bool]] = [
    ("model", "Model", True),
    ("method", "Method", True),
    ("data", "Data", True),
    ("batch", "Batch & steps", True),
    ("optimizer", "Optimizer & schedule", True),
    ("lora", "LoRA", True),
    ("memory", "Quantization & memory", False),
    ("eval", "Evaluation & checkpoints", False),
    ("logging", "Logging", False),
]
GROUP_KEYS = [g[0] for g in GROUPS]

OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
)
SCHEDULERS = (
    "cosine",
    "linear",
    "constant",
    "constant_with_warmup",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
    "cosine_with_min_lr",
)
DATASET_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text")
LORA_TARGET_ALL = "all-linear"
PRESET_META_KEY = "preset"  # preset files carry their title and description under this key


def _field(default: Any, group: str, help: str, *, label: str | None = None, advanced: bool = False,
           visible_when: dict[str, Any] | None = None, **bounds: Any) -> Any:
    """A schema field: the default, its group, a help text a newcomer understands, and bounds.

    `visible_when` names the fields that decide whether this one matters, {field: value or tuple of
    values}: the form shows the control only while every named field holds one of its values.
    """
    assert group in GROUP_KEYS, group
    extra: dict[str, Any] = {"group": group, "advanced": advanced}
    if label:
        extra["label"] = label
    if visible_when:
        extra["visible_when"] = {key: list(value) if isinstance(value, tuple) else [value]
                                 for key, value in visible_when.items()}
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class ConfigError(ValueError):
    """A config that cannot be used. ``errors`` is a list of (field, message), field "" for the whole."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None):
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{field}: {msg}" if field else f"{prefix}{msg}" for field, msg in errors]
        super().__init__("\n".join(lines))

    def by_field(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for field, msg in self.errors:
            out[field] = f"{out[field]}; {msg}" if field in out else msg
        return out


class TrainConfig(BaseModel):
    """Every hyperparameter of a fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, protected_namespaces=())

    # --- model ---------------------------------------------------------------------------------
    model_name_or_path: str = _field(
        "demo", "model",
        "The base model: `demo` (a tiny model built offline, for trying things out), a local "
        "directory with config.json, or a Hugging Face Hub id such as meta-llama/Llama-3.1-8B.",
        label="Model", min_length=1)
    template: str = _field(
        "auto", "model",
        "Chat template used to turn conversations into text. `auto` uses the tokenizer's own "
        "template, or a plain fallback when it has none; or name one (chatml, llama3, alpaca, ...).",
        label="Chat template", min_length=1)
    trust_remote_code: bool = _field(
        False, "model", "Allow the model repository to run its own Python code. Only for models you trust.",
        advanced=True)
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = _field(
        "auto", "model",
        "Attention kernel. `auto` picks FlashAttention when installed on a GPU, else PyTorch SDPA.",
        label="Attention", advanced=True)

    # --- method --------------------------------------------------------------------------------
    stage: Literal["sft"] = _field(
        "sft", "method", "Training stage. Supervised fine-tuning on prompt/answer pairs.", advanced=True)
    finetuning_type: Literal["lora", "full"] = _field(
        "lora", "method",
        "`lora` trains small adapter matrices and keeps the base frozen (with quantization_bit=4 "
        "this is QLoRA); `full` updates every weight and needs several times more memory.",
        label="Fine-tuning method")
    quantization_bit: Optional[Literal[4, 8]] = _field(
        None, "method",
        "Load the frozen base model in 4 or 8 bits with bitsandbytes (4 = QLoRA). Empty for 16-bit. "
        "Only with LoRA.", label="Quantization bits")

    # --- data ----------------------------------------------------------------------------------
    dataset: str = _field(
        "demo", "data",
        "Training data: a shipped dataset name (`demo`), a local file (JSON, JSONL, CSV, Parquet), "
        "or a Hugging Face Hub dataset id.", min_length=1)
    dataset_format: Literal[DATASET_FORMATS] = _field(  # type: ignore[valid-type]
        "auto", "data",
        "How rows are laid out: alpaca (instruction/input/output), sharegpt (conversations), messages "
        "(role/content), prompt_completion, or text for continued pre-training. `auto` detects it.")
    dataset_split: str = _field("train", "data", "Which split of a Hub dataset to train on.", advanced=True,
                                min_length=1)
    dataset_subset: Optional[str] = _field(None, "data", "Subset (configuration) of a Hub dataset, if it has several.",
                                           advanced=True)
    column_mapping: dict[str, str] = _field(
        {}, "data",
        "Rename columns to what the format expects, e.g. {question: instruction, answer: output}.",
        advanced=True)
    cutoff_len: int = _field(
        1024, "data",
        "Maximum tokens per training row; longer rows are cut. Longer rows need more memory.",
        label="Max length (cutoff_len)", ge=8, le=262144)
    max_samples: Optional[int] = _field(
        None, "data", "Use at most this many rows of the dataset (empty: all of them).", ge=1)
    val_size: float = _field(
        0.0, "data",
        "Hold out rows for evaluation: a fraction below 1 (0.1 = 10%), or a row count of 1 or more. "
        "0 disables the validation split.", label="Validation size", ge=0)
    train_on_prompt: bool = _field(
        False, "data", "Also compute the loss on the prompt tokens. Off: learn only the answers.", advanced=True)
    skip_invalid_rows: bool = _field(
        False, "data",
        "Train even when some rows are malformed, skipping them (they are counted and reported). "
        "Off: any bad row stops the run before it starts.", advanced=True)
    packing: Optional[bool] = _field(
        None, "data",
        "Pack several short rows into one sequence so no compute is spent on padding. Empty = auto: "
        "on where the attention kernel keeps packed rows apart, else off.")
    group_by_length: Optional[bool] = _field(
        None, "data",
        "Batch rows of similar length together, so less padding is processed. Empty = auto: on when "
        "not packing.")

    # --- batch & steps -------------------------------------------------------------------------
    per_device_train_batch_size: int = _field(
        2, "batch",
        "Micro-batch: rows processed at once on each device. The main knob for memory; aim for about "
        "90% of the GPU.", label="Micro-batch size", ge=1, le=4096)
    gradient_accumulation_steps: int = _field(
        8, "batch",
        "Micro-batches summed before each optimizer step. Effective batch = micro-batch × "
        "accumulation × devices: a large effective batch on a small card.", label="Gradient accumulation",
        ge=1, le=65536)
    per_device_eval_batch_size: Optional[int] = _field(
        None, "batch", "Rows at once during evaluation (empty: same as the micro-batch).", ge=1, le=4096,
        advanced=True, visible_when={"eval_strategy": ("steps", "epoch")})
    num_train_epochs: float = _field(
        3.0, "batch", "How many passes over the dataset. Ignored when max_steps is set.", label="Epochs",
        gt=0, le=10000)
    max_steps: int = _field(
        -1, "batch",
        "Stop after this many optimizer steps; overrides the epochs. -1 = train by epochs. With a "
        "fixed max_steps a bigger batch makes the run longer, not shorter.", ge=-1)

    # --- optimizer -----------------------------------------------------------------------------
    learning_rate: float = _field(
        2e-4, "optimizer",
        "Peak learning rate. LoRA usually 1e-4..3e-4, full fine-tuning 1e-5..5e-5. Scale it when you "
        "change the effective batch.", gt=0, le=1)
    lr_scheduler_type: Literal[SCHEDULERS] = _field(  # type: ignore[valid-type]
        "cosine", "optimizer", "How the learning rate changes over the run after warmup.",
        label="LR schedule")
    warmup_ratio: float = _field(
        0.03, "optimizer", "Fraction of the steps spent ramping the learning rate up from 0.", ge=0, le=1)
    warmup_steps: int = _field(
        0, "optimizer", "Warmup as a number of steps instead of a ratio (0: use warmup_ratio).", ge=0,
        advanced=True)
    weight_decay: float = _field(0.0, "optimizer", "L2-style decay of the trained weights.", ge=0, le=10,
                                 advanced=True)
    max_grad_norm: float = _field(
        1.0, "optimizer", "Clip the gradient norm to this value (0: no clipping). Tames loss spikes.", ge=0)
    optim: Literal[OPTIMIZERS] = _field(  # type: ignore[valid-type]
        "adamw_torch", "optimizer",
        "Optimizer. adamw_8bit and paged_adamw_8bit keep the optimizer state in 8 bits (bitsandbytes) "
        "and save memory; paged moves it to RAM under pressure.", label="Optimizer")
    seed: int = _field(42, "optimizer", "Random seed for initialisation, shuffling and the validation split.",
                       ge=0, advanced=True)

    # --- LoRA ----------------------------------------------------------------------------------
    lora_rank: int = _field(16, "lora", "LoRA rank r: size of the adapter matrices. 16-32 is typical.",
                            label="LoRA rank", ge=1, le=4096, visible_when={"finetuning_type": "lora"})
    lora_alpha: int = _field(
        32, "lora", "LoRA scaling: updates are scaled by alpha / r (or alpha / sqrt(r) with rsLoRA).",
        label="LoRA alpha", ge=1, le=16384, visible_when={"finetuning_type": "lora"})
    lora_dropout: float = _field(0.05, "lora", "Dropout on the LoRA input, a mild regulariser.", ge=0, lt=1,
                                 visible_when={"finetuning_type": "lora"})
    lora_target: Union[str, list[str]] = _field(
        LORA_TARGET_ALL, "lora",
        "Which layers get adapters: `all-linear` (attention and MLP projections), or names such as "
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.", visible_when={"finetuning_type": "lora"})
    lora_bias: Literal["none", "all", "lora_only"] = _field(
        "none", "lora", "Train bias terms too. `none` is the usual choice.", advanced=True,
        visible_when={"finetuning_type": "lora"})
    use_rslora: bool = _field(False, "lora", "Rank-stabilised LoRA: scale by alpha / sqrt(r); helps at high ranks.",
                              advanced=True, visible_when={"finetuning_type": "lora"})
    use_dora: bool = _field(False, "lora", "DoRA: weight-decomposed LoRA. Slightly better, slower.", advanced=True,
                            visible_when={"finetuning_type": "lora"})

    # --- memory --------------------------------------------------------------------------------
    quantization_type: Literal["nf4", "fp4"] = _field(
        "nf4", "memory", "4-bit data type. NF4 is the QLoRA paper's choice.", advanced=True,
        visible_when={"quantization_bit": 4})
    double_quantization: bool = _field(
        True, "memory", "Quantize the 4-bit quantisation constants too (saves ~0.4 bit per weight).",
        advanced=True, visible_when={"quantization_bit": 4})
    gradient_checkpointing: bool = _field(
        True, "memory", "Recompute activations in the backward pass: much less memory, ~30% slower.")
    offload_activations: bool = _field(
        False, "memory", "Move saved activations to CPU RAM during the forward pass. For long sequences.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _field(
        "auto", "memory", "Compute precision. `auto`: bf16 where the GPU supports it, else fp16 on a GPU, "
        "fp32 on a CPU.", label="Precision")
    use_liger_kernel: Optional[bool] = _field(
        None, "memory", "Fused Liger kernels (less memory, faster). Empty = auto: on when installed on a GPU.",
        advanced=True)
    oom_recovery: bool = _field(
        False, "memory",
        "If the run runs out of GPU memory, restart it automatically from its last checkpoint with half the "
        "micro-batch and twice the gradient accumulation, so the effective batch stays the same. Repeats "
        "until the micro-batch is 1.", label="Recover from out-of-memory")

    # --- evaluation & checkpoints ---------------------------------------------------------------
    eval_strategy: Literal["no", "steps", "epoch"] = _field(
        "no", "eval", "When to compute the loss on the validation split. Needs val_size > 0.")
    eval_steps: int = _field(50, "eval", "Evaluate every N steps (eval_strategy = steps).", ge=1,
                             visible_when={"eval_strategy": "steps"})
    save_strategy: Literal["no", "steps", "epoch"] = _field(
        "steps", "eval", "When to save a checkpoint you can resume from.")
    save_steps: int = _field(100, "eval", "Save every N steps (save_strategy = steps).", ge=1,
                             visible_when={"save_strategy": "steps"})
    save_total_limit: Optional[int] = _field(
        3, "eval", "Keep only the newest N checkpoints (empty: keep all).", ge=1,
        visible_when={"save_strategy": ("steps", "epoch")})
    load_best_model_at_end: bool = _field(
        False, "eval", "At the end, keep the checkpoint with the lowest eval loss rather than the last one.",
        visible_when={"eval_strategy": ("steps", "epoch")})
    early_stopping_patience: Optional[int] = _field(
        None, "eval", "Stop after this many evaluations without improvement of the eval loss (empty: never).",
        ge=1, visible_when={"eval_strategy": ("steps", "epoch")})
    early_stopping_threshold: float = _field(
        0.0, "eval", "How much the eval loss must improve to count as an improvement.", ge=0, advanced=True,
        visible_when={"eval_strategy": ("steps", "epoch")})
    resume_from_checkpoint: Optional[str] = _field(
        None, "eval", "Continue from a checkpoint: `last` (the newest in this run's directory) or a path.",
        advanced=True)

    # --- logging -------------------------------------------------------------------------------
    run_name: Optional[str] = _field(None, "logging", "A name for the run in the runs list.", max_length=200)
    logging_steps: int = _field(1, "logging", "Log loss and learning rate every N steps.", ge=1)

    # ---------------------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        """Accept the spellings of LLaMA-Factory and TrainingArguments that map onto one field here."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        bf16, fp16 = data.pop("bf16", None), data.pop("fp16", None)
        if bf16 and fp16:
            raise ValueError("bf16 and fp16 are both true: pick one precision")
        if bf16 or fp16:
            data.setdefault("precision", "bf16" if bf16 else "fp16")
        if "evaluation_strategy" in data:  # the name before transformers 4.41
            data.setdefault("eval_strategy", data.pop("evaluation_strategy"))
        if data.get("finetuning_type") == "qlora":  # what people type for LoRA on a 4-bit base
            data["finetuning_type"] = "lora"
            data.setdefault("quantization_bit", 4)
        for key in ("max_samples", "per_device_eval_batch_size", "save_total_limit", "early_stopping_patience",
                    "quantization_bit", "dataset_subset", "resume_from_checkpoint", "run_name"):
            if data.get(key) in ("", "none", "None"):
                data[key] = None
        if data.get("max_steps") is None and "max_steps" in data:
            data["max_steps"] = -1
        return data

    @field_validator("lora_target", mode="before")
    @classmethod
    def _lora_target(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [n.strip() for n in value.split(",") if n.strip()]
            if not names:
                raise ValueError("name at least one layer, or use all-linear")
            if len(names) == 1 and names[0] in ("all", "all-linear", "all_linear"):
                return LORA_TARGET_ALL
            return names
        if isinstance(value, list):
            names = [str(n).strip() for n in value if str(n).strip()]
            if not names:
                raise ValueError("name at least one layer, or use all-linear")
            return LORA_TARGET_ALL if names in (["all"], ["all-linear"]) else names
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        from trainer.templates import template_names, unknown_template_message

        value = value.strip()
        if value not in template_names():
            raise ValueError(unknown_template_message(value))
        return value

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, value: float) -> float:
        if value >= 1 and not float(value).is_integer():
            raise ValueError("a validation size of 1 or more is a row count and must be a whole number")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 steps would train nothing: use -1 to train by epochs, or a positive number")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> "TrainConfig":
        problems: list[tuple[str, str]] = []
        if self.finetuning_type == "full" and self.quantization_bit is not None:
            problems.append(("quantization_bit", "a quantized base cannot be fully fine-tuned: use "
                             "finetuning_type lora (QLoRA) or leave quantization_bit empty"))
        if self.finetuning_type == "full" and (self.use_dora or self.use_rslora):
            problems.append(("use_dora" if self.use_dora else "use_rslora",
                             "DoRA and rsLoRA are LoRA options; they do nothing with finetuning_type full"))
        if self.use_dora and self.quantization_bit == 8:
            problems.append(("use_dora", "DoRA is not supported on an 8-bit base; use 4-bit or 16-bit"))
        if self.warmup_steps > 0 and self.warmup_ratio > 0:
            problems.append(("warmup_steps", "set warmup_steps or warmup_ratio, not both (set the other to 0)"))
        if self.eval_strategy != "no" and self.val_size == 0:
            problems.append(("eval_strategy", f"eval_strategy is '{self.eval_strategy}' but val_size is 0: "
                             "there is no validation split to evaluate on"))
        if self.load_best_model_at_end:
            if self.eval_strategy == "no":
                problems.append(("load_best_model_at_end", "needs an evaluation: set eval_strategy and val_size"))
            elif self.save_strategy != self.eval_strategy:
                problems.append(("save_strategy", "load_best_model_at_end needs save_strategy equal to "
                                 f"eval_strategy ('{self.eval_strategy}')"))
            elif self.save_strategy == "steps" and self.save_steps % self.eval_steps:
                problems.append(("save_steps", f"load_best_model_at_end needs save_steps ({self.save_steps}) "
                                 f"to be a multiple of eval_steps ({self.eval_steps})"))
        if self.early_stopping_patience is not None and self.eval_strategy == "no":
            problems.append(("early_stopping_patience", "early stopping watches the eval loss: set "
                             "eval_strategy and val_size"))
        if self.packing and self.group_by_length:
            problems.append(("group_by_length", "packed rows all have the same length: turn off packing or "
                             "group_by_length"))
        if problems:
            raise _CombinationError(problems)
        return self

    # --- I/O ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> "TrainConfig":
        """Validate a plain dict; raise ConfigError naming every bad field."""
        if not isinstance(data, dict):
            raise ConfigError([("", f"expected a mapping of field: value, got {type(data).__name__}")], source)
        # A preset file is a config plus one `preset:` mapping of metadata (title, description, ...).
        meta = data.get(PRESET_META_KEY)
        if meta is not None and not isinstance(meta, dict):
            raise ConfigError([(PRESET_META_KEY, "must be a mapping (title: ..., description: ...)")], source)
        data = {k: v for k, v in data.items() if k != PRESET_META_KEY}
        errors: list[tuple[str, str]] = []
        known = set(cls.model_fields) | _ALIAS_KEYS
        for key in data:
            if not isinstance(key, str) or key not in known:
                errors.append((str(key), _unknown_key_message(str(key))))
        if errors:
            raise ConfigError(errors, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_pydantic_errors(exc), source) from None

    @classmethod
    def from_yaml_text(cls, text: str, source: str | None = None) -> "TrainConfig":
        return cls.from_dict(parse_yaml(text, source), source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        return cls.from_yaml_text(read_text_file(path, "YAML file"), str(path))

    def to_dict(self, *, only_changed: bool = False) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if only_changed:
            defaults = TrainConfig().model_dump(mode="json")
            data = {k: v for k, v in data.items() if v != defaults[k]}
        return data

    def to_yaml(self, *, only_changed: bool = False) -> str:
        return yaml.safe_dump(self.to_dict(only_changed=only_changed), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, self.to_yaml())

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some fields changed."""
        data = self.to_dict()
        data.update(changes)
        return TrainConfig.from_dict(data)

    # --- derived, used by several modules ------------------------------------------------------
    @property
    def method_label(self) -> str:
        if self.finetuning_type == "full":
            return "full"
        return {4: "qlora-4bit", 8: "qlora-8bit"}.get(self.quantization_bit, "lora")  # type: ignore[arg-type]

    @property
    def display_name(self) -> str:
        return self.run_name or f"{Path(self.model_name_or_path).name}-{self.method_label}"


class _CombinationError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


_ALIAS_KEYS = {"bf16", "fp16", "evaluation_strategy"}


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}'{hint}"


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _CombinationError):
            errors.extend(inner.problems)
            continue
        loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("literal[", "function-"))]
        # For unions pydantic repeats the error per branch; keep the field name only.
        field = loc[0] if loc else ""
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        got = err.get("input")
        if err.get("type") not in ("missing",) and not isinstance(got, (dict, list)) and field:
            msg = f"{msg} (got {got!r})"
        if (field, msg) not in errors:
            errors.append((field, msg))
    # A union field (e.g. lora_target) reports one error per branch: keep the first per field.
    seen: dict[str, str] = {}
    for field, msg in errors:
        seen.setdefault(field, msg)
    return list(seen.items()) if len(seen) < len(errors) else errors


def parse_yaml(text: str, source: str | None = None) -> Any:
    """YAML text -> Python data, with a message naming the line on a syntax error."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([("", f"{where}invalid YAML ({exc.problem or exc.context})")], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML ({exc})")], source) from None
    return {} if data is None else data


def read_text_file(path: str | Path, what: str = "text file") -> str:
    """A UTF-8 text file's contents (a BOM is dropped), or a ConfigError naming the file and the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([("", "file not found")], str(path)) from None
    except IsADirectoryError:
        raise ConfigError([("", f"is a directory, not a {what}")], str(path)) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    if b"\x00" in raw:
        raise ConfigError([("", f"a binary file, not a {what}")], str(path))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"not UTF-8 text (byte {exc.start})")], str(path)) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new contents, never half of them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_config(source: Union[str, Path, dict[str, Any], TrainConfig]) -> TrainConfig:
    """A TrainConfig from a path, a dict or a TrainConfig."""
    if isinstance(source, TrainConfig):
        return source
    if isinstance(source, dict):
        return TrainConfig.from_dict(source)
    return TrainConfig.from_yaml(source)


# --- the schema, for generated forms and docs ------------------------------------------------------

@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # "bool", "int", "float", "str", "choice", "list", "dict"
    default: Any
    help: str
    group: str
    advanced: bool
    optional: bool  # None is a valid value ("auto" / "empty")
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    visible_when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ((field, allowed values), ...), all must hold

    def shown_with(self, values: dict[str, Any]) -> bool:
        """Whether this field matters given the other fields' values (a field not given counts as holding)."""
        return all(values[name] in allowed for name, allowed in self.visible_when if name in values)


def field_specs() -> list[FieldSpec]:
    """One FieldSpec per TrainConfig field, in declaration order."""
    specs = []
    for name, info in TrainConfig.model_fields.items():
        extra = info.json_schema_extra or {}
        annotation = info.annotation
        optional = False
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is Union and type(None) in args:
            optional = True
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]
        origin = typing.get_origin(annotation)
        choices: tuple[Any, ...] = ()
        if origin is Literal:
            kind, choices = "choice", typing.get_args(annotation)
        elif annotation is bool:
            kind = "bool"
        elif annotation is int:
            kind = "int"
        elif annotation is float:
            kind = "float"
        elif annotation is str:
            kind = "str"
        elif origin is dict:
            kind = "dict"
        else:
            kind = "list"  # str | list[str]
        minimum = maximum = None
        exclusive_min = exclusive_max = False
        for meta in info.metadata:
            for attr, is_max, exclusive in (("ge", False, False), ("gt", False, True), ("le", True, False),
                                             ("lt", True, True)):
                value = getattr(meta, attr, None)
                if value is None:
                    continue
                if is_max:
                    maximum, exclusive_max = value, exclusive
                else:
                    minimum, exclusive_min = value, exclusive
        specs.append(FieldSpec(
            name=name,
            label=str(extra.get("label") or name.replace("_", " ").capitalize()),
            kind=kind,
            default=info.default,
            help=info.description or "",
            group=str(extra["group"]),
            advanced=bool(extra.get("advanced")),
            optional=optional,
            choices=choices,
            minimum=minimum,
            maximum=maximum,
            exclusive_minimum=exclusive_min,
            exclusive_maximum=exclusive_max,
            visible_when=tuple((key, tuple(allowed)) for key, allowed in (extra.get("visible_when") or {}).items()),
        ))
    return specs
