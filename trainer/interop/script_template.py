"""The text of the exported plain script (see export_script.py, which fills it in).

SCRIPT_HEAD is formatted with the title, file name and what is saved; SCRIPT_BODY follows the config,
the chat template, the answer finder and the SFTConfig mapping that export_script copies in from
tunedeck's own modules. The body is tunedeck's data pipeline, model setup and training, written for a
script that runs without tunedeck: keep it in step with trainer/datasets and trainer/engine/model.py
(tests/test_export_script.py compares the rows, masks and SFTConfig of both).
"""

SCRIPT_HEAD = '''#!/usr/bin/env python
"""{title}

A plain transformers + peft + trl script that reproduces a tunedeck run without tunedeck, exported by
`python -m trainer export-script`. Edit CONFIG (data, model) and SFT_ARGS (training) below, or override
the output folder and the step count:

    python {filename} --output-dir out --max-steps 10

It saves the final {what} to OUTPUT_DIR/adapter and checkpoints to OUTPUT_DIR/checkpoints. Hub access
tokens come from the environment (HF_TOKEN), never from this file.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import importlib.util
import io
import json
import os
import random
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, EarlyStoppingCallback, set_seed
from trl import SFTConfig, SFTTrainer

'''

SCRIPT_BODY = r'''
# --- data: read, normalise to {"messages": [...]} or {"text": ...}, split --------------------------

ROW_LIST_COLUMNS = __ROW_LIST_COLUMNS__
SHAREGPT_ROLES = __SHAREGPT_ROLES__


def read_rows(source, subset, split):
    path = Path(source).expanduser()
    if not path.exists():  # a Hugging Face Hub dataset id
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(source, subset, split=split)]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        header = text.split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=header.count) if header else ","  # spreadsheets use ; or tabs
        return [{k: v for k, v in r.items() if k is not None}
                for r in csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)]
    if text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None  # one JSON object per line
        if isinstance(doc, dict):  # {"data": [...]} wraps the rows; {"messages": [...]} is one row
            key, value = next(iter(doc.items()), (None, None))
            doc = value if len(doc) == 1 and isinstance(value, list) and key not in ROW_LIST_COLUMNS else [doc]
        if isinstance(doc, list):
            return doc
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def detect_format(rows):
    keys = {k for r in rows[:50] if isinstance(r, dict) for k, v in r.items() if v is not None}
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or ("output" in keys and "input" in keys):
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    raise SystemExit(f"cannot tell the dataset format from its columns: {sorted(keys)}")


def _turns(value, roles):
    if isinstance(value, str):
        value = json.loads(value)
    out = []
    for item in value:
        role = item.get("role", item.get("from"))
        content = item.get("content", item.get("value"))
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content)
        out.append({"role": roles[str(role).strip().lower()], "content": str(content)})
    return out


def _with_system(row, messages):
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}] + messages
    return messages


def normalize(row, fmt):
    if fmt == "alpaca":
        prompt = "\n\n".join(p for p in (str(row.get("instruction") or ""), str(row.get("input") or "")) if p.strip())
        messages = [{"role": "system", "content": row["system"]}] if str(row.get("system") or "").strip() else []
        history = row.get("history") or []
        if isinstance(history, str):
            history = json.loads(history) if history.strip() else []
        for question, answer in history:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if not prompt.strip() or not str(row.get("output") or "").strip():
            raise ValueError("empty instruction or output")
        return {"messages": messages + [{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": str(row["output"])}]}
    if fmt == "sharegpt":
        return {"messages": _with_system(row, _turns(row["conversations"], SHAREGPT_ROLES))}
    if fmt == "messages":
        return {"messages": _with_system(row, _turns(row["messages"], {r: r for r in ("system", "user", "assistant")}))}
    if fmt == "prompt_completion":
        if isinstance(row["prompt"], list) or isinstance(row["completion"], list):
            roles = {r: r for r in ("system", "user", "assistant")}
            return {"messages": _with_system(row, _turns(row["prompt"], roles) + _turns(row["completion"], roles))}
        return {"messages": _with_system(row, [{"role": "user", "content": str(row["prompt"])},
                                               {"role": "assistant", "content": str(row["completion"])}])}
    if not str(row.get("text") or "").strip():
        raise ValueError("empty text")
    return {"text": str(row["text"])}


def load_examples():
    rows = read_rows(CONFIG["dataset"], CONFIG["dataset_subset"], CONFIG["dataset_split"])
    if CONFIG["max_samples"] is not None:
        rows = rows[:CONFIG["max_samples"]]
    mapping = CONFIG["column_mapping"]
    if mapping:
        rows = [{**{k: v for k, v in r.items() if k not in mapping}, **{new: r[old] for old, new in mapping.items()}}
                for r in rows]
    fmt = DATASET_FORMAT if DATASET_FORMAT != "auto" else detect_format(rows)
    examples = []
    for number, row in enumerate(rows, 1):
        try:
            examples.append(normalize(row, fmt))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            if not CONFIG["skip_invalid_rows"]:
                raise SystemExit(f"{CONFIG['dataset']}: row {number} is invalid ({exc!r}); fix it or set "
                                 "skip_invalid_rows") from None
    val_size, n = CONFIG["val_size"], len(examples)
    if not val_size:
        return examples, []
    count = int(val_size) if val_size >= 1 else max(1, round(n * val_size))
    held = set(random.Random(CONFIG["seed"]).sample(range(n), count))
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


# --- rendering and the answer-only loss mask ----------------------------------------------------------

def render_jinja(messages, tokenizer):
    """(text, is_answer) segments: each answer spans from the end of render(turns before it, generation
    prompt) to the end of render(turns up to it); located by its text if the template is not prefix-stable."""
    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start, end = render(messages[:i], True), render(messages[:i + 1], False)
        if not (full.startswith(end) and end.startswith(start) and len(end) > len(start)):
            spans = None
            break
        spans.append((len(start), len(end)))
    if spans is None:
        spans = _find_answers(full, messages, tokenizer.eos_token or "")
    segments, cursor = [], 0
    for start, end in spans:
        if start > cursor:
            segments.append((full[cursor:start], False))
        segments.append((full[start:end], True))
        cursor = end
    if cursor < len(full):
        segments.append((full[cursor:], False))
    return segments


def render(example, tokenizer):
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    if "text" in example:
        return [(bos + example["text"] + eos, True)]
    if CONFIG["template"] == "auto" and tokenizer.chat_template:
        return render_jinja(example["messages"], tokenizer)
    return [(t, a) for t, a in NAMED_TEMPLATE(example["messages"], bos, eos, False) if t]


def tokenize(example, tokenizer):
    segments = render(example, tokenizer)
    text = "".join(t for t, _ in segments)
    spans, pos = [], 0
    for t, is_answer in segments:
        if is_answer or CONFIG["train_on_prompt"]:
            spans.append((pos, pos + len(t)))
        pos += len(t)
    if tokenizer.is_fast:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, starts, mask = list(enc["input_ids"]), [a for a, _ in spans], []
        for s, e in enc["offset_mapping"]:
            k = bisect.bisect_right(starts, s) - 1
            mask.append(int(any((s < b and e > a) or (s == e and a <= s < b)
                                for a, b in spans[max(0, k):k + 2])))
    else:
        ids, mask = [], []
        for t, is_answer in segments:
            piece = tokenizer(t, add_special_tokens=False)["input_ids"]
            ids += piece
            mask += [int(is_answer or CONFIG["train_on_prompt"])] * len(piece)
    cut = CONFIG["cutoff_len"]
    return {"input_ids": ids[:cut], "completion_mask": mask[:cut]}


def tokenize_all(examples, tokenizer):
    rows = [tokenize(e, tokenizer) for e in examples]
    empty = [i for i, r in enumerate(rows) if not any(r["completion_mask"])]
    if empty and not CONFIG["skip_invalid_rows"]:
        raise SystemExit(f"{len(empty)} rows have no answer token left after cutoff_len {CONFIG['cutoff_len']}")
    return [r for r in rows if any(r["completion_mask"])]


# --- hardware-dependent choices, resolved as tunedeck resolves them -----------------------------------

def resolve_runtime():
    cuda = torch.cuda.is_available()
    precision = CONFIG["precision"]
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    attention = CONFIG["attn_implementation"]
    if attention == "auto":
        # FlashAttention 3 on a Hopper, else 2 from Ampere on, else SDPA (the Hub's `kernels` build needs
        # tunedeck's cache check: this script leaves it out).
        major = torch.cuda.get_device_capability(0)[0] if cuda else 0
        if major == 9 and importlib.util.find_spec("flash_attn_interface"):
            attention = "flash_attention_3"
        elif major >= 8 and importlib.util.find_spec("flash_attn"):
            attention = "flash_attention_2"
        else:
            attention = "sdpa"
    # Padding-free packing where the kernel keeps packed rows apart (FlashAttention, SDPA), on a GPU only.
    packing = CONFIG["packing"] if CONFIG["packing"] is not None else cuda and (attention == "sdpa" or "flash" in attention)
    group = CONFIG["group_by_length"] if CONFIG["group_by_length"] is not None else not packing
    liger = CONFIG["use_liger_kernel"]
    if liger is None:
        try:
            import liger_kernel  # noqa: F401

            liger = cuda
        except ImportError:
            liger = False
    return {"device": "cuda" if cuda else "cpu", "precision": precision, "attention": attention,
            "packing": packing, "group_by_length": group, "liger": liger}


# --- model -------------------------------------------------------------------------------------------

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(MODEL, trust_remote_code=CONFIG["trust_remote_code"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(rt):
    # Full fine-tuning in fp16 keeps fp32 master weights (the grad scaler cannot unscale fp16 grads).
    load_precision = "fp32" if CONFIG["finetuning_type"] == "full" and rt["precision"] == "fp16" else rt["precision"]
    kwargs = {"dtype": DTYPES[load_precision], "trust_remote_code": CONFIG["trust_remote_code"],
              "attn_implementation": rt["attention"]}
    if CONFIG["quantization_bit"] == 8:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif CONFIG["quantization_bit"] == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=CONFIG["quantization_type"],
            bnb_4bit_use_double_quant=CONFIG["double_quantization"],
            bnb_4bit_compute_dtype=DTYPES[rt["precision"]])
    if CONFIG["quantization_bit"]:
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0")) if rt["device"] == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(MODEL, **kwargs)
    model.config.use_cache = False
    if CONFIG["quantization_bit"]:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=CONFIG["gradient_checkpointing"],
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif CONFIG["gradient_checkpointing"]:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if CONFIG["finetuning_type"] == "lora":
        target = CONFIG["lora_target"]
        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=CONFIG["lora_rank"], lora_alpha=CONFIG["lora_alpha"],
            lora_dropout=CONFIG["lora_dropout"], target_modules=target if target == "all-linear" else list(target),
            bias=CONFIG["lora_bias"], use_rslora=CONFIG["use_rslora"], use_dora=CONFIG["use_dora"]))
    return model


# --- training ----------------------------------------------------------------------------------------

def sft_config(rt, output_dir, max_steps):
    # The config with each `auto` resolved for this machine, as tunedeck's plan resolves it.
    values = {**CONFIG, "precision": rt["precision"], "attn_implementation": rt["attention"],
              "packing": rt["packing"], "group_by_length": rt["group_by_length"], "use_liger_kernel": rt["liger"]}
    return SFTConfig(**{**SFT_ARGS, **sft_kwargs(values, rt["device"], RUNTIME_ROUTES), **device_kwargs(rt["device"]),
                        "max_steps": max_steps, "output_dir": str(output_dir / "checkpoints")})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="output", help="where checkpoints/ and adapter/ go")
    parser.add_argument("--max-steps", type=int, default=CONFIG["max_steps"], help="override max_steps")
    args = parser.parse_args()
    output_dir = Path(args.output_dir)

    rt = resolve_runtime()
    train_examples, eval_examples = load_examples()
    tokenizer = load_tokenizer()
    train_rows = tokenize_all(train_examples, tokenizer)
    eval_rows = tokenize_all(eval_examples, tokenizer) if eval_examples else []
    print(f"{len(train_rows)} training rows, {len(eval_rows)} validation rows; {rt}", flush=True)

    set_seed(CONFIG["seed"])
    model = load_model(rt)
    callbacks = []
    if CONFIG["early_stopping_patience"] is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=CONFIG["early_stopping_patience"],
                                               early_stopping_threshold=CONFIG["early_stopping_threshold"]))
    trainer = SFTTrainer(
        model=model, args=sft_config(rt, output_dir, args.max_steps), processing_class=tokenizer,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if CONFIG["eval_strategy"] != "no" else None,
        callbacks=callbacks)
    resume = CONFIG["resume_from_checkpoint"]
    if resume and resume.strip().lower() in ("last", "latest", "true"):  # the newest checkpoint here, if any
        done = sorted((output_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                      key=lambda p: int(p.parent.name.split("-")[-1]))
        resume = str(done[-1].parent) if done else None
    trainer.train(resume_from_checkpoint=resume or None)
    trainer.save_model(str(output_dir / "adapter"))
    tokenizer.save_pretrained(str(output_dir / "adapter"))
    print(f"saved to {output_dir / 'adapter'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
'''
