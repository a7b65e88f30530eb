"""TrainConfig's rules: the spellings it accepts and the checks of one field or of several together.

ConfigRules is TrainConfig's base class (trainer/config.py declares the fields): one named method per
rule, each raising a message that names the field and the fix; the cross-field checks report every
problem at once (CombinationError).
"""

from __future__ import annotations

import math
import typing
from typing import Any, Optional

from pydantic import BaseModel, ValidationInfo, field_validator, model_validator

from trainer.errors import CombinationError
from trainer.secret_shapes import secret_refusal
from trainer.templates import template_names, unknown_template_message

LORA_TARGET_ALL = "all-linear"
_NUMBER_TYPES = (int, float, Optional[int], Optional[float])
_INTEGER_TYPES = (int, Optional[int])
ALIAS_KEYS = {"bf16", "fp16", "evaluation_strategy"}  # accepted spellings that are not fields


def _optional_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Fields that take None (empty): there the texts "", "none" and "None" mean None too."""
    return tuple(name for name, info in model.model_fields.items() if type(None) in typing.get_args(info.annotation))


class ConfigRules(BaseModel):
    """The validation of TrainConfig, apart from its field declarations."""

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
        for key in _optional_fields(cls):
            if data.get(key) in ("", "none", "None"):
                data[key] = None
        if data.get("max_steps") is None and "max_steps" in data:
            data["max_steps"] = -1
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_switches(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false is not a number: `learning_rate: true` must not train at 1.0."""
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation in _NUMBER_TYPES:
            raise ValueError("expects a number, not true/false")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers_only(cls, value: Any, info: ValidationInfo) -> Any:
        """A count (lora_rank, cutoff_len, steps, batch sizes) is a whole number: `lora_rank: 1.5` is refused
        with the field named, never rounded to 2 behind the user's back. 2.0 and "2" mean 2."""
        if cls.model_fields[info.field_name].annotation not in _INTEGER_TYPES or isinstance(value, (bool, int)):
            return value
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value  # not a number at all: pydantic's own message says so
        if isinstance(number, float):
            if not math.isfinite(number):
                raise ValueError("expects a whole number")
            if not number.is_integer():
                raise ValueError(f"expects a whole number; it is not rounded: type "
                                 f"{math.floor(number)} or {math.ceil(number)}")
            return int(number)
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_secrets(cls, value: Any) -> Any:
        """A token typed into any text field would be written to every file and page of the run: refuse it."""
        texts = (list(value.keys()) + list(value.values()) if isinstance(value, dict)
                 else value if isinstance(value, (list, tuple)) else [value])
        for text in texts:
            message = secret_refusal(text)
            if message:
                raise ValueError(message)
        return value

    @field_validator("lora_target", mode="before", check_fields=False)
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

    @field_validator("template", check_fields=False)
    @classmethod
    def _template(cls, value: str) -> str:
        value = value.strip()
        if value not in template_names():
            raise ValueError(unknown_template_message(value))
        return value

    @field_validator("val_size", check_fields=False)
    @classmethod
    def _val_size(cls, value: float) -> float:
        if value >= 1 and not float(value).is_integer():
            raise ValueError("a validation size of 1 or more is a row count and must be a whole number")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("max_steps", check_fields=False)
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 steps would train nothing: use -1 to train by epochs, or a positive number")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> Any:
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
            raise CombinationError(problems)
        return self
