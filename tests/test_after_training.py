"""After training, for real: one short LoRA training of the demo model, then chat (in-process and through
the worker), evaluate, merge, the adapter zip, the model card and push, and the commands' exit codes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer.config import TrainConfig
from trainer.engine.artifacts import BASE, TUNED, AfterTrainingError, list_weights, load_run, resolve_weights
from trainer.engine.chat import GenerationSettings, build_prompt, conversation, stream_reply
from trainer.engine.train import run_training
from trainer.jobs.workers import ChatWorker, GPUBusyError, busy_reason, gpus_needed_by_training
from trainer.run.events import read_events

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # one real training, then real loading, generation and subprocesses

TINY = dict(model_name_or_path="demo", dataset="demo", max_samples=48, val_size=8, cutoff_len=64,
            per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=6, learning_rate=0.02,
            warmup_ratio=0.0, lora_rank=8, lora_alpha=16, eval_strategy="steps", eval_steps=3, save_steps=3,
            logging_steps=1, gradient_checkpointing=False)
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24)
PROMPT = "What is the capital of Germany?"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("after") / "run"
    assert run_training(TrainConfig.from_dict(TINY), run_dir) == 0
    return run_dir


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_run(resolve_weights(run_dir))


@pytest.fixture(scope="module")
def evaluated(run_dir, loaded):
    """The final adapter evaluated once, stored in the run's evaluation.json."""
    from trainer.engine.evaluate import evaluate_loaded, save_evaluation

    result = evaluate_loaded(loaded, sample_rows=2, max_new_tokens=12)
    save_evaluation(run_dir, result)
    return result


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=300)


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --- resolving weights ---------------------------------------------------------------------------

def test_every_checkpoint_is_usable_and_a_run_without_weights_is_refused(run_dir, tmp_path):
    assert list_weights(run_dir) == ["adapter", "checkpoint-6", "checkpoint-3"]
    assert resolve_weights(run_dir, "3").path == run_dir / "checkpoints" / "checkpoint-3"
    with pytest.raises(AfterTrainingError, match="no usable weights named 'checkpoint-9'.*adapter, checkpoint-6"):
        resolve_weights(run_dir, "checkpoint-9")
    with pytest.raises(AfterTrainingError, match="no usable weights named '../adapter'"):
        resolve_weights(run_dir, "../adapter")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    with pytest.raises(AfterTrainingError, match="no adapter and no checkpoint"):
        resolve_weights(bare)
    with pytest.raises(AfterTrainingError, match="not a run directory"):
        resolve_weights(tmp_path)


# --- chat ----------------------------------------------------------------------------------------

def test_the_prompt_is_the_training_rendering_up_to_the_answer(loaded):
    from trainer.datasets import tokenize_example

    messages = conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                            PROMPT, system_prompt="Be brief.")
    prompt = build_prompt(loaded, messages)
    trained = tokenize_example({"messages": [*messages, {"role": "assistant", "content": "Berlin."}]},
                               loaded.tokenizer, loaded.cfg, truncate=False)
    first_answer_token = trained.completion_mask.index(1, len(prompt.input_ids) - 1)
    assert trained.input_ids[:len(prompt.input_ids)] == prompt.input_ids
    assert first_answer_token == len(prompt.input_ids)  # the prompt ends exactly where the loss started
    assert prompt.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.stop == "<|im_end|>"


def test_tuned_and_base_stream_several_chunks_and_differ(loaded):
    messages = conversation([], PROMPT)
    tuned = list(stream_reply(loaded, messages, GREEDY, TUNED))
    base = list(stream_reply(loaded, messages, GREEDY, BASE))
    assert len(tuned) >= 3 and len(base) >= 3
    assert "".join(tuned).strip() and "".join(base).strip()
    assert "".join(tuned) != "".join(base)
    assert "".join(stream_reply(loaded, messages, GREEDY, TUNED)) == "".join(tuned)  # greedy: the same again
    # Both at once from one copy of the weights: each thread's forwards see its own side of the adapter.
    together: dict[str, str] = {}
    threads = [threading.Thread(target=lambda w=which: together.__setitem__(
        w, "".join(stream_reply(loaded, messages, GREEDY, w)))) for which in (TUNED, BASE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == {TUNED: "".join(tuned), BASE: "".join(base)}


def test_generation_settings_name_the_bad_field():
    with pytest.raises(AfterTrainingError, match="temperature: 9 is out of range"):
        GenerationSettings.from_dict({"temperature": 9})
    with pytest.raises(AfterTrainingError, match="max_new_tokens: expected a whole number"):
        GenerationSettings.from_dict({"max_new_tokens": "many"})
    with pytest.raises(AfterTrainingError, match="top_k: not a generation setting"):
        GenerationSettings.from_dict({"top_k": 5})
    with pytest.raises(AfterTrainingError, match="history turn 1"):
        conversation([{"role": "robot", "content": "x"}], "hi")
    # Bytes a terminal passed through undecoded (`chat --prompt $'a\xffb'`) are surrogate escapes.
    with pytest.raises(AfterTrainingError, match="message: not UTF-8 text"):
        conversation([], "a\udcffb")
    with pytest.raises(AfterTrainingError, match="system turn 1: not UTF-8 text"):
        conversation([], "hi", "be brief\udcff")
    assert GenerationSettings.from_dict({"max_new_tokens": "12", "temperature": ""}).max_new_tokens == 12


def test_chat_through_the_worker_leaves_the_caller_without_torch(run_dir):
    script = textwrap.dedent(f"""
        import json, sys
        from trainer.jobs.workers import ChatWorker, WorkerError
        worker = ChatWorker(idle_timeout_s=120)
        events = list(worker.load({str(run_dir)!r}, checkpoint="checkpoint-6"))
        chunks = {{"tuned": 0, "base": 0}}
        ends = {{}}
        for event in worker.chat({PROMPT!r}, [], {{"temperature": 0, "max_new_tokens": 24}},
                                 models=["tuned", "base"]):
            if event["type"] == "chunk":
                chunks[event["model"]] += 1
                if event["model"] == "base" and "tuned" not in ends:
                    chunks["base_before_tuned_end"] = True
            elif event["type"] == "end":
                ends[event["model"]] = event["text"]
        try:
            list(worker.chat("x", settings={{"top_p": 7}}))
            error = None
        except WorkerError as exc:
            error = str(exc)
        stream = worker.chat("x", [{{"role": "user", "content": "hi"}}, {{"role": "assistant", "content": "hello"}}],
                             {{"max_new_tokens": 500}})
        next(stream)
        stream.close()  # stops the generation; the worker keeps serving
        again = [e for e in worker.chat({PROMPT!r}, settings={{"temperature": 0, "max_new_tokens": 24}})
                 if e["type"] == "end"]
        pid = worker.status()["pid"]
        worker.unload()
        print(json.dumps({{"progress": [e["type"] for e in events], "chunks": chunks, "ends": ends, "error": error,
                          "again": again[0]["text"], "torch": "torch" in sys.modules, "pid": pid,
                          "after_unload": worker.status()}}))
        worker.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["torch"] is False  # the model lived in the worker
    assert result["progress"][-1] == "loaded" and "progress" in result["progress"]
    assert result["chunks"]["tuned"] >= 3 and result["chunks"]["base"] >= 3
    assert result["chunks"].get("base_before_tuned_end")  # the two columns stream side by side
    assert result["ends"]["tuned"] != result["ends"]["base"]
    assert result["again"] == result["ends"]["tuned"]  # generating beside the base changed nothing
    assert result["error"] == "top_p: 7 is out of range (0.01 to 1)"
    assert result["pid"] and result["after_unload"]["loaded"] is None and result["after_unload"]["pid"] is None


def test_training_on_the_gpu_keeps_the_chat_model_off_it():
    def run(id, status, gpu=None):
        return SimpleNamespace(id=id, status=status, gpu=gpu)

    assert gpus_needed_by_training([], [run("a", "running")]) == ([], ["a"])  # CPU only: nothing to share
    assert gpus_needed_by_training(["0", "1"], [run("a", "running", "0")]) == (["0"], ["a"])
    assert gpus_needed_by_training(["0", "1"], [run("a", "running", "0"), run("b", "queued")])[0] == ["0", "1"]
    assert gpus_needed_by_training(["0", "1"], [run("b", "queued")], max_concurrent=1)[0] == ["0"]
    assert "b is queued for it" in busy_reason([run("b", "queued")])

    class Jobs:  # the registry's answer while a run trains on the only GPU
        max_concurrent = 1

        def list_runs(self, status=None):
            return [run("20261201-120000-abcdef", "running", "0")]

    worker = ChatWorker(jobs=Jobs(), gpus=["0"])
    try:
        with pytest.raises(GPUBusyError, match="training run 20261201-120000-abcdef is using it") as refused:
            list(worker.load("/nonexistent"))
        assert refused.value.runs == ["20261201-120000-abcdef"]
        waiting = worker.load("/nonexistent", wait=True, poll_s=0.01, wait_timeout_s=0.05)
        assert next(waiting)["type"] == "waiting"
        with pytest.raises(GPUBusyError):
            list(waiting)
        assert worker.status()["pid"] is None  # nothing was started
    finally:
        worker.close()


# --- evaluate ------------------------------------------------------------------------------------

def test_evaluate_equals_a_hand_computation_and_is_stored(run_dir, loaded, evaluated):
    import torch

    from trainer.engine.evaluate import evaluation_rows, read_evaluations

    result = evaluated
    _, rows, _ = evaluation_rows(loaded)
    assert result["rows"] == len(rows) == 8
    total = count = 0.0
    with torch.no_grad():
        for which, key in ((TUNED, "eval_loss"), (BASE, "base_eval_loss")):
            total = count = 0.0
            with loaded.use(which) as model:
                for row in rows:
                    ids = torch.tensor([row["input_ids"]])
                    labels = torch.tensor([[t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"])]])
                    n = int((labels[0, 1:] != -100).sum())
                    total += float(model(input_ids=ids, labels=labels).loss) * n
                    count += n
            assert result[key] == pytest.approx(total / count, rel=1e-5)
    assert result["tokens"] == count
    assert result["perplexity"] == pytest.approx(math.exp(result["eval_loss"]))
    assert result["base_perplexity"] == pytest.approx(math.exp(result["base_eval_loss"]))
    assert result["eval_loss"] < result["base_eval_loss"]  # the adapter learned the task
    assert len(result["samples"]) == 2 and set(result["samples"][0]) == {"prompt", "reference", "base", "tuned"}
    stored = [e for e in read_evaluations(run_dir) if e["weights"] == "adapter"]
    assert stored[-1]["eval_loss"] == result["eval_loss"]


def test_evaluate_command_prints_the_numbers_and_refuses_a_run_without_validation(run_dir, tmp_path):
    proc = cli("evaluate", str(run_dir), "--json", "--samples", "0", "--checkpoint", "checkpoint-3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert {"eval_loss", "perplexity", "base_eval_loss", "base_perplexity", "rows"} <= set(result)
    assert result["weights"] == "checkpoint-3" and result["rows"] == 8
    no_val = tmp_path / "noval"
    shutil.copytree(run_dir, no_val)
    cfg = TrainConfig.from_yaml(no_val / "config.yaml").replace(val_size=0, eval_strategy="no")
    cfg.save(no_val / "config.yaml")
    proc = cli("evaluate", str(no_val))
    assert proc.returncode == 2 and "no validation split" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("evaluate", str(no_val), "--dataset", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr
    # Another dataset for a run that trained with evaluation on: all its rows, the run's eval settings aside.
    # (On a copy: the evaluation is stored in the run, and the model card test reads the run's.)
    with_eval = tmp_path / "with-eval"
    shutil.copytree(run_dir, with_eval)
    proc = cli("evaluate", str(with_eval), "--dataset", "demo-chat", "--max-rows", "4", "--samples", "0", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["rows"] == 4


def test_a_damaged_adapter_is_one_line_naming_it_for_chat_evaluate_and_merge(run_dir, tmp_path):
    from trainer.engine.merge import merge_run

    for damage in ("empty weights", "random weights", "config without peft_type"):
        bad = tmp_path / damage.replace(" ", "-")
        shutil.copytree(run_dir, bad)
        adapter = bad / "adapter"
        if damage == "empty weights":
            (adapter / "adapter_model.safetensors").write_bytes(b"")
        elif damage == "random weights":
            (adapter / "adapter_model.safetensors").write_bytes(os.urandom(1000))
        else:
            (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
        with pytest.raises(AfterTrainingError, match="the adapter does not load on demo") as refused:
            load_run(resolve_weights(bad))  # what chat and evaluate load
        assert str(adapter) in str(refused.value) and "\n" not in str(refused.value), damage
        with pytest.raises(AfterTrainingError, match="the adapter does not load on demo"):
            merge_run(bad, tmp_path / f"merged-{bad.name}")
        assert not (tmp_path / f"merged-{bad.name}").exists()
    proc = cli("evaluate", str(tmp_path / "random-weights"), "--samples", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "does not load" in proc.stderr


# --- merge and export ----------------------------------------------------------------------------

def test_merged_model_loads_alone_and_equals_base_plus_adapter(run_dir, loaded, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = snapshot(run_dir)
    out = tmp_path / "merged"
    proc = cli("merge", str(run_dir), str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(out.glob("model*.safetensors")) and (out / "generation_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        for text in (PROMPT, "Reverse the order of these words: apple pear", "Count to five."):
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            difference = (merged(ids).logits - loaded.model(ids).logits).abs().max().item()
            assert difference < 1e-4, difference
    assert snapshot(run_dir) == before  # nothing in the run changed
    again = cli("merge", str(run_dir), str(out))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_merge_of_a_run_without_weights_exits_2_and_changes_nothing(run_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    before = snapshot(bare)
    proc = cli("merge", str(bare), str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no adapter and no checkpoint" in proc.stderr
    assert snapshot(bare) == before and not (tmp_path / "out").exists()


def test_gguf_without_the_converter_is_a_clear_message(tmp_path, monkeypatch):
    from trainer.engine.merge import export_gguf

    monkeypatch.setenv("TUNEDECK_LLAMA_CPP", str(tmp_path / "no-llama.cpp"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AfterTrainingError, match="GGUF export needs llama.cpp's convert_hf_to_gguf.py"):
        export_gguf(tmp_path, tmp_path / "model.gguf")


def test_adapter_zip_holds_the_adapter_without_optimizer_state(run_dir, tmp_path):
    from trainer.engine.merge import adapter_zip

    path = adapter_zip(run_dir, tmp_path / "a.zip", "checkpoint-3")
    names = {Path(n).name for n in zipfile.ZipFile(path).namelist()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tunedeck-config.yaml"} <= names
    assert "optimizer.pt" not in names


# --- publish -------------------------------------------------------------------------------------

def test_model_card_holds_the_runs_real_numbers(run_dir, evaluated, tmp_path):
    from trainer.interop.hub import model_card, run_numbers

    events = read_events(run_dir)
    last_loss = [e for e in events if e["type"] == "log"][-1]["loss"]
    last_eval = [e for e in events if e["type"] == "eval"][-1]["eval_loss"]
    card = model_card(run_dir, "me/demo-lora")
    assert f"| Final train loss | {last_loss:.4g} |" in card
    assert f"| Final eval loss | {last_eval:.4g} |" in card
    assert "| Steps | 6 |" in card and "| lora_rank | 8 |" in card and "| learning_rate | 0.02 |" in card
    assert "| Hardware | CPU, fp32 |" in card and "Training time | 0m 0" in card
    assert 'PeftModel.from_pretrained(base, "me/demo-lora")' in card
    assert (f"| validation split | 8 | {evaluated['eval_loss']:.4g} | {evaluated['perplexity']:.4g} | "
            f"{evaluated['base_eval_loss']:.4g} | {evaluated['base_perplexity']:.4g} |") in card
    assert evaluated["samples"][0]["reference"] in card
    assert run_numbers(run_dir)["train_rows"] == 40
    catalog_run = tmp_path / "qwen"
    shutil.copytree(run_dir, catalog_run)
    cfg = TrainConfig.from_yaml(catalog_run / "config.yaml").replace(model_name_or_path="Qwen/Qwen2.5-0.5B")
    cfg.save(catalog_run / "config.yaml")
    card = model_card(catalog_run, "me/qwen-lora")
    assert "base_model: Qwen/Qwen2.5-0.5B" in card and "license: apache-2.0" in card


def test_push_without_token_or_network_exits_2_and_changes_nothing(run_dir):
    before = snapshot(run_dir)
    env = {"HF_TOKEN": ""}
    proc = cli("push", str(run_dir), "me/demo-lora", env=env)
    assert proc.returncode == 2 and "HF_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("push", str(run_dir), "me/demo-lora", env={"HF_TOKEN": "hf_secret_value", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "no network" in proc.stderr and "hf_secret_value" not in proc.stderr
    proc = cli("push", str(run_dir), "not a repo")
    assert proc.returncode == 2 and "repo_id" in proc.stderr
    dry = cli("push", str(run_dir), "me/demo-lora", "--dry-run", env=env)
    assert dry.returncode == 0 and dry.stdout.startswith("---\nlibrary_name: peft")
    assert "adapter_model.safetensors\t" in dry.stdout and "optimizer.pt" not in dry.stdout
    assert snapshot(run_dir) == before


def test_chat_command_with_a_checkpoint_and_the_base(run_dir, tmp_path):
    tuned = cli("chat", str(run_dir), "--checkpoint", "checkpoint-3", "--prompt", PROMPT, "--temperature", "0",
                "--max-new-tokens", "16")
    base = cli("chat", str(run_dir), "--base", "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "16")
    assert tuned.returncode == 0 and base.returncode == 0, tuned.stderr[-2000:] + base.stderr[-2000:]
    assert tuned.stdout.strip() and base.stdout.strip() and tuned.stdout != base.stdout
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    cfg = TrainConfig.from_yaml(moved / "config.yaml").replace(model_name_or_path=str(tmp_path / "gone"))
    cfg.save(moved / "config.yaml")
    proc = cli("chat", str(moved), "--prompt", "hi")
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr
