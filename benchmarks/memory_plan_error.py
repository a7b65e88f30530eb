"""The memory plan's error against every peak measured on the GPU (CPU only: reads stored results).

Re-estimates each measured point (benchmarks/results/gpu_llama8b.json, gpu_validate.jsonl,
gpu_validate2.json, written by benchmarks/gpu_llama8b.py on an H100) with the current trainer.memory,
and compares the estimate of torch's peak reserved memory (the total less the CUDA context) with
torch.cuda.max_memory_reserved(). Prints a Markdown table and writes memory_plan_error.json.

    python benchmarks/memory_plan_error.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def records() -> list[dict]:
    out = []
    for name in ("gpu_llama8b.json", "gpu_validate2.json"):
        for record in json.loads((RESULTS / name).read_text())["records"]:
            out.append({**record, "file": name})
    for line in (RESULTS / "gpu_validate.jsonl").read_text().splitlines():
        out.append({**json.loads(line), "file": "gpu_validate.jsonl"})
    return out


def main() -> int:
    from trainer.plan.catalog import model_shape
    from trainer.plan.memory import GB, MemorySettings, estimate_memory

    rows = []
    for r in records():
        if r["status"] != "ok":
            continue
        settings = MemorySettings(
            micro_batch=r["micro_batch"], seq_len=r["cutoff_len"], finetuning_type=r["finetuning_type"],
            quantization_bit=r["quantization_bit"], optim=r["optim"], lora_rank=r["lora_rank"],
            precision=r["precision"], use_liger_kernel=r["use_liger_kernel"],
            gradient_checkpointing=r["gradient_checkpointing"],
            unsorted_varied_batches=not r["packing"] and not r["group_by_length"] and r["measured_padding_efficiency"] < 1)
        estimate = estimate_memory(model_shape(r["model"]), settings).torch_peak_bytes / GB
        rows.append({"file": r["file"], "scenario": r["scenario"], "held_out": bool(r.get("held_out")),
                     "model": r["model"].split("/")[-1], "method": r["finetuning_type"] if r["finetuning_type"] == "full"
                     else ("qlora" if r["quantization_bit"] == 4 else "lora"),
                     "micro_batch": r["micro_batch"], "seq_len": r["cutoff_len"], "liger": r["use_liger_kernel"],
                     "checkpointing": r["gradient_checkpointing"], "measured_gib": r["peak_reserved_gib"],
                     "estimate_gib": round(estimate, 2), "error": round(estimate / r["peak_reserved_gib"] - 1, 4)})
    print("| scenario | model | method | micro-batch × length | Liger | ckpt | measured GiB | plan GiB | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        mark = " (held out)" if row["held_out"] else ""
        print(f"| {row['scenario']}{mark} | {row['model']} | {row['method']} | {row['micro_batch']} × {row['seq_len']} | "
              f"{'on' if row['liger'] else 'off'} | {'on' if row['checkpointing'] else 'off'} | {row['measured_gib']:.2f} | "
              f"{row['estimate_gib']:.2f} | {row['error']:+.1%} |")
    fitted = [abs(r["error"]) for r in rows if not r["held_out"]]
    held = [abs(r["error"]) for r in rows if r["held_out"] and "expandable" not in r["scenario"]]
    summary = {"points": len(rows), "max_abs_error_calibration": max(fitted), "max_abs_error_held_out": max(held),
               "within_10_percent": sum(abs(r["error"]) <= 0.10 for r in rows)}
    print(json.dumps(summary))
    (RESULTS / "memory_plan_error.json").write_text(json.dumps(
        {"benchmark": "memory_plan_error", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
         "command": "python benchmarks/memory_plan_error.py", "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
