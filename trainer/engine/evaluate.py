"""Measuring a run's weights: loss and perplexity beside the base model's, and a few answers side by side.

    result = evaluate_run(run_dir, checkpoint=None, dataset=None, sample_rows=3)
    # {"eval_loss", "perplexity", "base_eval_loss", "base_perplexity", "rows", "tokens", "samples": [...], ...}

The rows are the run's validation split (the same rows training held out), or every row of `dataset`.
They are rendered, masked and cut to cutoff_len by the training code, so the loss counts the same tokens
training's did: the mean negative log-likelihood over all answer tokens of all rows (token-weighted),
and perplexity = exp(loss). Samples are generated greedily. The result is added to the run's
evaluation.json (one entry per weights and dataset, the newest replacing an older one).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from trainer.config import write_text_atomic
from trainer.datasets import DataError, load_examples, tokenize_examples
from trainer.engine.artifacts import BASE, TUNED, AfterTrainingError, LoadedRun, load_run, resolve_weights
from trainer.engine.chat import GenerationSettings, reply

EVALUATION_FILE = "evaluation.json"
DEFAULT_SAMPLE_ROWS = 3
DEFAULT_BATCH_SIZE = 4


def evaluation_rows(loaded: LoadedRun, dataset: Optional[str] = None, max_rows: Optional[int] = None):
    """(examples, tokenized rows, source): the validation split, or all rows of `dataset`."""
    cfg = loaded.cfg
    if dataset:
        # Every row of that dataset, none held out: the run's own evaluation settings need a split, so they go.
        cfg = cfg.replace(dataset=dataset, dataset_format="auto", column_mapping={}, val_size=0, max_samples=None,
                          eval_strategy="no", load_best_model_at_end=False, early_stopping_patience=None)
    try:
        data = load_examples(cfg)
    except DataError as exc:
        raise AfterTrainingError(f"dataset: {' '.join(str(exc).split())[:500]}") from None
    examples = data.train if dataset else data.eval
    if not examples:
        raise AfterTrainingError("the run has no validation split (val_size is 0): choose a dataset to evaluate on")
    if max_rows is not None:
        examples = examples[:max_rows]
    try:
        rows = tokenize_examples(examples, loaded.tokenizer, cfg.replace(skip_invalid_rows=True))
    except DataError as exc:
        raise AfterTrainingError(f"dataset: {' '.join(str(exc).split())[:500]}") from None
    return examples, rows, str(data.source)


def masked_loss(model, rows: Sequence[dict], pad_id: int, device: str,
                batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[float, int]:
    """(mean NLL over the tokens whose completion_mask is 1, their count), as training's loss: token t is
    predicted from the tokens before it, and the first token of a row is never predicted."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            target = torch.zeros((len(batch), width), dtype=torch.bool)
            for i, r in enumerate(batch):
                n = len(r["input_ids"])
                ids[i, :n] = torch.tensor(r["input_ids"])
                mask[i, :n] = 1
                target[i, :n] = torch.tensor(r["completion_mask"], dtype=torch.bool)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            predicted = target[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1).to(device), reduction="none")
            total += float(nll.view(len(batch), width - 1)[predicted].sum())
            count += int(predicted.sum())
    if count == 0:
        raise AfterTrainingError("no answer token to measure: every row's answer was cut by cutoff_len")
    return total / count, count


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def _samples(loaded: LoadedRun, examples: Sequence[dict], count: int, max_new_tokens: int) -> list[dict[str, str]]:
    settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens)
    out = []
    for example in examples:
        if len(out) >= count:
            break
        messages = example.get("messages") if isinstance(example, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            continue  # plain text rows have no prompt/answer to compare
        prompt = [dict(m) for m in messages[:-1]]
        row = {"prompt": prompt[-1]["content"] if prompt else "", "reference": messages[-1]["content"]}
        for which in (BASE, TUNED):
            row[which] = reply(loaded, prompt, settings, which)
        out.append(row)
    return out


def evaluate_loaded(loaded: LoadedRun, dataset: Optional[str] = None, *, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                    max_new_tokens: int = 64, max_rows: Optional[int] = None,
                    progress: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    say = progress or (lambda text: None)
    started = time.time()
    examples, rows, source = evaluation_rows(loaded, dataset, max_rows)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    batch = loaded.cfg.per_device_eval_batch_size or DEFAULT_BATCH_SIZE
    say(f"measuring the tuned model on {len(rows)} rows of {source}")
    with loaded.use(TUNED) as model:
        loss, tokens = masked_loss(model, rows, pad, loaded.device, batch)
    say("measuring the base model on the same rows")
    with loaded.use(BASE) as model:
        base_loss, _ = masked_loss(model, rows, pad, loaded.device, batch)
    say(f"generating {sample_rows} answers greedily with both models")
    samples = _samples(loaded, examples, sample_rows, max_new_tokens) if sample_rows else []
    return {
        "weights": loaded.weights.name, "step": loaded.weights.step,
        "dataset": dataset or "validation split", "source": source,
        "eval_loss": loss, "perplexity": _perplexity(loss),
        "base_eval_loss": base_loss, "base_perplexity": _perplexity(base_loss),
        "rows": len(rows), "tokens": tokens, "samples": samples,
        "device": loaded.device, "precision": loaded.precision, "loaded_in_bits": loaded.loaded_in_bits,
        "seconds": round(time.time() - started, 1), "t": round(time.time(), 3),
    }


def evaluate_run(run_dir: str | Path, checkpoint: Optional[str] = None, dataset: Optional[str] = None, *,
                 sample_rows: int = DEFAULT_SAMPLE_ROWS, max_new_tokens: int = 64, max_rows: Optional[int] = None,
                 save: bool = True, progress: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Evaluate a run's weights (see the module docstring); stored in RUN_DIR/evaluation.json when `save`."""
    weights = resolve_weights(run_dir, checkpoint)
    loaded = load_run(weights, progress=progress)
    result = evaluate_loaded(loaded, dataset, sample_rows=sample_rows, max_new_tokens=max_new_tokens,
                             max_rows=max_rows, progress=progress)
    if save:
        save_evaluation(weights.run_dir, result)
    return result


def read_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """The stored evaluations of a run, oldest first ([] when none, or the file is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / EVALUATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    results = data.get("results") if isinstance(data, dict) else None
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def save_evaluation(run_dir: str | Path, result: dict[str, Any]) -> Path:
    key = (result.get("weights"), result.get("dataset"))
    kept = [r for r in read_evaluations(run_dir) if (r.get("weights"), r.get("dataset")) != key]
    path = Path(run_dir) / EVALUATION_FILE
    try:
        write_text_atomic(path, json.dumps({"results": kept + [result]}, indent=1, ensure_ascii=False,
                                           default=str, allow_nan=True) + "\n")
    except OSError as exc:
        raise AfterTrainingError(f"{path}: cannot store the evaluation: {exc.strerror or exc}") from None
    return path
