"""The training subprocess, for real: the tiny demo model trained on the CPU with LoRA and 4-bit QLoRA.

Settings are tiny (a few steps, short rows) so the whole file stays around a minute on 2 cores.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.run.events import ABORTED, FAILED, FINISHED, number, read_events
from trainer.engine.train import run_training
from trainer.run.layout import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # real training on the CPU (still runs in CI)

TINY = dict(
    model_name_or_path="demo",
    dataset="demo",
    max_samples=48,
    val_size=8,
    cutoff_len=64,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    max_steps=6,
    learning_rate=0.005,
    warmup_ratio=0.0,
    lora_rank=8,
    lora_alpha=16,
    eval_strategy="steps",
    eval_steps=3,
    save_steps=3,
    logging_steps=1,
    gradient_checkpointing=False,
)


def tiny(**changes) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **changes})


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


def final_status(events):
    statuses = of_type(events, "status")
    assert statuses, "no status event"
    return statuses[-1]


def losses(events):
    return [number(e["loss"]) for e in of_type(events, "log")]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    code = run_training(tiny(), run_dir)
    return code, run_dir, read_events(run_dir)


def test_lora_trains_saves_an_adapter_and_writes_every_event(lora_run):
    code, run_dir, events = lora_run
    assert code == 0
    status = final_status(events)
    assert status["status"] == FINISHED and status["step"] == 6
    types = {e["type"] for e in events}
    assert {"plan", "log", "eval", "checkpoint", "memory", "status"} <= types
    assert events[-1]["type"] == "status"  # the final status is the last word

    plan = of_type(events, "plan")[0]["plan"]
    assert plan["effective_batch_size"] == 4 and plan["total_steps"] == 6 and plan["precision"] == "fp32"

    logs = of_type(events, "log")
    assert [e["step"] for e in logs] == [1, 2, 3, 4, 5, 6]
    first = logs[0]
    for key in ("epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "samples_per_second"):
        assert key in first, key
    assert first["memory"]["device"] == "cpu" and first["memory"]["rss_gb"] > 0
    values = losses(events)
    assert all(math.isfinite(v) for v in values)
    assert sum(values[-2:]) / 2 < sum(values[:2]) / 2 - 0.3, f"loss did not fall: {values}"

    evals = of_type(events, "eval")
    assert [e["step"] for e in evals] == [3, 6] and all(e["eval_loss"] > 0 for e in evals)
    checkpoints = of_type(events, "checkpoint")
    assert [e["step"] for e in checkpoints] == [3, 6]
    assert Path(checkpoints[-1]["path"]).is_dir()

    assert (run_dir / "config.yaml").is_file()
    assert TrainConfig.from_yaml(run_dir / "config.yaml").max_steps == 6
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_the_adapter_loads_with_peft_and_changes_the_output(lora_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.engine.demo import ensure_demo_model

    _, run_dir, _ = lora_run
    adapter = run_dir / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter)  # the tokenizer is saved alongside
    base = AutoModelForCausalLM.from_pretrained(ensure_demo_model())
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter)
        after = tuned(ids).logits
    assert not torch.allclose(before, after, atol=1e-4), "the trained adapter changes nothing"


def test_resume_from_last_checkpoint_continues_the_step_count(lora_run):
    _, run_dir, events = lora_run
    assert latest_checkpoint(run_dir).name == "checkpoint-6"
    before = len(events)
    code = run_training(tiny(max_steps=8, resume_from_checkpoint="last"), run_dir)
    assert code == 0
    new = read_events(run_dir)[before:]
    assert of_type(new, "plan")[0]["resume_from"].endswith("checkpoint-6")
    assert [e["step"] for e in of_type(new, "log")] == [7, 8]
    assert final_status(new)["status"] == FINISHED and final_status(new)["step"] == 8


def test_qlora_4bit_trains_and_its_adapter_loads(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from trainer.engine.demo import ensure_demo_model

    run_dir = tmp_path / "qlora"
    code = run_training(tiny(quantization_bit=4, eval_strategy="no", save_strategy="no", max_steps=5), run_dir)
    events = read_events(run_dir)
    assert code == 0, final_status(events)
    values = losses(events)
    assert len(values) == 5 and sum(values[-2:]) / 2 < sum(values[:2]) / 2 - 0.3, values
    assert any("qlora-4bit" in str(e) for e in of_type(events, "plan")) or \
        TrainConfig.from_yaml(run_dir / "config.yaml").quantization_bit == 4
    base = AutoModelForCausalLM.from_pretrained(
        ensure_demo_model(), quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
        device_map={"": "cpu"})
    assert type(base.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = PeftModel.from_pretrained(base, run_dir / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_abort_file_stops_at_the_next_step_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "abort"
    run_dir.mkdir()

    def touch_abort_after_two_steps():
        deadline = time.time() + 120
        while time.time() < deadline:
            if sum(1 for e in read_events(run_dir) if e["type"] == "log") >= 2:
                (run_dir / "ABORT").touch()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=touch_abort_after_two_steps, daemon=True)
    watcher.start()
    code = run_training(tiny(max_steps=400, eval_strategy="no", save_steps=1000, max_samples=None), run_dir)
    watcher.join(timeout=5)
    events = read_events(run_dir)
    status = final_status(events)
    assert code == 3 and status["status"] == ABORTED, status
    step = status["step"]
    assert 2 <= step < 400
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{step}"
    assert of_type(events, "checkpoint")[-1]["step"] == step
    assert not (run_dir / "adapter").exists()


def test_abort_file_and_sigterm_on_a_real_subprocess_end_aborted_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "sigterm"
    config = tmp_path / "config.yaml"
    tiny(max_steps=400, eval_strategy="no", save_steps=1000, max_samples=None).save(config)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(tmp_path / "stdout.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", str(config), "--run-dir", str(run_dir)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if sum(1 for e in read_events(run_dir) if e["type"] == "log") >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "stdout.log").read_text()[-3000:]
        # The job manager's protocol: the ABORT file, then SIGTERM (without a handler SIGTERM would kill it: -15).
        (run_dir / "ABORT").touch()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    events = read_events(run_dir)
    status = final_status(events)
    assert code == 3 and status["status"] == ABORTED, (tmp_path / "stdout.log").read_text()[-3000:]
    assert "SIGTERM" in status["reason"] or "abort requested" in status["reason"]
    assert latest_checkpoint(run_dir) is not None
    assert latest_checkpoint(run_dir).name == f"checkpoint-{status['step']}"


_SIGNAL_STORM = """
import os, signal, sys, threading, time
from trainer.engine.telemetry import AbortSignal

run_dir = sys.argv[1]
abort = AbortSignal(run_dir)
abort.install()
stop = False

def storm():  # the launcher's SIGTERM, the manager's, a user's kill: several, at any moment
    while not stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.0002)

threading.Thread(target=storm, daemon=True).start()
checks, deadline = 0, time.time() + 1.5
open(os.path.join(run_dir, "ABORT"), "w").close()
while time.time() < deadline:  # what every step end does: is there an abort request?
    abort.request("stopped by the user (abort requested)")
    checks += abort.requested
stop = True
print("checks", checks, abort.reason)
"""


def test_a_storm_of_sigterms_while_the_abort_is_being_recorded_never_hangs_the_run(tmp_path):
    # A distributed run's ranks get SIGTERM from the launcher and from the manager while their main thread
    # may be recording the ABORT file's request: a handler that took a lock there deadlocked the rank.
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_STORM, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    checks, _, reason = proc.stdout.strip().partition(" ")[2].partition(" ")
    assert int(checks) > 1000 and reason in ("stopped by SIGTERM", "stopped by the user (abort requested)")


def test_injected_oom_is_classified_with_advice_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_FAULT", "oom@2")
    run_dir = tmp_path / "oom"
    code = run_training(tiny(per_device_train_batch_size=4, gradient_accumulation_steps=2, eval_strategy="no",
                             cutoff_len=512), run_dir)
    status = final_status(read_events(run_dir))
    assert code == 1 and status["status"] == FAILED and status["kind"] == "oom"
    assert status["reason"].startswith("Out of memory")
    advice = " ".join(status["advice"])
    assert "per_device_train_batch_size 4 → 2" in advice
    assert "gradient_accumulation_steps 2 → 4" in advice and "effective batch at 8" in advice
    assert "cutoff_len 512 → 256" in advice and "gradient_checkpointing" in advice and "quantization_bit 4" in advice
    assert status["step"] == 1  # the first step finished, the second ran out of memory
    assert status["log_tail"], "the failure carries the last lines of the log"


def test_injected_nan_loss_stops_the_run_as_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_FAULT", "nan@3")
    run_dir = tmp_path / "nan"
    code = run_training(tiny(max_steps=10, eval_strategy="no", save_steps=1000), run_dir)
    events = read_events(run_dir)
    status = final_status(events)
    assert code == 1 and status["status"] == FAILED and status["kind"] == "nan"
    assert "NaN" in status["reason"] and "step 3" in status["reason"]
    assert any("learning_rate 0.005 → 0.0025" in a for a in status["advice"])
    assert math.isnan(losses(events)[-1]) and status["step"] == 3  # stopped at once, not after 10 steps


def test_missing_model_and_dataset_fail_with_a_clear_reason(tmp_path):
    code = run_training(tiny(model_name_or_path=str(tmp_path / "no-such-model")), tmp_path / "m")
    status = final_status(read_events(tmp_path / "m"))
    assert code == 2 and status["kind"] == "not_found" and "does not exist" in status["reason"]

    code = run_training(tiny(model_name_or_path="nobody/no-such-model-xyz"), tmp_path / "hub")
    status = final_status(read_events(tmp_path / "hub"))
    assert code == 2 and "Hub is unreachable" in status["reason"]

    code = run_training(tiny(dataset=str(tmp_path / "missing.jsonl")), tmp_path / "d")
    status = final_status(read_events(tmp_path / "d"))
    assert code == 2 and status["status"] == FAILED and "missing.jsonl" in status["reason"]


def test_classify_failure_reasons_without_training():
    import torch

    from trainer.engine.telemetry import NaNLossError, classify_failure, failure_kind, oom_advice

    cfg = tiny(per_device_train_batch_size=8, gradient_accumulation_steps=4, cutoff_len=2048,
               gradient_checkpointing=False)
    reason, advice = classify_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB"), cfg)
    assert "Out of memory" in reason
    assert advice[0].startswith("Halve the micro-batch") and "8 → 4" in advice[0] and "4 → 8" in advice[0]
    assert any("cutoff_len 2048 → 1024" in a for a in advice)
    assert failure_kind(torch.OutOfMemoryError("x")) == "oom"
    # At micro-batch 1 there is nothing to halve: the advice moves to the other knobs.
    one = oom_advice(tiny(per_device_train_batch_size=1, quantization_bit=4, gradient_checkpointing=True))
    assert not any("Halve" in a for a in one) and one
    reason, _ = classify_failure(NaNLossError(7), cfg)
    assert "NaN" in reason and "step 7" in reason
    from jinja2 import TemplateError

    reason, advice = classify_failure(TemplateError("'messages' is undefined"), cfg)
    assert "chat template" in reason and "template" in advice[0]
    assert failure_kind(TemplateError("x")) == "template"
    reason, advice = classify_failure(RuntimeError("something odd"), cfg, ["line 1", "line 2"])
    assert reason == "RuntimeError: something odd" and advice


def test_early_stopping_ends_the_run_when_eval_loss_stops_improving(tmp_path):
    # A threshold no eval can beat: the first eval sets the best, the next one without improvement stops.
    cfg = tiny(max_steps=30, eval_steps=1, save_steps=1, early_stopping_patience=1, early_stopping_threshold=100.0,
               load_best_model_at_end=True, save_total_limit=2)
    code = run_training(cfg, tmp_path / "early")
    events = read_events(tmp_path / "early")
    status = final_status(events)
    assert code == 0 and status["status"] == FINISHED
    assert status["step"] == 2 and len(of_type(events, "eval")) == 2
    # load_best_model_at_end kept the checkpoint with the lowest eval loss (saved at every eval).
    assert Path(status["best_checkpoint"]).name in ("checkpoint-1", "checkpoint-2")
    assert (tmp_path / "early" / "adapter" / "adapter_config.json").is_file()


def test_a_broken_chat_template_is_named_as_the_reason(tmp_path):
    import shutil

    from trainer.engine.demo import ensure_demo_model

    model_dir = tmp_path / "model"
    shutil.copytree(ensure_demo_model(), model_dir)
    (model_dir / "chat_template.jinja").write_text("{% for message in messages %}{{ message['content'] }",
                                                   encoding="utf-8")
    code = run_training(tiny(model_name_or_path=str(model_dir)), tmp_path / "run")
    status = final_status(read_events(tmp_path / "run"))
    assert code == 2 and status["status"] == FAILED and status["kind"] == "template"
    assert "chat template" in status["reason"] and any("template" in a for a in status["advice"])


def test_oom_advice_keeps_the_effective_batch_exactly_for_odd_micro_batches():
    from trainer.engine.telemetry import oom_advice

    first = oom_advice(tiny(per_device_train_batch_size=9, gradient_accumulation_steps=2))[0]
    assert "per_device_train_batch_size 9 → 3" in first and "gradient_accumulation_steps 2 → 6" in first
    assert "effective batch at 18" in first


def test_a_lora_target_the_model_lacks_is_refused_not_silently_dropped(tmp_path):
    # PEFT adapts the names it finds and ignores the others: q_proj alone would have trained here.
    run_dir = tmp_path / "typo"
    code = run_training(tiny(lora_target=["q_proj", "v_prj"]), run_dir)
    status = final_status(read_events(run_dir))
    assert code == 2 and status["status"] == FAILED and status["kind"] == "config"
    assert "lora_target" in status["reason"] and "v_prj (did you mean v_proj?)" in status["reason"]
    assert "q_proj (did" not in status["reason"]  # the name it has is not blamed
    assert run_training(tiny(lora_target=["q_proj", "v_proj"], max_steps=1, eval_strategy="no"),
                        tmp_path / "right") == 0


def test_an_abort_before_training_stops_after_tokenizing_without_loading_the_model(tmp_path):
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    (run_dir / "ABORT").touch()  # asked to stop while the rows were being prepared
    code = run_training(tiny(eval_strategy="no"), run_dir)
    events = read_events(run_dir)
    status = final_status(events)
    assert code == 3 and status["status"] == ABORTED
    assert status["reason"].startswith("stopped by the user (abort requested) while tokenizing (")
    assert not any("trainable parameters" in str(e.get("text")) for e in events)  # the model was not loaded
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
