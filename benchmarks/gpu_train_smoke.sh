#!/usr/bin/env bash
# On a CUDA machine: `python -m trainer check` and `python -m trainer train` end to end on a
# Llama-3.1-8B-shaped random model (QLoRA, the defaults), 10 steps on a varied-length alpaca file.
# Copies the run's events to $OUT (or ./gpu-smoke) and prints the plan's memory figures beside the
# measured peak. Usage: bash benchmarks/gpu_train_smoke.sh
set -euo pipefail
OUT=${OUT:-./gpu-smoke}; mkdir -p "$OUT"
MODEL=/tmp/tunedeck-llama8b-random
python3 -c "import sys; sys.path.insert(0, '.'); from pathlib import Path; from benchmarks.gpu_llama8b import build_model; build_model(Path('$MODEL'))"
python3 - <<'PY'
import json, random
rng = random.Random(0)
words = "the model learns to answer questions about numbers colours animals and cities in short sentences".split()
with open("/tmp/varied.jsonl", "w") as fh:
    for i in range(400):
        n = int(2 ** rng.uniform(3, 10))  # 8 .. 1024 words
        fh.write(json.dumps({"instruction": f"Question {i}: " + " ".join(rng.choice(words) for _ in range(n // 4)),
                             "output": " ".join(rng.choice(words) for _ in range(n))}) + "\n")
PY
cat > /tmp/smoke.yaml <<YAML
model_name_or_path: $MODEL
dataset: /tmp/varied.jsonl
quantization_bit: 4
cutoff_len: 2048
per_device_train_batch_size: 8
gradient_accumulation_steps: 2
max_steps: 10
save_strategy: "no"
val_size: 0
logging_steps: 1
YAML
python3 -m trainer check /tmp/smoke.yaml --json > "$OUT/smoke_check.json" || true
set +e
python3 -m trainer train /tmp/smoke.yaml --run-dir /tmp/smoke-run > "$OUT/smoke_stdout.log" 2>&1
echo "train exit $?"
set -e
cp /tmp/smoke-run/events.jsonl "$OUT/smoke_events.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
events = [json.loads(l) for l in open(f"{out}/smoke_events.jsonl")]
plan = next(e["plan"] for e in events if e["type"] == "plan")
keys = ("precision", "attn_implementation", "packing", "group_by_length", "use_liger_kernel", "padding_efficiency",
        "padding_efficiency_plain", "memory_estimate_gb", "memory_verdict", "memory_gpu_gb", "largest_micro_batch")
print({k: plan.get(k) for k in keys})
peaks = [e.get("memory", {}).get("peak_gb") for e in events if e["type"] == "log" and isinstance(e.get("memory"), dict)]
mem = [e for e in events if e["type"] == "memory"]
print("log peaks", peaks[-3:], "memory events", mem[-1:] if mem else None)
print("status", [e.get("status") for e in events if e["type"] == "status"], [e.get("reason") for e in events if e["type"] == "status"][-1])
PY
