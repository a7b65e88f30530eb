"""Publishing a run on the Hugging Face Hub: its adapter or its merged model, with a model card.

    card = model_card(run_dir, repo_id, checkpoint=None, merged=False)   # markdown with the run's real numbers
    files = upload_files(run_dir, checkpoint=None, merged=False)         # [(path in the repo, local path or None)]
    url = push(run_dir, repo_id, merged=False, private=False, commit_message=None, checkpoint=None)

The card is built from the run directory only: config.yaml (base model, method, hyperparameters,
dataset), events.jsonl (training time, hardware, final train and eval loss) and evaluation.json (the
evaluation table); the base model's license comes from trainer.plan.catalog when it is known. The
token comes from the HF_TOKEN environment variable only and is never written anywhere. Everything that
stops a push (no token, no network, a bad repo id) raises PublishError before anything is sent, and
nothing in the run directory is changed. This module never imports torch; a merged push merges first.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from trainer.engine.artifacts import AfterTrainingError, RunWeights, resolve_weights
from trainer.engine.merge import adapter_chat_template, adapter_files, merge_run
from trainer.engine.model import hub_offline, looks_like_local_path
from trainer.engine.demo import DEMO_NAME
from trainer.plan.catalog import catalog_shape
from trainer.run.events import number, read_events

TOKEN_ENV = "HF_TOKEN"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_HYPERPARAMETERS = ("finetuning_type", "quantization_bit", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
                    "use_rslora", "use_dora", "learning_rate", "lr_scheduler_type", "warmup_ratio", "num_train_epochs",
                    "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len",
                    "template", "train_on_prompt", "val_size", "seed")


class PublishError(AfterTrainingError):
    """A push that cannot happen; the message says why and what to do."""


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise PublishError(f"repo_id: '{repo_id}' is not a Hub repository id; use your-name/model-name")
    return repo_id


def run_numbers(run_dir: str | Path) -> dict[str, Any]:
    """The facts of a finished (or stopped) run from its events: time, hardware, steps, losses, rows."""
    events = read_events(run_dir)
    out: dict[str, Any] = {}
    plans = [e for e in events if e.get("type") == "plan"]
    if plans:
        plan = plans[-1]
        hardware = plan.get("hardware") or {}
        device = hardware.get("device") or "cpu"
        out["hardware"] = (f"{hardware.get('num_devices', 1)} × {hardware.get('gpu_name')}"
                           if device == "cuda" and hardware.get("gpu_name") else "CPU")
        dataset = plan.get("dataset") or {}
        out["train_rows"], out["eval_rows"] = dataset.get("train_rows"), dataset.get("eval_rows")
        out["precision"] = (plan.get("plan") or {}).get("precision")
        out["effective_batch_size"] = (plan.get("plan") or {}).get("effective_batch_size")
    logs = [e for e in events if e.get("type") == "log" and number(e.get("loss")) is not None]
    if logs:
        out["final_train_loss"] = number(logs[-1]["loss"])
        out["steps"] = logs[-1].get("step")
    evals = [e for e in events if e.get("type") == "eval" and number(e.get("eval_loss")) is not None]
    if evals:
        out["final_eval_loss"] = number(evals[-1]["eval_loss"])
    statuses = [e for e in events if e.get("type") == "status"]
    if statuses:
        last = statuses[-1]
        out["status"] = last.get("status")
        out["steps"] = last.get("step", out.get("steps"))
        runtime = number(last.get("train_runtime")) or number(last.get("elapsed_s"))
        if runtime is not None:
            out["training_seconds"] = runtime
        if number(last.get("train_loss")) is not None:
            out["average_train_loss"] = number(last.get("train_loss"))
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s" if seconds >= 3600 else (
        f"{seconds // 60}m {seconds % 60:02d}s")


def _hub_id(name: str) -> Optional[str]:
    """The base model's Hub id, when it is one (not `demo`, not a local directory)."""
    return None if name.strip().lower() == DEMO_NAME or looks_like_local_path(name) else name.strip()


def model_card(run_dir: str | Path, repo_id: str, checkpoint: Optional[str] = None, merged: bool = False) -> str:
    """The README.md of the pushed repository, from the run's own files."""
    from trainer.engine.evaluate import read_evaluations

    weights = resolve_weights(run_dir, checkpoint)
    cfg = weights.cfg
    facts = run_numbers(weights.run_dir)
    base = cfg.model_name_or_path
    hub_base = _hub_id(base)
    shape = catalog_shape(base)
    license_name = shape.license if shape and shape.license else None
    evaluations = [e for e in read_evaluations(weights.run_dir) if e.get("weights") == weights.name]
    front = ["---"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front.append(f"library_name: {'transformers' if merged or not weights.is_adapter else 'peft'}")
    if license_name:
        front.append(f"license: {license_name if re.fullmatch(r'[a-z0-9.-]+', license_name) else 'other'}")
    front += ["pipeline_tag: text-generation", "tags:", "- tunedeck", "- sft", f"- {cfg.method_label}", "---", ""]
    what = ("merged model (the adapter folded into the base weights)" if merged and weights.is_adapter
            else "LoRA adapter" if weights.is_adapter else "fully fine-tuned model")
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"A {what} of **{base}**, fine-tuned with tunedeck ({cfg.method_label}, "
             f"supervised fine-tuning) on `{cfg.dataset}`. Weights: {weights.label} of run `{weights.run_dir.name}`.", ""]
    if merged and cfg.quantization_bit:
        lines += [f"The adapter was trained on the base quantized to {cfg.quantization_bit} bits (QLoRA) and merged "
                  "into the base loaded in 16 bits.", ""]
    lines += ["## Training", "", "| | |", "|---|---|",
              f"| Base model | {base} |",
              f"| Base model license | {license_name or 'see the base model'} |",
              f"| Method | {cfg.method_label} |",
              f"| Dataset | {cfg.dataset} ({_fmt(facts.get('train_rows'))} training rows, "
              f"{_fmt(facts.get('eval_rows'))} validation rows) |",
              f"| Steps | {_fmt(facts.get('steps'))} |",
              f"| Training time | {_duration(facts.get('training_seconds'))} |",
              f"| Hardware | {facts.get('hardware', 'n/a')}, {facts.get('precision') or 'n/a'} |",
              f"| Final train loss | {_fmt(facts.get('final_train_loss'))} |",
              f"| Final eval loss | {_fmt(facts.get('final_eval_loss'))} |", "",
              "### Hyperparameters", "", "| | |", "|---|---|"]
    data = cfg.to_dict()
    for name in _HYPERPARAMETERS:
        if name in data and data[name] is not None and not (name.startswith(("lora_", "use_")) and
                                                            cfg.finetuning_type != "lora"):
            value = data[name]
            lines.append(f"| {name} | {', '.join(value) if isinstance(value, list) else value} |")
    if facts.get("effective_batch_size"):
        lines.append(f"| effective batch size | {facts['effective_batch_size']} |")
    lines.append("")
    if evaluations:
        lines += ["## Evaluation", "", "| Data | Rows | Eval loss | Perplexity | Base eval loss | Base perplexity |",
                  "|---|---|---|---|---|---|"]
        for e in evaluations:
            lines.append(f"| {e.get('dataset')} | {e.get('rows')} | {_fmt(e.get('eval_loss'))} | "
                         f"{_fmt(e.get('perplexity'))} | {_fmt(e.get('base_eval_loss'))} | "
                         f"{_fmt(e.get('base_perplexity'))} |")
        samples = evaluations[-1].get("samples") or []
        if samples:
            lines += ["", "Greedy answers on the first evaluated rows:", "",
                      "| Prompt | Reference | Base | Fine-tuned |", "|---|---|---|---|"]
            for s in samples:
                cells = [_cell(s.get(k, "")) for k in ("prompt", "reference", "base", "tuned")]
                lines.append(f"| {' | '.join(cells)} |")
        lines.append("")
    lines += ["## How to load it", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if weights.is_adapter and not merged:
        lines += ["from peft import PeftModel", "",
                  f"base = AutoModelForCausalLM.from_pretrained(\"{hub_base or 'PATH/TO/' + Path(base).name}\")",
                  f"model = PeftModel.from_pretrained(base, \"{repo_id}\")",
                  f"tokenizer = AutoTokenizer.from_pretrained(\"{repo_id}\")"]
    else:
        lines += ["", f"model = AutoModelForCausalLM.from_pretrained(\"{repo_id}\")",
                  f"tokenizer = AutoTokenizer.from_pretrained(\"{repo_id}\")"]
    lines += ["messages = [{\"role\": \"user\", \"content\": \"Hello!\"}]",
              "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
              "return_dict=True)",
              "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=128)[0][inputs[\"input_ids\"].shape[1]:],"
              " skip_special_tokens=True))", "```", ""]
    return "\n".join(front + lines)


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def upload_files(run_dir: str | Path, checkpoint: Optional[str] = None,
                 merged: bool = False) -> list[tuple[str, Optional[Path]]]:
    """(path in the repository, local file) of a push; a merged model's files are made at push time (None)."""
    weights = resolve_weights(run_dir, checkpoint)
    files: list[tuple[str, Optional[Path]]] = [("README.md", None)]
    if merged or not weights.is_adapter:
        files += [(name, None) for name in ("config.json", "generation_config.json", "model*.safetensors "
                                            "(merged at push time)", "tokenizer.json", "tokenizer_config.json")]
    else:
        template = adapter_chat_template(weights)
        files += [(path.name, path) for path in adapter_files(weights)
                  if path.name != "README.md" and not (template and path.name == "chat_template.jinja")]
        if template:
            files.append(("chat_template.jinja", None))  # the template the run trained with
    return files


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PublishError(f"no Hugging Face token: set the {TOKEN_ENV} environment variable (a write token from "
                           "https://huggingface.co/settings/tokens) before starting tunedeck")
    return token


def _network_error(exc: BaseException) -> PublishError:
    text = f"{type(exc).__name__}: {exc}"
    if any(s in text for s in ("401", "403", "Unauthorized", "Invalid user token", "Forbidden")):
        return PublishError(f"the Hub refused the token in {TOKEN_ENV} (it needs write access to the repository)")
    lowered = text.lower()
    if any(s in lowered for s in ("offline", "connect", "resolve", "network", "timed out", "unreachable",
                                  "max retries", "name or service")):
        return PublishError("cannot reach the Hugging Face Hub (no network); nothing was pushed")
    return PublishError(f"the push failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def push(run_dir: str | Path, repo_id: str, *, merged: bool = False, private: bool = False,
         commit_message: Optional[str] = None, checkpoint: Optional[str] = None,
         progress: Optional[Callable[[str], None]] = None) -> str:
    """Create (or reuse) the repository and upload the adapter or the merged model with its card; the URL."""
    say = progress or (lambda text: None)
    repo_id = check_repo_id(repo_id)
    weights: RunWeights = resolve_weights(run_dir, checkpoint)
    card = model_card(run_dir, repo_id, checkpoint, merged)
    files = upload_files(run_dir, checkpoint, merged)
    token = _token()
    if hub_offline():
        raise PublishError("cannot reach the Hugging Face Hub: HF_HUB_OFFLINE is set (no network); nothing was pushed")
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    try:
        say(f"checking the token and creating {repo_id}")
        api.whoami()
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    except Exception as exc:  # noqa: BLE001 — any failure here is reported as one sentence
        raise _network_error(exc) from None
    message = (commit_message or "").strip() or f"Upload {weights.label} of tunedeck run {weights.run_dir.name}"
    with tempfile.TemporaryDirectory(prefix="tunedeck-push-") as tmp:
        operations = [CommitOperationAdd("README.md", card.encode("utf-8"))]
        if merged or not weights.is_adapter:
            merged_dir = Path(tmp) / "merged"
            merge_run(weights.run_dir, merged_dir, weights.name, progress=say)
            operations += [CommitOperationAdd(p.name, str(p)) for p in sorted(merged_dir.iterdir())
                           if p.is_file() and p.name != "README.md"]
        else:
            operations += [CommitOperationAdd(name, str(path)) for name, path in files if path is not None]
            template = adapter_chat_template(weights)
            if template:
                operations.append(CommitOperationAdd("chat_template.jinja", template.encode("utf-8")))
        say(f"uploading {len(operations)} files to {repo_id}")
        try:
            info = api.create_commit(repo_id, operations, commit_message=message, token=token)
        except Exception as exc:  # noqa: BLE001
            raise _network_error(exc) from None
    return getattr(info, "repo_url", None) or f"https://huggingface.co/{repo_id}"
