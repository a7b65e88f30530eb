"""TrainConfig's rules: the spellings it accepts and the checks of one field or of several together.

ConfigRules is TrainConfig's base class (trainer/config.py declares the fields): one named method per
rule, each raising a message that names the field and the fix; the cross-field checks report every
problem at once (CombinationError).
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, Optional

from pydantic import BaseModel, ValidationInfo, field_validator, model_validator

from trainer.errors import CombinationError
from trainer.secret_shapes import secret_refusal
from trainer.templates import template_names, unknown_template_message

LORA_TARGET_ALL = "all-linear"
_NUMBER_TYPES = (int, float, Optional[int], Optional[float])
_INTEGER_TYPES = (int, Optional[int])
GPU_ONLY_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")  # bitsandbytes' CUDA kernels
ALIAS_KEYS = {"bf16", "fp16", "evaluation_strategy"}  # accepted spellings that are not fields


def _optional_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Fields that take None (empty): there the texts "", "none" and "None" mean None too."""
    return tuple(name for name, info in model.model_fields.items() if type(None) in typing.get_args(info.annotation))


def parse_switch(value: Any) -> Optional[bool]:
    """A true/false setting as a person writes it in YAML or a form ("false", "no", "off", 0 are off;
    bool("false") would be on); None when the value is no switch at all."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "on", "1", "y", "t"):
            return True
        if word in ("false", "no", "off", "0", "n", "f", ""):
            return False
    return None


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False  # the field's own check names the bad value


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
        for name, value in (("bf16", bf16), ("fp16", fp16)):
            if value is not None and parse_switch(value) is None:
                raise ValueError(f"{name}: expected true or false, got {value!r}")
        bf16, fp16 = parse_switch(bf16), parse_switch(fp16)
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
        if isinstance(data.get("num_processes"), str) and data["num_processes"].strip().lower() == "auto":
            data["num_processes"] = None
        if "warmup_ratio" not in data and _positive(data.get("warmup_steps")):
            data["warmup_ratio"] = 0.0  # warmup given in steps alone: the default ratio gives way
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

    @field_validator("gpu_ids", mode="before", check_fields=False)
    @classmethod
    def _gpu_ids(cls, value: Any) -> Any:
        """`0,1`, `0, 1`, [0, 1] or a single 0 all mean GPUs 0 and 1 / GPU 0: kept as `0,1`."""
        if value is None or isinstance(value, bool):
            return value
        entries = value if isinstance(value, (list, tuple)) else str(value).split(",")
        ids = [str(e).strip() for e in entries if str(e).strip()]
        if not ids:
            return None
        bad = [i for i in ids if not (i.isascii() and i.isdigit())]  # not "²", which int() cannot read
        if bad:
            raise ValueError(f"'{bad[0]}' is not a GPU number: list them as 0,1,...")
        if len(set(ids)) != len(ids):
            raise ValueError("a GPU is listed twice")
        return ",".join(str(int(i)) for i in ids)

    @field_validator("main_process_ip", check_fields=False)
    @classmethod
    def _main_process_ip(cls, value: Optional[str]) -> Optional[str]:
        """A host name or an IP address (v4 or v6) that torchrun can dial: the port has a field of its own."""
        if value is None:
            return value
        value = value.strip()
        if not value:
            return None
        if not re.fullmatch(r"[\w.:-]+", value, re.ASCII):  # what torchrun accepts as a host
            raise ValueError("not a host name or IP address: give only the address of machine 0, "
                             "e.g. 10.0.0.1 or node001 (no scheme, path or spaces)")
        if value.count(":") == 1:
            raise ValueError("the port goes in main_process_port: give only the address here")
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
        problems.extend(self._distributed_problems())
        if problems:
            raise CombinationError(problems)
        return self

    def _distributed_problems(self) -> list[tuple[str, str]]:
        """The launch settings against each other (trainer.engine.distributed checks them against the machine)."""
        problems: list[tuple[str, str]] = []
        if self.gpu_ids and self.num_processes is not None and len(self.gpu_ids.split(",")) != self.num_processes:
            count = len(self.gpu_ids.split(","))
            problems.append(("gpu_ids", f"{count} GPU{'s' if count > 1 else ''} listed ({self.gpu_ids}) for "
                             f"num_processes {self.num_processes}: list one GPU per process, or empty num_processes "
                             "to use every listed GPU"))
        sharded = self.distributed_type in ("fsdp", "deepspeed_zero3")
        if self.offload_params and not sharded:
            problems.append(("offload_params", f"only sharded weights can be offloaded: distributed_type "
                             f"'{self.distributed_type}' keeps whole weights on each device; use deepspeed_zero3 or "
                             "fsdp, or turn offload_params off"))
        if self.offload_optimizer and self.distributed_type == "ddp":
            problems.append(("offload_optimizer", "DDP cannot offload the optimizer: use distributed_type "
                             "deepspeed_zero2, deepspeed_zero3 or fsdp, or turn offload_optimizer off"))
        offloads_optimizer = (self.offload_optimizer and self.distributed_type != "ddp") or \
            (self.offload_params and self.distributed_type == "fsdp")  # FSDP offloads both together
        if offloads_optimizer and self.optim in GPU_ONLY_OPTIMIZERS:
            problems.append(("optim", f"{self.optim} (bitsandbytes) steps on the GPU only, and the offloaded optimizer "
                             "steps on the CPU: use adamw_torch, or turn the offload off"))
        if sharded and self.quantization_bit == 8:
            problems.append(("distributed_type", f"{self.distributed_type} cannot shard 8-bit (LLM.int8) weights: "
                             "use quantization_bit 4 (QLoRA), leave it empty, or use ddp / deepspeed_zero2"))
        if self.num_machines > 1 and not (self.main_process_ip or "").strip():
            problems.append(("main_process_ip", f"num_machines is {self.num_machines}: give the address of machine "
                             "0, which the other machines connect to"))
        if self.machine_rank >= self.num_machines:
            problems.append(("machine_rank", f"machine_rank {self.machine_rank} with num_machines "
                             f"{self.num_machines}: the machines are numbered 0 to {self.num_machines - 1}"))
        return problems
