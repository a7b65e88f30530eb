"""GPU benchmark: a Llama-3.1-8B-shaped model (random weights, no download), QLoRA r 16, max length 2048.

Measures, through tunedeck's own training path (trainer.model.load_model / apply_lora, trainer.train's
SFTTrainer construction, trainer.plan.resolve_plan's defaults):
- tokens/s (real, non-padding tokens), MFU (4·N FLOPs per token for LoRA, H100 bf16 dense peak
  989 TFLOP/s) and peak reserved memory on a varied-length synthetic dataset, for the defaults vs
  plain padded batching (and forced padding-free packing on SDPA);
- the memory plan's error against torch.cuda.max_memory_reserved() for several micro-batches and lengths
  (rows of exactly cutoff_len tokens: the worst case).

Usage (on a CUDA machine with bitsandbytes, trl, datasets installed):
    python benchmarks/gpu_llama8b.py --out benchmarks/results
It writes gpu_llama8b.json (and gpu_llama8b.jsonl as it goes, so a time-out keeps what finished).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

H100_BF16_PEAK_FLOPS = 989e12
GROUPS = ("plain", "defaults", "validate", "lora16", "full", "expandable")
MODEL_NAME = "meta-llama/Llama-3.1-8B"


def varied_lengths(n: int, low: int = 64, high: int = 2048, seed: int = 0) -> list[int]:
    """Log-uniform lengths: many short rows and a long tail, like real instruction data."""
    rng = random.Random(seed)
    return [int(round(math.exp(rng.uniform(math.log(low), math.log(high))))) for _ in range(n)]


def make_rows(lengths: list[int], vocab_low: int = 10, vocab_high: int = 1000, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in lengths:
        ids = [rng.randrange(vocab_low, vocab_high) for _ in range(n)]
        prompt = n // 4  # the first quarter is the prompt (no loss), the rest the answer
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * (n - prompt)})
    return rows


# --- building the model --------------------------------------------------------------------------

def build_model(model_dir: Path, name: str = MODEL_NAME) -> None:
    """A random-weight model of a catalog shape in bf16, saved with a local tokenizer (the demo's): no download."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from trainer.plan.catalog import model_shape
    from trainer.engine.demo import ensure_demo_model

    if (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors")):
        return
    shape = model_shape(name)
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_demo_model()))
    config = LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=131072, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=shape.tie_word_embeddings, head_dim=shape.resolved_head_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(str(model_dir), max_shard_size="4GB")
    tokenizer.save_pretrained(str(model_dir))
    print(f"built {sum(p.numel() for p in model.parameters()):,} parameters in {time.time() - t0:.0f}s", flush=True)


# --- one group of scenarios in one process (the model is loaded once per group) ------------------

def run_group(group: str, model_dir: Path, out_jsonl: Path, only: set[str] | None = None,
              dry_run: bool = False) -> None:
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    from trainer.plan import memory as mem
    from trainer.plan.catalog import model_shape
    from trainer.config import TrainConfig
    from trainer.plan.hardware import detect
    from trainer.engine.model import apply_lora, load_model
    from trainer.plan.resolve import resolve_plan
    from trainer.engine.train import _build_trainer

    hw = detect()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    shape = model_shape(str(model_dir))
    liger = group in ("defaults", "validate", "lora16", "full")
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if group == "full":  # full fine-tuning needs a smaller model: Llama-3.2-1B's shape
        model_dir = Path(str(model_dir) + "-1b")
        shape = model_shape(str(model_dir))
    base = dict(model_name_or_path=str(model_dir), quantization_bit=None if dry_run or group in ("lora16", "full")
                else 4, finetuning_type="full" if group == "full" else "lora", lora_rank=16, lora_alpha=32,
                gradient_accumulation_steps=1, save_strategy="no", logging_steps=1, learning_rate=1e-4,
                warmup_ratio=0.0, lr_scheduler_type="constant", use_liger_kernel=None if liger else False)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    model_holder: dict = {}

    def model_for(cfg, plan):
        if "model" not in model_holder:
            t0 = time.time()
            model = load_model(cfg, precision=plan.precision, device=hw.device,
                               attn_implementation=plan.attn_implementation, source=str(model_dir))
            model_holder["model"] = apply_lora(model, cfg) if cfg.finetuning_type == "lora" else model
            model_holder["load_s"] = round(time.time() - t0, 1)
        return model_holder["model"]

    def scenario(name: str, rows: list[dict], **overrides) -> None:
        if only and name not in only:
            return
        cfg = TrainConfig(**{**base, **overrides})
        lengths = [len(r["input_ids"]) for r in rows]
        plan = resolve_plan(cfg, len(rows), hw=hw, token_lengths=lengths)
        model = model_for(cfg, plan)
        if not cfg.gradient_checkpointing:
            model.base_model.model.gradient_checkpointing_disable()
        run_dir = Path("/tmp/tunedeck-bench") / group / name
        trainer = _build_trainer(cfg, run_dir, plan, hw, model, tokenizer, rows, [])
        counts = {"processed": 0, "real": 0, "batches": 0}
        collate = trainer.data_collator

        def counting_collator(features):
            batch = collate(features)
            ids = batch["input_ids"]
            counts["processed"] += ids.numel()
            counts["real"] += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
            counts["batches"] += 1
            return batch

        trainer.data_collator = counting_collator
        timer = StepTimer()
        trainer.add_callback(timer)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        status, error = "ok", None
        try:
            trainer.train()
        except torch.OutOfMemoryError as exc:  # a measured point past the card is a result too
            status, error = "oom", str(exc).splitlines()[0]
        wall = time.perf_counter() - t0
        peak_reserved = torch.cuda.max_memory_reserved() if cuda else 0
        peak_allocated = torch.cuda.max_memory_allocated() if cuda else 0
        settings = mem.MemorySettings.from_config(cfg, precision=plan.precision,
                                                  attn_implementation=plan.attn_implementation,
                                                  use_liger_kernel=plan.use_liger_kernel,
                                                  unsorted_varied_batches=not plan.packing and not plan.group_by_length
                                                  and len(set(lengths)) > 1)
        est = mem.estimate_memory(shape, settings)
        marks = timer.marks
        tokens_per_s = None
        if len(marks) >= 3:  # the first step includes warm-up (kernel selection, allocator growth)
            (t_a, n_a), (t_b, n_b) = marks[0], marks[-1]
            tokens_per_s = (n_b - n_a) / (t_b - t_a)
        record = {
            "group": group, "scenario": name, "status": status, "error": error, "model": shape.name,
            "finetuning_type": cfg.finetuning_type, "quantization_bit": cfg.quantization_bit, "optim": cfg.optim,
            "lora_rank": cfg.lora_rank,
            "micro_batch": cfg.per_device_train_batch_size, "cutoff_len": cfg.cutoff_len, "rows": len(rows),
            "mean_row_tokens": round(sum(lengths) / len(lengths), 1),
            "packing": plan.packing, "group_by_length": plan.group_by_length, "use_liger_kernel": plan.use_liger_kernel,
            "attn_implementation": plan.attn_implementation, "precision": plan.precision,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "plan_padding_efficiency": plan.padding_efficiency,
            "measured_padding_efficiency": round(counts["real"] / counts["processed"], 4) if counts["processed"] else None,
            "steps": len(marks), "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
            "mfu": round(tokens_per_s * 4 * shape.parameter_count() / H100_BF16_PEAK_FLOPS, 4) if tokens_per_s else None,
            "peak_reserved_gib": round(peak_reserved / 2**30, 3),
            "peak_allocated_gib": round(peak_allocated / 2**30, 3),
            "estimate_torch_peak_gib": round(est.torch_peak_bytes / 2**30, 3),
            "estimate_total_gib": round(est.total_gb, 3),
            "estimate_breakdown_gib": est.breakdown_gb(),
            "estimate_error": round(est.torch_peak_bytes / peak_reserved - 1, 4) if peak_reserved else None,
            "model_load_s": model_holder.get("load_s"),
        }
        print(json.dumps({k: record[k] for k in ("scenario", "status", "micro_batch", "cutoff_len", "tokens_per_s",
                                                   "mfu", "measured_padding_efficiency", "peak_reserved_gib",
                                                   "estimate_torch_peak_gib", "estimate_error")}), flush=True)
        with out_jsonl.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        del trainer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    top_id = min(1000, len(tokenizer) - 1)  # real token ids of the local tokenizer, none special
    make = lambda lengths: make_rows(lengths, vocab_high=top_id)  # noqa: E731
    varied = make(varied_lengths(256))  # a whole epoch each: 32 micro-batches of 8
    if dry_run:  # a CPU smoke test of this script on the demo model: short rows, two steps each
        varied = make(varied_lengths(16, 8, 64))
        scenario("dry_plain", varied, cutoff_len=64, per_device_train_batch_size=4, packing=False,
                 group_by_length=False, max_steps=3)
        scenario("dry_grouped", varied, cutoff_len=64, per_device_train_batch_size=4, max_steps=3)
        scenario("dry_no_ckpt", make([64] * 6), cutoff_len=64, per_device_train_batch_size=2, max_steps=3,
                 gradient_checkpointing=False)
        return
    if group == "plain":
        # plain padded batching: shuffled rows padded to the longest of each micro-batch, no fused kernels
        scenario("throughput_plain_padded", varied, cutoff_len=2048, per_device_train_batch_size=8,
                 packing=False, group_by_length=False, num_train_epochs=1)
        scenario("throughput_group_by_length_no_liger", varied, cutoff_len=2048, per_device_train_batch_size=8,
                 packing=False, group_by_length=True, num_train_epochs=1)
        # padding-free BFD packing forced on SDPA (transformers builds a block-diagonal mask from position ids);
        # micro-batch 2 packs = 4096 tokens a step, as the others' 8 rows × ~520 real tokens
        scenario("throughput_packing_sdpa", varied, cutoff_len=2048, per_device_train_batch_size=2,
                 packing=True, group_by_length=False, num_train_epochs=1)
        scenario("memory_b4_l2048_no_liger", make([2048] * 12), cutoff_len=2048,
                 per_device_train_batch_size=4, packing=False, group_by_length=False, max_steps=3)
    elif group == "validate":  # held-out points: not used to calibrate the memory plan
        for batch, length in ((3, 3072), (6, 1024), (12, 2048), (2, 8192)):
            scenario(f"validate_b{batch}_l{length}", make([length] * (3 * batch)), cutoff_len=length,
                     per_device_train_batch_size=batch, packing=False, group_by_length=False, max_steps=3)
        scenario("validate_b16_l1024_r64_adamw8bit", make([1024] * 48), cutoff_len=1024, lora_rank=64,
                 lora_alpha=128, optim="adamw_8bit", per_device_train_batch_size=16, packing=False,
                 group_by_length=False, max_steps=3)
        scenario("validate_b1_l3072_no_checkpointing", make([3072] * 3), cutoff_len=3072,
                 per_device_train_batch_size=1, packing=False, group_by_length=False, max_steps=3,
                 gradient_checkpointing=False)
    elif group == "lora16":  # 16-bit base (no quantization)
        for batch in (4, 8):
            scenario(f"validate_lora16_b{batch}_l2048", make([2048] * (3 * batch)), cutoff_len=2048,
                     per_device_train_batch_size=batch, packing=False, group_by_length=False, max_steps=3)
    elif group == "full":  # full fine-tuning, bf16 weights, gradients and AdamW state
        for batch, length, optim in ((4, 2048, "adamw_torch"), (8, 1024, "adamw_torch"), (8, 2048, "adamw_8bit")):
            scenario(f"validate_full_1b_b{batch}_l{length}_{optim}", make([length] * (3 * batch)), cutoff_len=length,
                     per_device_train_batch_size=batch, packing=False, group_by_length=False, max_steps=3,
                     optim=optim, learning_rate=1e-5)
    elif group == "expandable":  # plain padded batching with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
        scenario("throughput_plain_padded_expandable_segments", varied[:128], cutoff_len=2048,
                 per_device_train_batch_size=8, packing=False, group_by_length=False, num_train_epochs=1)
    else:
        scenario("throughput_defaults", varied, cutoff_len=2048, per_device_train_batch_size=8, num_train_epochs=1)
        for batch, length in ((1, 512), (8, 512), (1, 2048), (2, 2048), (4, 2048), (8, 2048), (1, 4096), (4, 4096)):
            scenario(f"memory_b{batch}_l{length}", make([length] * (3 * batch)), cutoff_len=length,
                     per_device_train_batch_size=batch, packing=False, group_by_length=False, max_steps=3)
        scenario("memory_b1_l2048_no_checkpointing", make([2048] * 3), cutoff_len=2048,
                 per_device_train_batch_size=1, packing=False, group_by_length=False, max_steps=3,
                 gradient_checkpointing=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--model-dir", default="/tmp/tunedeck-llama8b-random")
    parser.add_argument("--group", choices=GROUPS, help="(internal) run one group in this process")
    parser.add_argument("--groups", default="plain,defaults",
                        help="groups to run: plain, defaults (the figures), validate, lora16, expandable (held-out "
                             "checks of the calibrated memory plan)")
    parser.add_argument("--name", default="gpu_llama8b", help="base name of the result files")
    parser.add_argument("--skip-build", action="store_true", help="the model directory already exists")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke test of the script on the demo model")
    parser.add_argument("--allocator", choices=("tunedeck", "torch-default"), default="tunedeck",
                        help="tunedeck: expandable segments unless PYTORCH_CUDA_ALLOC_CONF is set, as the trainer "
                             "starts; torch-default: torch's own allocator, as the memory plan was calibrated")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir)
    jsonl = out / f"{args.name}.jsonl"
    only = {s for s in args.only.split(",") if s} or None
    if args.dry_run:
        from trainer.engine.demo import ensure_demo_model

        run_group("plain", ensure_demo_model(), jsonl, only, dry_run=True)
        return 0
    if args.group:
        run_group(args.group, model_dir, jsonl, only)
        return 0

    import torch

    started = time.time()
    if not args.skip_build:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                    f"from benchmarks.gpu_llama8b import build_model; from pathlib import Path; "
                        f"build_model(Path({str(model_dir)!r}))"], check=True)
    if "full" in args.groups.split(","):
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                        f"from benchmarks.gpu_llama8b import build_model; from pathlib import Path; "
                        f"build_model(Path({str(model_dir) + '-1b'!r}), 'meta-llama/Llama-3.2-1B')"], check=True)
    for group in [g for g in args.groups.split(",") if g]:
        cmd = [sys.executable, __file__, "--group", group, "--out", str(out), "--model-dir", str(model_dir),
               "--name", args.name]
        if args.only:
            cmd += ["--only", args.only]
        env = dict(os.environ)
        if group == "expandable":  # must be set before CUDA starts: a process of its own
            env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        elif args.allocator == "tunedeck":  # what tunedeck's trainer starts with (trainer/jobs/processes.py)
            from trainer.jobs.processes import set_allocator_default

            set_allocator_default(env)
        code = subprocess.run(cmd, env=env).returncode
        if code:
            print(f"group {group} exited {code}", file=sys.stderr)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    by_name = {r["scenario"]: r for r in records}
    summary = {}
    plain, defaults = by_name.get("throughput_plain_padded"), by_name.get("throughput_defaults")
    if plain and defaults and plain["tokens_per_s"] and defaults["tokens_per_s"]:
        summary["defaults_vs_plain_tokens_per_s"] = round(defaults["tokens_per_s"] / plain["tokens_per_s"], 3)
    errors = [abs(r["estimate_error"]) for r in records if r["status"] == "ok" and r["estimate_error"] is not None]
    if errors:
        summary["memory_plan_max_abs_error"] = round(max(errors), 4)
    import transformers, peft, trl, bitsandbytes  # noqa: E401 - versions for the record

    result = {
        "benchmark": args.name, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{torch.cuda.get_device_name(0)}, {platform.machine()}, torch {torch.__version__}, "
                   f"transformers {transformers.__version__}, peft {peft.__version__}, trl {trl.__version__}, "
                   f"bitsandbytes {bitsandbytes.__version__}",
        "command": "python benchmarks/gpu_llama8b.py " + " ".join(sys.argv[1:]),
        "model": f"{MODEL_NAME} shape, random bf16 weights, QLoRA NF4 + double quant, LoRA r 16 all-linear",
        "total_wall_s": round(time.time() - started, 1),
        "summary": summary, "records": records,
    }
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
