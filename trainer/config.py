"""TrainConfig: the one schema of every hyperparameter.

Each field is declared once, here, with its type, default, bounds, help text and group. The form,
the presets, the CLI, validation and the trainer all read this module; nothing else lists fields by
hand. Field names follow transformers' ``TrainingArguments`` and LLaMA-Factory where they exist, so
an existing YAML reads as-is.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator

from trainer.config_rules import ALIAS_KEYS, LORA_TARGET_ALL, ConfigRules
from trainer.errors import ConfigError, pydantic_errors
from trainer.textio import parse_yaml, read_text_file, write_text_atomic

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
    ("distributed", "Devices & machines", False),
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
DISTRIBUTED_TYPES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")
_LAUNCH_SKIP = ("LLaMA-Factory takes the launch from its command line (FORCE_TORCHRUN, NNODES, NODE_RANK, "
                "MASTER_ADDR) and a DeepSpeed JSON, not from the training YAML")
TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow", "swanlab")  # trainer/trackers.py knows each
MODEL_HUBS = ("auto", "huggingface", "modelscope")  # trainer/hub.py decides `auto`
DATASET_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text")
PRESET_META_KEY = "preset"  # preset files carry their title and description under this key
_SAME = object()  # lf_default not given: LLaMA-Factory's default is ours


def _field(default: Any, group: str, help: str, *, label: str | None = None, advanced: bool = False,
           sft: str | None = None, sft_via: str | None = None, used_by: tuple[str, ...] = (),
           not_for_trainer: str | None = None, lf: str | None = None, lf_default: Any = _SAME,
           lf_skip: str | None = None, visible_when: dict[str, Any] | None = None, **bounds: Any) -> Any:
    """A schema field: the default, its group, a help text a newcomer understands, and bounds.

    `visible_when` names the fields that decide whether this one matters, {field: value or tuple of
    values}: the form shows the control only while every named field holds one of its values.

    Where the value goes (tests/test_schema_contract.py holds every field to one of these):
    ``sft`` the SFTConfig argument it passes to unchanged (after the plan resolves `auto`), ``sft_via``
    the converter in trainer/engine/sft_args.py that maps it, ``used_by`` the modules or packages that
    read it, ``not_for_trainer`` why the training process ignores it. ``lf`` its LLaMA-Factory key (same
    meaning), ``lf_default`` LLaMA-Factory's default where it differs from ours, ``lf_skip`` why it has no
    LLaMA-Factory equivalent; conversions that are not a rename live in trainer/interop/lf_table.py.
    """
    assert group in GROUP_KEYS, group
    extra: dict[str, Any] = {"group": group, "advanced": advanced}
    if label:
        extra["label"] = label
    if visible_when:
        extra["visible_when"] = {key: list(value) if isinstance(value, tuple) else [value]
                                 for key, value in visible_when.items()}
    extra.update(sft=sft, sft_via=sft_via, used_by=list(used_by), not_for_trainer=not_for_trainer, lf=lf,
                 lf_skip=lf_skip)
    if lf_default is not _SAME:
        extra["lf_default"] = lf_default
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class TrainConfig(ConfigRules):
    """Every hyperparameter of a fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, protected_namespaces=())

    # --- model ---------------------------------------------------------------------------------
    model_name_or_path: str = _field(
        "demo", "model",
        "The base model: `demo` (a tiny model built offline, for trying things out), a local "
        "directory with config.json, or a Hugging Face Hub id such as meta-llama/Llama-3.1-8B.",
        label="Model", min_length=1,
        used_by=("trainer.engine.model",), lf="model_name_or_path")
    template: str = _field(
        "auto", "model",
        "Chat template used to turn conversations into text. `auto` uses the tokenizer's own "
        "template, or a plain fallback when it has none; or name one (chatml, llama3, alpaca, ...).",
        label="Chat template", min_length=1,
        used_by=("trainer.datasets",))
    trust_remote_code: bool = _field(
        False, "model", "Allow the model repository to run its own Python code. Only for models you trust.",
        advanced=True,
        used_by=("trainer.engine.model",), lf="trust_remote_code")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = _field(
        "auto", "model",
        "Attention kernel. `auto` picks FlashAttention when installed on a GPU (3 on a Hopper, then 2, then "
        "the Hub's `kernels` build when cached), else PyTorch SDPA.",
        label="Attention", advanced=True,
        used_by=("trainer.plan",))
    model_hub: Literal[MODEL_HUBS] = _field(  # type: ignore[valid-type]
        "auto", "model",
        "Where Hub ids of models and datasets are downloaded from: `huggingface` (or the mirror named by the "
        "HF_ENDPOINT environment variable), `modelscope` (needs the modelscope package), or `auto`: ModelScope "
        "when the environment sets USE_MODELSCOPE_HUB=1, else Hugging Face.",
        label="Model hub", advanced=True,
        used_by=("trainer.engine.model", "trainer.datasets"),
        lf_skip="LLaMA-Factory reads the hub from USE_MODELSCOPE_HUB in the environment")

    # --- method --------------------------------------------------------------------------------
    stage: Literal["sft"] = _field(
        "sft", "method", "Training stage. Supervised fine-tuning on prompt/answer pairs.", advanced=True,
        not_for_trainer="sft is the only stage: the trainer always runs TRL's SFTTrainer")
    finetuning_type: Literal["lora", "full"] = _field(
        "lora", "method",
        "`lora` trains small adapter matrices and keeps the base frozen (with quantization_bit=4 "
        "this is QLoRA); `full` updates every weight and needs several times more memory.",
        label="Fine-tuning method",
        used_by=("trainer.engine.model", "trainer.plan"))
    quantization_bit: Optional[Literal[4, 8]] = _field(
        None, "method",
        "Load the frozen base model in 4 or 8 bits with bitsandbytes (4 = QLoRA). Empty for 16-bit. "
        "Only with LoRA.", label="Quantization bits",
        used_by=("trainer.engine.model", "trainer.plan"))

    # --- data ----------------------------------------------------------------------------------
    dataset: str = _field(
        "demo", "data",
        "Training data: a shipped dataset name (`demo`), a local file (JSON, JSONL, CSV, Parquet), "
        "or a Hugging Face Hub dataset id.", min_length=1,
        used_by=("trainer.datasets",))
    dataset_format: Literal[DATASET_FORMATS] = _field(  # type: ignore[valid-type]
        "auto", "data",
        "How rows are laid out: alpaca (instruction/input/output), sharegpt (conversations), messages "
        "(role/content), prompt_completion, or text for continued pre-training. `auto` detects it.",
        used_by=("trainer.datasets",))
    dataset_split: str = _field("train", "data", "Which split of a Hub dataset to train on.", advanced=True,
                                min_length=1,
                                used_by=("trainer.datasets",))
    dataset_subset: Optional[str] = _field(None, "data", "Subset (configuration) of a Hub dataset, if it has several.",
                                           advanced=True,
                                           used_by=("trainer.datasets",))
    column_mapping: dict[str, str] = _field(
        {}, "data",
        "Rename columns to what the format expects, e.g. {question: instruction, answer: output}.",
        advanced=True,
        used_by=("trainer.datasets",))
    cutoff_len: int = _field(
        1024, "data",
        "Maximum tokens per training row; longer rows are cut. Longer rows need more memory.",
        label="Max length (cutoff_len)", ge=8, le=262144,
        sft="max_length", used_by=("trainer.datasets",), lf="cutoff_len", lf_default=2048)
    max_samples: Optional[int] = _field(
        None, "data", "Use at most this many rows of the dataset (empty: all of them).", ge=1,
        used_by=("trainer.datasets",), lf="max_samples")
    val_size: float = _field(
        0.0, "data",
        "Hold out rows for evaluation: a fraction below 1 (0.1 = 10%), or a row count of 1 or more. "
        "0 disables the validation split.", label="Validation size", ge=0,
        used_by=("trainer.datasets",), lf="val_size")
    train_on_prompt: bool = _field(
        False, "data", "Also compute the loss on the prompt tokens. Off: learn only the answers.", advanced=True,
        used_by=("trainer.datasets",), lf="train_on_prompt")
    skip_invalid_rows: bool = _field(
        False, "data",
        "Train even when some rows are malformed, skipping them (they are counted and reported). "
        "Off: any bad row stops the run before it starts.", advanced=True,
        used_by=("trainer.datasets",),
        lf_skip="LLaMA-Factory has no such switch (it skips unusable rows with a warning)")
    kto_desirable_only: bool = _field(
        False, "data",
        "For KTO data (a true/false label per answer): train on the rows labelled true (desirable) and leave "
        "the others out. Off: KTO data is refused, since SFT would imitate the undesirable answers too.",
        label="KTO data: desirable rows only", advanced=True,
        used_by=("trainer.datasets",),
        lf_skip="LLaMA-Factory trains KTO data with stage kto; it has no switch to keep only the desirable rows")
    packing: Optional[bool] = _field(
        None, "data",
        "Pack several short rows into one sequence so no compute is spent on padding. Empty = auto: "
        "on a GPU whose attention kernel keeps packed rows apart (FlashAttention, SDPA), else off.",
        sft="packing", used_by=("trainer.plan",), lf_default=False)
    group_by_length: Optional[bool] = _field(
        None, "data",
        "Batch rows of similar length together, so less padding is processed. Empty = auto: on when "
        "not packing.",
        sft_via="group_by_length", used_by=("trainer.plan",), lf_default=False)

    # --- batch & steps -------------------------------------------------------------------------
    per_device_train_batch_size: int = _field(
        2, "batch",
        "Micro-batch: rows processed at once on each device. The main knob for memory; aim for about "
        "90% of the GPU.", label="Micro-batch size", ge=1, le=4096,
        sft="per_device_train_batch_size", lf="per_device_train_batch_size", lf_default=8)
    gradient_accumulation_steps: int = _field(
        8, "batch",
        "Micro-batches summed before each optimizer step. Effective batch = micro-batch × "
        "accumulation × devices: a large effective batch on a small card.", label="Gradient accumulation",
        ge=1, le=65536,
        sft="gradient_accumulation_steps", lf="gradient_accumulation_steps", lf_default=1)
    per_device_eval_batch_size: Optional[int] = _field(
        None, "batch", "Rows at once during evaluation (empty: same as the micro-batch).", ge=1, le=4096,
        advanced=True,
        sft_via="eval_batch_size", lf="per_device_eval_batch_size", lf_default=8, visible_when={"eval_strategy": ("steps", "epoch")})
    num_train_epochs: float = _field(
        3.0, "batch", "How many passes over the dataset. Ignored when max_steps is set.", label="Epochs",
        gt=0, le=10000,
        sft="num_train_epochs", lf="num_train_epochs")
    max_steps: int = _field(
        -1, "batch",
        "Stop after this many optimizer steps; overrides the epochs. -1 = train by epochs. With a "
        "fixed max_steps a bigger batch makes the run longer, not shorter.", ge=-1, le=10**9,
        sft="max_steps", lf="max_steps")

    # --- optimizer -----------------------------------------------------------------------------
    learning_rate: float = _field(
        2e-4, "optimizer",
        "Peak learning rate. LoRA usually 1e-4..3e-4, full fine-tuning 1e-5..5e-5. Scale it when you "
        "change the effective batch.", gt=0, le=1,
        sft="learning_rate", lf="learning_rate", lf_default=5e-5)
    lr_scheduler_type: Literal[SCHEDULERS] = _field(  # type: ignore[valid-type]
        "cosine", "optimizer", "How the learning rate changes over the run after warmup.",
        label="LR schedule",
        sft="lr_scheduler_type", lf="lr_scheduler_type", lf_default="linear")
    warmup_ratio: float = _field(
        0.03, "optimizer", "Fraction of the steps spent ramping the learning rate up from 0.", ge=0, le=1,
        sft_via="warmup", lf_default=0.0)
    warmup_steps: int = _field(
        0, "optimizer", "Warmup as a number of steps instead of a ratio (0: use warmup_ratio).", ge=0,
        advanced=True,
        sft_via="warmup")
    weight_decay: float = _field(0.0, "optimizer", "L2-style decay of the trained weights.", ge=0, le=10,
                                 advanced=True,
                                 sft="weight_decay", lf="weight_decay")
    max_grad_norm: float = _field(
        1.0, "optimizer", "Clip the gradient norm to this value (0: no clipping). Tames loss spikes.", ge=0,
        sft="max_grad_norm", lf="max_grad_norm")
    optim: Literal[OPTIMIZERS] = _field(  # type: ignore[valid-type]
        "adamw_torch", "optimizer",
        "Optimizer. adamw_8bit and paged_adamw_8bit keep the optimizer state in 8 bits (bitsandbytes) "
        "and save memory; paged moves it to RAM under pressure.", label="Optimizer",
        sft_via="optim", lf="optim")
    seed: int = _field(42, "optimizer", "Random seed for initialisation, shuffling and the validation split.",
                       ge=0, le=2**32 - 1, advanced=True,  # numpy's seeds are 32-bit
                       sft_via="seed", used_by=("trainer.datasets",), lf="seed")
    neftune_noise_alpha: Optional[float] = _field(
        None, "optimizer",
        "NEFTune: add random noise to the embeddings while training, scaled by alpha / sqrt(length × width); "
        "often makes chat answers better. 5 to 15 is typical. Empty: off.", label="NEFTune noise alpha",
        advanced=True, gt=0, le=100, allow_inf_nan=False,
        sft="neftune_noise_alpha", lf="neftune_noise_alpha")

    # --- LoRA ----------------------------------------------------------------------------------
    lora_rank: int = _field(16, "lora", "LoRA rank r: size of the adapter matrices. 16-32 is typical.",
                            label="LoRA rank", ge=1, le=4096,
                            used_by=("trainer.engine.model",), lf="lora_rank", lf_default=8, visible_when={"finetuning_type": "lora"})
    lora_alpha: int = _field(
        32, "lora", "LoRA scaling: updates are scaled by alpha / r (or alpha / sqrt(r) with rsLoRA).",
        label="LoRA alpha", ge=1, le=16384,
        used_by=("trainer.engine.model",), lf="lora_alpha", lf_default=16, visible_when={"finetuning_type": "lora"})
    lora_dropout: float = _field(0.05, "lora", "Dropout on the LoRA input, a mild regulariser.", ge=0, lt=1,
                                 used_by=("trainer.engine.model",), lf="lora_dropout", lf_default=0.0, visible_when={"finetuning_type": "lora"})
    lora_target: Union[str, list[str]] = _field(
        LORA_TARGET_ALL, "lora",
        "Which layers get adapters: `all-linear` (attention and MLP projections), or names such as "
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.",
        used_by=("trainer.engine.model",), visible_when={"finetuning_type": "lora"})
    lora_bias: Literal["none", "all", "lora_only"] = _field(
        "none", "lora", "Train bias terms too. `none` is the usual choice.", advanced=True,
        used_by=("trainer.engine.model",), lf_skip="LLaMA-Factory trains no LoRA bias", visible_when={"finetuning_type": "lora"})
    use_rslora: bool = _field(False, "lora", "Rank-stabilised LoRA: scale by alpha / sqrt(r); helps at high ranks.",
                              advanced=True,
                              used_by=("trainer.engine.model",), lf="use_rslora", visible_when={"finetuning_type": "lora"})
    use_dora: bool = _field(False, "lora", "DoRA: weight-decomposed LoRA. Slightly better, slower.", advanced=True,
                            used_by=("trainer.engine.model",), lf="use_dora", visible_when={"finetuning_type": "lora"})

    # --- memory --------------------------------------------------------------------------------
    quantization_type: Literal["nf4", "fp4"] = _field(
        "nf4", "memory", "4-bit data type. NF4 is the QLoRA paper's choice.", advanced=True,
        used_by=("trainer.engine.model",), lf="quantization_type", visible_when={"quantization_bit": 4})
    double_quantization: bool = _field(
        True, "memory", "Quantize the 4-bit quantisation constants too (saves ~0.4 bit per weight).",
        advanced=True,
        used_by=("trainer.engine.model",), lf="double_quantization", visible_when={"quantization_bit": 4})
    gradient_checkpointing: bool = _field(
        True, "memory", "Recompute activations in the backward pass: much less memory, ~30% slower.",
        sft_via="checkpointing", used_by=("trainer.engine.model",))
    offload_activations: bool = _field(
        False, "memory", "Move saved activations to CPU RAM during the forward pass. For long sequences.",
        sft_via="offload")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _field(
        "auto", "memory", "Compute precision. `auto`: bf16 where the GPU supports it, else fp16 on a GPU, "
        "fp32 on a CPU.", label="Precision",
        sft_via="precision", used_by=("trainer.plan",), lf_default="fp32")
    use_liger_kernel: Optional[bool] = _field(
        None, "memory", "Fused Liger kernels (less memory, faster). Empty = auto: on when installed on a GPU.",
        advanced=True,
        sft="use_liger_kernel", used_by=("trainer.plan",), lf="enable_liger_kernel", lf_default=False)
    oom_recovery: bool = _field(
        False, "memory",
        "If the run runs out of GPU memory, restart it automatically from its last checkpoint with half the "
        "micro-batch and twice the gradient accumulation, so the effective batch stays the same. Repeats "
        "until the micro-batch is 1.", label="Recover from out-of-memory",
        not_for_trainer="the job scheduler reads it to restart a run that ran out of memory; the training "
                        "process does not", lf_skip="LLaMA-Factory does not restart runs")

    # --- evaluation & checkpoints ---------------------------------------------------------------
    eval_strategy: Literal["no", "steps", "epoch"] = _field(
        "no", "eval", "When to compute the loss on the validation split. Needs val_size > 0.",
        sft_via="evaluation", lf="eval_strategy")
    eval_steps: int = _field(50, "eval", "Evaluate every N steps (eval_strategy = steps).", ge=1,
                             sft_via="evaluation", lf="eval_steps", visible_when={"eval_strategy": "steps"})
    save_strategy: Literal["no", "steps", "epoch"] = _field(
        "steps", "eval", "When to save a checkpoint you can resume from.",
        sft_via="saving", lf="save_strategy")
    save_steps: int = _field(100, "eval", "Save every N steps (save_strategy = steps).", ge=1,
                             sft_via="saving", lf="save_steps", lf_default=500, visible_when={"save_strategy": "steps"})
    save_total_limit: Optional[int] = _field(
        3, "eval", "Keep only the newest N checkpoints (empty: keep all).", ge=1,
        sft="save_total_limit", lf="save_total_limit", lf_default=None, visible_when={"save_strategy": ("steps", "epoch")})
    load_best_model_at_end: bool = _field(
        False, "eval", "At the end, keep the checkpoint with the lowest eval loss rather than the last one.",
        sft="load_best_model_at_end", lf="load_best_model_at_end", visible_when={"eval_strategy": ("steps", "epoch")})
    early_stopping_patience: Optional[int] = _field(
        None, "eval", "Stop after this many evaluations without improvement of the eval loss (empty: never).",
        ge=1,
        used_by=("trainer.engine.train",), lf_skip="LLaMA-Factory has no early stopping", visible_when={"eval_strategy": ("steps", "epoch")})
    early_stopping_threshold: float = _field(
        0.0, "eval", "How much the eval loss must improve to count as an improvement.", ge=0, advanced=True,
        used_by=("trainer.engine.train",), lf_skip="LLaMA-Factory has no early stopping", visible_when={"eval_strategy": ("steps", "epoch")})
    resume_from_checkpoint: Optional[str] = _field(
        None, "eval", "Continue from a checkpoint: `last` (the newest in this run's directory) or a path.",
        advanced=True,
        used_by=("trainer.engine.train",))

    # --- logging -------------------------------------------------------------------------------
    run_name: Optional[str] = _field(None, "logging", "A name for the run in the runs list.", max_length=200,
                                     sft="run_name", lf="run_name")
    logging_steps: int = _field(1, "logging", "Log loss and learning rate every N steps.", ge=1,
                                sft="logging_steps", lf="logging_steps", lf_default=500)
    report_to: list[Literal[TRACKERS]] = _field(  # type: ignore[valid-type]
        ["tensorboard"], "logging",
        "Experiment trackers that also receive the run's metrics, beside the dashboard's own charts: "
        "tensorboard (files in the run directory), trackio (local-first, a dashboard on your machine or a "
        "Space; recommended for teams), wandb, mlflow, swanlab. Each but TensorBoard is an optional extra "
        "(pip install 'tunedeck[trackio]'); credentials come from the environment only (WANDB_API_KEY, ...).",
        label="Report to", sft_via="trackers", lf="report_to", lf_default=[])
    tracker_project: Optional[str] = _field(
        None, "logging",
        "The project the run is filed under in every tracker (a Trackio project, W&B project, MLflow "
        "experiment, SwanLab project). Empty: `tunedeck`.", max_length=200,
        sft_via="trackers", lf_skip="LLaMA-Factory takes the project from each tracker's environment variable")
    tracker_tags: list[str] = _field(
        [], "logging", "Tags for the run in W&B, MLflow and SwanLab, comma separated.", advanced=True,
        used_by=("trainer.trackers",), lf_skip="LLaMA-Factory takes tags from each tracker's environment variable")
    trackio_space_id: Optional[str] = _field(
        None, "logging",
        "A Hugging Face Space (user/space) that hosts the Trackio dashboard for the team; empty keeps it "
        "on this machine. Needs HF_TOKEN with write access in the environment.", max_length=200, advanced=True,
        sft="trackio_space_id", lf_skip="LLaMA-Factory has no Trackio Space setting")

    @field_validator("report_to", "tracker_tags", mode="before")
    @classmethod
    def _comma_list(cls, value: Any, info: Any) -> Any:
        """`a, b` (the form's text) is [a, b]; `none`/empty: none; names in any case, `;`/space too; each once."""
        names, value = info.field_name == "report_to", "" if value is None else value
        if isinstance(value, str):
            value = value.replace(";", ",").replace(" ", ",").split(",") if names else value.split(",")
        if isinstance(value, list):
            value = [(p.strip().lower() if names else p.strip()) if isinstance(p, str) else p for p in value]
            return [p for i, p in enumerate(value) if p not in value[:i] and p not in ("", "none", "None")]
        return value

    # --- devices & machines ------------------------------------------------------------------------
    num_processes: Optional[int] = _field(
        1, "distributed",
        "Devices of this machine to train on, one process each (launched through accelerate). 1 trains in "
        "one process as usual. Empty or `auto` = every visible GPU. On a machine without GPUs, 2 or more "
        "runs that many CPU processes (gloo), for testing.", label="Devices (processes)", ge=1, le=1024,
        used_by=("trainer.engine.distributed",), lf_skip=_LAUNCH_SKIP)
    gpu_ids: Optional[str] = _field(
        None, "distributed",
        "Which GPUs of this machine to use, e.g. `0,1` (their numbers as nvidia-smi lists them). Empty: the "
        "scheduler picks free ones. Give as many as the devices above.", label="GPU ids",
        used_by=("trainer.engine.distributed",), lf_skip=_LAUNCH_SKIP)
    distributed_type: Literal[DISTRIBUTED_TYPES] = _field(  # type: ignore[valid-type]
        "ddp", "distributed",
        "How several devices share the work. ddp: each holds the whole model (fastest, if it fits one "
        "device). fsdp: weights, gradients and optimizer state are sharded over the devices. "
        "deepspeed_zero2: gradients and optimizer state sharded. deepspeed_zero3: everything sharded "
        "(the largest models). DeepSpeed needs `pip install deepspeed`.", label="Distribution",
        used_by=("trainer.engine.distributed", "trainer.plan"), lf_skip=_LAUNCH_SKIP)
    offload_optimizer: bool = _field(
        False, "distributed",
        "Keep the optimizer state in CPU RAM instead of on the GPUs (ZeRO/FSDP offload): much less GPU "
        "memory, slower steps. FSDP offloads weights and optimizer state together.", advanced=True,
        used_by=("trainer.engine.distributed", "trainer.plan"), lf_skip=_LAUNCH_SKIP,
        visible_when={"distributed_type": ("fsdp", "deepspeed_zero2", "deepspeed_zero3")})
    offload_params: bool = _field(
        False, "distributed",
        "Keep the sharded weights in CPU RAM too, fetched for each layer (ZeRO-3/FSDP): the least GPU "
        "memory, the slowest steps.", advanced=True,
        used_by=("trainer.engine.distributed", "trainer.plan"), lf_skip=_LAUNCH_SKIP,
        visible_when={"distributed_type": ("fsdp", "deepspeed_zero3")})
    num_machines: int = _field(
        1, "distributed",
        "Machines that train this run together. Above 1, start the printed command on every machine "
        "(python -m trainer launch-commands CONFIG.yaml), with the run directory on storage they share.",
        label="Machines", ge=1, le=4096,
        used_by=("trainer.engine.distributed", "trainer.plan"), lf_skip=_LAUNCH_SKIP)
    machine_rank: int = _field(
        0, "distributed", "This machine's number among the machines: 0 is the main one, which writes the run.",
        advanced=True, ge=0,
        used_by=("trainer.engine.distributed",), lf_skip=_LAUNCH_SKIP)
    main_process_ip: Optional[str] = _field(
        None, "distributed", "Address of machine 0, which every machine can reach (needed with several machines).",
        advanced=True, max_length=255,
        used_by=("trainer.engine.distributed",), lf_skip=_LAUNCH_SKIP)
    main_process_port: int = _field(
        29500, "distributed", "A free TCP port on machine 0 for the processes to meet.", advanced=True,
        ge=1, le=65535,
        used_by=("trainer.engine.distributed",), lf_skip=_LAUNCH_SKIP)

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
        known = set(cls.model_fields) | ALIAS_KEYS
        for key in data:
            if not isinstance(key, str) or key not in known:
                errors.append((str(key), _unknown_key_message(str(key))))
        if errors:
            raise ConfigError(errors, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(pydantic_errors(exc), source) from None

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


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}'{hint}"


def load_config(source: Union[str, Path, dict[str, Any], TrainConfig]) -> TrainConfig:
    """A TrainConfig from a path, a dict or a TrainConfig."""
    if isinstance(source, TrainConfig):
        return source
    if isinstance(source, dict):
        return TrainConfig.from_dict(source)
    return TrainConfig.from_yaml(source)
