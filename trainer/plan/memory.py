"""Peak GPU memory of a fine-tuning run, estimated from the model's shape and the run's settings.

Pure Python (no torch), so the plan can show it while a form is edited. Every figure is in bytes; `GB`
below means GiB (2**30 bytes), the unit torch, nvidia-smi and the card's marketed size use ("80 GB" H100 =
80 GiB). Published weight sizes are often in 10**9 bytes: Llama-3.1-8B in NF4 is 5.70e9 bytes = 5.31 GiB.

The model follows what tunedeck's trainer really does (trainer/model.py, TRL's SFTTrainer):
- 4-bit: linear layers in NF4/FP4, blocksize 64, one absmax per block (fp32, or 8-bit + a second-level
  fp32 absmax per 256 blocks with double quantisation); embeddings, lm_head, norms and biases stay
  unquantised and peft's `prepare_model_for_kbit_training` upcasts them to fp32 (so do 8-bit bases).
- LoRA adapters are fp32 (peft's default), their gradients fp32, the optimizer state per trainable
  parameter by optimizer. Full fine-tuning keeps weights, gradients and Adam state in the load dtype.
- Activations: what autograd saves per token per layer, with gradient checkpointing the layer inputs
  plus one layer recomputed; the LM head and loss (TRL computes log-probabilities in tiles, never the
  full logits; a plain script's fp32 logits are counted when fused_lm_head is off); foreach AdamW's
  step temporaries; torch's allocator reserve; the CUDA context, which torch's own counters do not see.
Two activation coefficients and the allocator factors were calibrated on an H100, and checked on
held-out runs (benchmarks/README.md; tests/test_memory.py keeps every stored point within 10%).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence, Union

from trainer.plan.catalog import ModelShape

GB = 1024 ** 3
CUDA_CONTEXT_BYTES = int(0.6 * GB)  # CUDA 13 context on an H100 (measured 0.60 GiB); torch does not count it
# Calibrated on an H100 (benchmarks/results/gpu_llama8b.json, Llama-3.1-8B QLoRA, 9 fixed-shape points, least
# squares):
# autograd keeps less than the op-by-op count (some saved tensors are shared views), checkpoints a little more.
LAYER_ACTIVATION_CALIBRATION = 0.725
CHECKPOINT_CALIBRATION = 1.20
# Both allocator factors were measured with torch's default allocator. The trainer now starts with
# expandable_segments (trainer/jobs/processes.py), which the one point measured so far puts 17% below this
# model for unsorted batches (an overestimate: the safe side); to re-calibrate on a GPU: benchmarks/README.md.
ALLOCATOR_OVERHEAD = 0.06  # torch's reserved / allocated at the peak, fixed-shape batches (measured 1.03-1.065)
UNSORTED_BATCH_OVERHEAD = 0.26  # ... with shuffled varied-length batches (measured 1.26: many block sizes)
QUANTIZED_LOAD_FLOOR = 1.35  # reserved after a bitsandbytes load / weights: holes left by the 16-bit copies
QUANT_BLOCKSIZE = 64  # bitsandbytes' 4-bit blocksize for weights
DOUBLE_QUANT_BLOCKSIZE = 256  # second-level blocks of absmax values with double quantisation
FITS_BELOW = 0.90  # share of the card a run may use and still "fit" (headroom for fragmentation, spikes)

# Bytes of optimizer state per trainable parameter (plus 32-bit state for tiny tensors in 8-bit modes).
OPTIMIZER_STATE_BYTES = {
    "adamw_torch": 8.0,  # exp_avg + exp_avg_sq, in the parameter's dtype (fp32 for LoRA)
    "adamw_torch_fused": 8.0,
    "paged_adamw_32bit": 8.0,
    "adamw_8bit": 2.0,  # blockwise 8-bit states (bitsandbytes), + small per-block fp32 maxima
    "paged_adamw_8bit": 2.0,
    "adafactor": 0.0,  # factored second moment: rows + cols per matrix, counted separately
    "sgd": 0.0,  # transformers' default SGD has no momentum
}
PAGED_OPTIMIZERS = {"paged_adamw_8bit", "paged_adamw_32bit"}


@dataclass(frozen=True)
class MemorySettings:
    """The run settings the memory depends on (resolved: no `auto` left)."""

    micro_batch: int = 1
    seq_len: int = 1024
    finetuning_type: str = "lora"  # lora | full
    quantization_bit: Optional[int] = None  # None, 4 or 8
    double_quantization: bool = True
    precision: str = "bf16"  # bf16 | fp16 | fp32
    lora_rank: int = 16
    lora_target: Union[str, Sequence[str]] = "all-linear"
    lora_dropout: float = 0.05
    use_dora: bool = False
    optim: str = "adamw_torch"
    gradient_checkpointing: bool = True
    offload_activations: bool = False
    use_liger_kernel: bool = False
    attn_implementation: str = "sdpa"  # eager materialises the attention matrix; sdpa/flash do not
    unsorted_varied_batches: bool = False  # plain shuffled batching of varied lengths: fragments the allocator
    kbit_upcast_fp32: bool = True  # peft's prepare_model_for_kbit_training upcasts unquantised weights
    fused_lm_head: bool = True  # TRL's SFTTrainer never builds the full logits; a plain script does
    device: str = "cuda"  # "cpu": the same tensors in RAM, without a CUDA context or torch's GPU allocator
    sharding: str = "ddp"  # ddp | fsdp | deepspeed_zero2 | deepspeed_zero3: what is split over the devices
    devices: int = 1  # processes of the run (on every machine): the shards' count
    offload_optimizer: bool = False
    offload_params: bool = False

    @classmethod
    def from_config(cls, cfg: Any, *, precision: str, attn_implementation: str = "sdpa",
                    use_liger_kernel: bool = False, micro_batch: Optional[int] = None,
                    seq_len: Optional[int] = None, unsorted_varied_batches: bool = False,
                    device: str = "cuda", devices: int = 1) -> "MemorySettings":
        """From a TrainConfig and the plan's resolved choices. seq_len defaults to cutoff_len (worst case)."""
        return cls(
            micro_batch=micro_batch or cfg.per_device_train_batch_size,
            seq_len=seq_len or cfg.cutoff_len,
            finetuning_type=cfg.finetuning_type,
            quantization_bit=cfg.quantization_bit,
            double_quantization=cfg.double_quantization,
            precision=precision,
            lora_rank=cfg.lora_rank,
            lora_target=cfg.lora_target,
            lora_dropout=cfg.lora_dropout,
            use_dora=cfg.use_dora,
            optim=cfg.optim,
            gradient_checkpointing=cfg.gradient_checkpointing,
            offload_activations=cfg.offload_activations,
            use_liger_kernel=use_liger_kernel,
            attn_implementation=attn_implementation,
            unsorted_varied_batches=unsorted_varied_batches,
            device=device,
            sharding=cfg.distributed_type,
            devices=devices,
            offload_optimizer=cfg.offload_optimizer,
            offload_params=cfg.offload_params,
        )

    def with_batch(self, micro_batch: int) -> "MemorySettings":
        return replace(self, micro_batch=micro_batch)


# --- weights -------------------------------------------------------------------------------------

def quantized_bytes(num_params: int, bits: int, *, double_quantization: bool = True,
                    blocksize: int = QUANT_BLOCKSIZE) -> float:
    """Bytes of `num_params` weights stored by bitsandbytes in `bits` bits, quantisation constants included."""
    if bits == 4:
        blocks = num_params / blocksize
        if double_quantization:
            # 8-bit absmax per block + an fp32 absmax (and offset) per 256 blocks
            constants = blocks * 1 + (blocks / DOUBLE_QUANT_BLOCKSIZE) * 4
        else:
            constants = blocks * 4
        return num_params * 0.5 + constants
    if bits == 8:
        return float(num_params)  # LLM.int8: one byte a weight; the per-row fp32 scales are added by the caller
    raise ValueError(f"quantization to {bits} bits is not supported (4 or 8)")


def _dtype_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def base_weight_bytes(shape: ModelShape, settings: MemorySettings, *, upcast: Optional[bool] = None) -> dict[str, float]:
    """Bytes of the frozen (or, for full fine-tuning, trained) base weights, split quantised / not."""
    linear = shape.num_layers * shape.linear_parameters_per_layer()
    other = shape.parameter_count() - linear  # embeddings, lm_head, norms, biases
    load_bytes = _dtype_bytes(settings.precision)
    if settings.finetuning_type == "full" and settings.precision == "fp16":
        load_bytes = 4  # fp32 master weights (trainer/model.py loads full fp16 runs in fp32)
    bits = settings.quantization_bit if settings.finetuning_type == "lora" else None
    if not bits:
        return {"quantized_linear": 0.0, "unquantized": float((linear + other) * load_bytes)}
    quantized = quantized_bytes(linear, bits, double_quantization=settings.double_quantization)
    if bits == 8:
        quantized += 4 * shape.num_layers * sum(n_out for _, _, n_out in shape.linear_modules())
    upcast = settings.kbit_upcast_fp32 if upcast is None else upcast
    return {"quantized_linear": quantized, "unquantized": float(other * (4 if upcast else load_bytes))}


# --- LoRA ----------------------------------------------------------------------------------------

def lora_targets(shape: ModelShape, target: Union[str, Sequence[str]]) -> list[tuple[str, int, int]]:
    """The per-layer linear modules LoRA wraps: all of them for `all-linear`, else those named."""
    modules = shape.linear_modules()
    if isinstance(target, str):
        if target in ("all-linear", "all", "all_linear"):
            return modules
        target = [t.strip() for t in target.split(",") if t.strip()]
    wanted = {t.split(".")[-1] for t in target}
    return [m for m in modules if m[0].split(".")[-1] in wanted]


def lora_parameter_count(shape: ModelShape, rank: int, target: Union[str, Sequence[str]] = "all-linear",
                         *, use_dora: bool = False) -> int:
    """Exact LoRA parameters: per wrapped module r * (in + out) (+ out for DoRA's magnitude), × layers."""
    per_layer = sum(rank * (n_in + n_out) + (n_out if use_dora else 0)
                    for _, n_in, n_out in lora_targets(shape, target))
    return per_layer * shape.num_layers


def _trainable_matrices(shape: ModelShape, settings: MemorySettings) -> list[tuple[int, int, int]]:
    """(count, rows, cols) of the trained matrices, for factored optimizers."""
    if settings.finetuning_type == "full":
        mats = [(shape.num_layers, n_out, n_in) for _, n_in, n_out in shape.linear_modules()]
        mats.append((1 if shape.tie_word_embeddings else 2, shape.vocab_size, shape.hidden_size))
        return mats
    r = settings.lora_rank
    out: list[tuple[int, int, int]] = []
    for _, n_in, n_out in lora_targets(shape, settings.lora_target):
        out += [(shape.num_layers, r, n_in), (shape.num_layers, n_out, r)]
    return out


def optimizer_state_bytes(num_trainable: int, optim: str, *, param_bytes: int = 4,
                          matrices: Sequence[tuple[int, int, int]] = ()) -> float:
    """Optimizer state for `num_trainable` parameters. AdamW keeps 2 states in the parameter's dtype."""
    if optim == "adafactor":
        return float(sum(count * (rows + cols) * 4 for count, rows, cols in matrices))
    if optim in ("adamw_torch", "adamw_torch_fused"):
        return float(num_trainable * 2 * param_bytes)
    if optim not in OPTIMIZER_STATE_BYTES:
        raise ValueError(f"unknown optimizer {optim!r}")
    state = OPTIMIZER_STATE_BYTES[optim]
    if optim.endswith("8bit"):
        state += 2 * 4 / 256  # one fp32 maximum per 256-value block, for each of the two states
    return float(num_trainable * state)


# --- activations ---------------------------------------------------------------------------------

def activation_bytes_per_token_per_layer(shape: ModelShape, settings: MemorySettings) -> float:
    """What autograd keeps per token in one decoder layer without checkpointing.

    Counted from the layer's graph: two RMSNorms saving their fp32 input, the q/k/v/o and MLP
    projections' inputs, attention's q/k/v/out (+ the score matrix for eager attention, added by the
    caller), the gated MLP's three intermediates, and for LoRA with dropout a mask and a dropped copy of
    every wrapped module's input.
    """
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.q_size, shape.kv_size
    cb = 4 if settings.precision == "fp32" else 2  # compute dtype
    # Quantised bases upcast norms (and the residual stream after them) to fp32.
    rb = 4 if (settings.precision == "fp32" or (settings.quantization_bit and settings.kbit_upcast_fp32)) else 2
    norms = 2 * 4 * h  # RMSNorm computes in fp32 and saves its input there
    attention = rb * h + cb * (q + 2 * kv + q) + cb * q  # qkv input, sdpa q/k/v/out, o_proj input
    mlp_inter = (3 if shape.gated_mlp else 2) * i
    mlp = rb * h + cb * mlp_inter + cb * i  # gate/up input, intermediates, down_proj input
    lora = 0.0
    if settings.finetuning_type == "lora" and settings.lora_dropout > 0:
        for _, n_in, _ in lora_targets(shape, settings.lora_target):
            lora += n_in * (1 + rb)  # dropout mask + dropped input copy
    return float(norms + attention + mlp + lora)


def activation_bytes(shape: ModelShape, settings: MemorySettings) -> dict[str, float]:
    """Saved activations for one micro-batch at seq_len, with and without checkpointing/offload.

    Without checkpointing every layer keeps its activations (calibrated per-layer count). With it, each
    layer keeps its input (the residual stream, fp32 on a quantised base) and one layer at a time is
    recomputed in the backward pass; offloading moves the kept inputs to CPU RAM.
    """
    tokens = settings.micro_batch * settings.seq_len
    per_layer_token = LAYER_ACTIVATION_CALIBRATION * activation_bytes_per_token_per_layer(shape, settings)
    rb = 4 if (settings.precision == "fp32" or (settings.quantization_bit and settings.kbit_upcast_fp32)) else 2
    attn_matrix = 0.0
    if settings.attn_implementation == "eager":
        # scores + softmax output per head: b * heads * s * s in the compute dtype and fp32
        attn_matrix = settings.micro_batch * shape.num_attention_heads * settings.seq_len ** 2 * (2 + 4)
    one_layer = tokens * per_layer_token + attn_matrix
    if not settings.gradient_checkpointing:
        return {"saved": float(shape.num_layers * one_layer), "recompute": 0.0}
    kept_layers = 2 if settings.offload_activations else shape.num_layers  # the rest waits in CPU RAM
    checkpoints = CHECKPOINT_CALIBRATION * kept_layers * rb * shape.hidden_size * tokens
    return {"saved": float(checkpoints), "recompute": float(one_layer)}


FUSED_LM_HEAD_TOKEN_TILE = 4096  # TRL's chunked log-prob head: tokens per tile ...
FUSED_LM_HEAD_VOCAB_CHUNK = 32768  # ... and vocabulary columns per tile


def logits_bytes(shape: ModelShape, settings: MemorySettings) -> float:
    """The LM head and the loss over the vocabulary.

    TRL's SFTTrainer (>= 1.x, what tunedeck trains with) computes per-token log-probabilities in tiles of
    4096 tokens × 32768 vocabulary columns, never the full logits: a few fp32 tiles, the weight chunk
    cast to the compute dtype, and the hidden states and their fp32 gradient. Liger's fused linear
    cross-entropy is chunked too. Without either (`fused_lm_head=False`: a plain transformers script),
    the fp32 logits, their log-softmax and the gradient are each tokens × vocabulary × 4 bytes.
    """
    tokens = settings.micro_batch * settings.seq_len
    if settings.fused_lm_head or settings.use_liger_kernel:
        # the hidden states entering the head and their fp32 gradient; the tiles are freed before the
        # backward pass reaches its peak (measured: adding them overshoots every point)
        return float(tokens * shape.hidden_size * (4 + 4))
    return float(3 * tokens * shape.vocab_size * 4)


# --- the estimate --------------------------------------------------------------------------------

@dataclass
class MemoryEstimate:
    """Peak GPU memory, its parts (bytes) and what it means on a card."""

    breakdown: dict[str, float]
    trainable_parameters: int
    total_parameters: int
    settings: MemorySettings
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> float:
        return sum(self.breakdown.values())

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    @property
    def torch_peak_bytes(self) -> float:
        """What torch.cuda.max_memory_reserved() should read: the total less the CUDA context."""
        return self.total_bytes - self.breakdown.get("cuda_context", 0.0)

    def breakdown_gb(self) -> dict[str, float]:
        return {k: round(v / GB, 3) for k, v in self.breakdown.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"total_gb": round(self.total_gb, 2), "breakdown_gb": self.breakdown_gb(),
                "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters,
                "micro_batch": self.settings.micro_batch, "seq_len": self.settings.seq_len, "notes": self.notes}


def estimate_memory(shape: ModelShape, settings: MemorySettings) -> MemoryEstimate:
    """Peak GPU memory of one training step (forward + backward + optimizer step); on a CPU, the same
    tensors in RAM (no CUDA context, no caching allocator's reserve).

    trainable_parameters / total_parameters follow peft's count (the one definition the trainer reports
    too): the total is the base model plus the adapter."""
    if settings.micro_batch < 1 or settings.seq_len < 1:
        raise ValueError("micro_batch and seq_len must be at least 1")
    on_gpu = settings.device == "cuda"
    notes: list[str] = []
    weights = base_weight_bytes(shape, settings)
    total_params = shape.parameter_count()
    breakdown: dict[str, float] = {"cuda_context": float(CUDA_CONTEXT_BYTES)} if on_gpu else {}
    if settings.finetuning_type == "full":
        param_bytes = 4 if settings.precision in ("fp32", "fp16") else 2
        trainable = total_params
        breakdown["weights"] = weights["unquantized"]
        breakdown["gradients"] = float(trainable * param_bytes)
        breakdown["optimizer_state"] = optimizer_state_bytes(trainable, settings.optim, param_bytes=param_bytes,
                                                             matrices=_trainable_matrices(shape, settings))
    else:
        trainable = lora_parameter_count(shape, settings.lora_rank, settings.lora_target, use_dora=settings.use_dora)
        total_params += trainable
        if trainable == 0:
            notes.append(f"lora_target {settings.lora_target!r} matches no linear layer of this model")
        breakdown["base_weights"] = weights["quantized_linear"] + weights["unquantized"]
        breakdown["lora_weights"] = float(trainable * 4)
        breakdown["lora_gradients"] = float(trainable * 4)
        breakdown["optimizer_state"] = optimizer_state_bytes(trainable, settings.optim, param_bytes=4,
                                                             matrices=_trainable_matrices(shape, settings))
    _shard(breakdown, settings, notes)
    if settings.optim in PAGED_OPTIMIZERS:
        notes.append("paged optimizer: its state moves to CPU RAM when the GPU runs short")
    acts = activation_bytes(shape, settings)
    breakdown["activations"] = acts["saved"] + acts["recompute"]
    breakdown["logits_and_loss"] = logits_bytes(shape, settings)
    # torch's foreach AdamW builds full-size temporaries during the step, after the activations are freed:
    # the peak is the larger of the backward pass and the step (matters for full fine-tuning only).
    if settings.optim == "adamw_torch":
        param_bytes = (4 if settings.precision in ("fp32", "fp16") else 2) if settings.finetuning_type == "full" else 4
        step_temporaries = trainable * param_bytes
        if step_temporaries > breakdown["activations"] + breakdown["logits_and_loss"]:
            breakdown["optimizer_step_temporaries"] = float(
                step_temporaries - breakdown["activations"] - breakdown["logits_and_loss"])
    # torch reserves more than it hands out: block rounding and fragmentation grow with the live tensors;
    # after a quantised load the reserve never drops below the holes the 16-bit copies left behind.
    allocated = sum(v for k, v in breakdown.items() if k != "cuda_context")
    if not on_gpu:
        return MemoryEstimate(breakdown=breakdown, trainable_parameters=trainable, total_parameters=total_params,
                              settings=settings, notes=notes)
    overhead = UNSORTED_BATCH_OVERHEAD if settings.unsorted_varied_batches else ALLOCATOR_OVERHEAD
    reserved = allocated * (1 + overhead)
    if settings.quantization_bit and settings.finetuning_type == "lora":
        floor = QUANTIZED_LOAD_FLOOR * breakdown["base_weights"] + (allocated - breakdown["base_weights"]
                                                                    - breakdown["activations"]
                                                                    - breakdown["logits_and_loss"]
                                                                    - breakdown.get("optimizer_step_temporaries", 0))
        reserved = max(reserved, floor)
    breakdown["allocator_overhead"] = reserved - allocated
    return MemoryEstimate(breakdown=breakdown, trainable_parameters=trainable, total_parameters=total_params,
                          settings=settings, notes=notes)


def _shard(breakdown: dict[str, float], settings: MemorySettings, notes: list[str]) -> None:
    """One device's share under FSDP/ZeRO: ZeRO-2 splits gradients and optimizer state over the devices,
    ZeRO-3 and FSDP the weights too; offloaded parts live in CPU RAM instead (FSDP offloads all three)."""
    kind, devices = settings.sharding, max(1, settings.devices)
    if kind == "ddp":
        return
    weights = "weights" if "weights" in breakdown else "lora_weights"
    gradients = "gradients" if "gradients" in breakdown else "lora_gradients"
    split = ["optimizer_state", gradients] + ([weights, "base_weights"] if kind in ("fsdp", "deepspeed_zero3") else [])
    for key in split:
        if key in breakdown:
            breakdown[key] /= devices
    offloaded = []
    if settings.offload_optimizer or (kind == "fsdp" and settings.offload_params):
        offloaded.append("optimizer_state")
    if settings.offload_params and kind in ("fsdp", "deepspeed_zero3"):
        offloaded += [weights, "base_weights"] + ([gradients] if kind == "fsdp" else [])
    for key in offloaded:
        if key in breakdown:
            breakdown[key] = 0.0
    notes.append(f"{kind} over {devices} device{'s' if devices > 1 else ''}: per-device share"
                 + (f"; {', '.join(k for k in offloaded if k in breakdown)} in CPU RAM" if offloaded else ""))
