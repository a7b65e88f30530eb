"""Tool calling as a first-class format: sharegpt function_call/observation turns, OpenAI tool_calls/tool
messages and a tools column are read, rendered with the tokenizer's template (when it writes tools) or a
named one, the loss falls on the assistant's calls and answers, and the preview shows the tool list."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.datasets import DataError, load_examples, preview_rows, render_segments, tokenize_examples
from trainer.datasets.render import renders_tools
from trainer.engine.demo import ensure_demo_model

WEATHER_TOOL = {"name": "get_weather", "description": "Current weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SHAREGPT_ROW = {
    "conversations": [
        {"from": "human", "value": "What is the weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": json.dumps({"temperature": 21, "sky": "clear"})},
        {"from": "gpt", "value": "It is 21 degrees and clear in Paris."},
    ],
    "tools": json.dumps([WEATHER_TOOL]),
}
OPENAI_ROW = {
    "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"temperature": 21, "sky": "clear"})},
        {"role": "assistant", "content": "It is 21 degrees and clear in Paris."},
    ],
    "tools": [{"type": "function", "function": WEATHER_TOOL}],
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'

# A template that writes tools, calls and results (as Qwen 2.5's does, shortened).
TOOLS_JINJA = (
    "{% if tools %}{{ '<|im_start|>system\\nTools: ' }}{% for t in tools %}{{ t['function']['name'] + ' ' }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% if m['content'] %}{{ m['content'] }}{% endif %}{% for c in m.get('tool_calls') or [] %}"
    "{{ 'CALL ' + c['function']['name'] + ' ' + (c['function']['arguments'] | tojson) }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_demo_model())


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _loss_text(tok, row) -> str:
    return tok.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m])


@pytest.mark.parametrize("row", [SHAREGPT_ROW, OPENAI_ROW], ids=["sharegpt", "openai"])
def test_both_spellings_read_to_the_same_conversation(row, tmp_path):
    [example] = load_examples(TrainConfig(dataset=str(_write(tmp_path / "t.jsonl", [row])))).train
    assert [m["role"] for m in example["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert example["messages"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert example["tools"] == [{"type": "function", "function": WEATHER_TOOL}]


@pytest.mark.parametrize("template", ["qwen", "plain", "auto"])
def test_named_and_tool_less_templates_train_the_calls(template, demo_tokenizer, tmp_path):
    """The demo tokenizer's template has no words for tools: the calls are written into the answers."""
    assert not renders_tools(demo_tokenizer)
    cfg = TrainConfig(dataset=str(_write(tmp_path / "t.jsonl", [SHAREGPT_ROW])), template=template, cutoff_len=1024)
    [example] = load_examples(cfg).train
    segments = render_segments(example, demo_tokenizer, cfg)
    text = "".join(t for t, _ in segments)
    answers = [t for t, answer in segments if answer]
    assert '"name": "get_weather"' in text and "Current weather of a city" in text  # the tool list
    assert any(CALL_TEXT in a for a in answers) and any("21 degrees" in a for a in answers)
    assert not any("temperature" in a for a in answers)  # the tool's result is read, not learned
    [row] = tokenize_examples([example], demo_tokenizer, cfg)
    loss_text = _loss_text(demo_tokenizer, row)
    assert "get_weather" in loss_text and "Paris" in loss_text and "21 degrees" in loss_text
    assert "temperature" not in loss_text and "Current weather" not in loss_text
    if template == "qwen":  # as LLaMA-Factory's qwen: default system + tool prompt, results as a user turn
        assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                               "assistant.\n\n# Tools\n\n")
        assert "<|im_start|>user\n<tool_response>\n{\"temperature\": 21, \"sky\": \"clear\"}\n</tool_response>" \
               "<|im_end|>\n<|im_start|>assistant\n" in text


def test_a_template_that_writes_tools_gets_them(demo_tokenizer, tmp_path):
    tok = copy.deepcopy(demo_tokenizer)
    tok.chat_template = TOOLS_JINJA
    assert renders_tools(tok)
    cfg = TrainConfig(dataset=str(_write(tmp_path / "t.jsonl", [OPENAI_ROW])), cutoff_len=1024)
    [example] = load_examples(cfg).train
    text = "".join(t for t, _ in render_segments(example, tok, cfg))
    assert text.startswith("<|im_start|>system\nTools: get_weather <|im_end|>\n")
    assert 'CALL get_weather {"city": "Paris"}' in text
    [row] = tokenize_examples([example], tok, cfg)
    loss_text = _loss_text(tok, row)
    assert "CALL get_weather" in loss_text and "21 degrees" in loss_text and "temperature" not in loss_text


def test_the_preview_shows_the_tool_list_and_marks_the_calls(demo_tokenizer, tmp_path):
    cfg = TrainConfig(dataset=str(_write(tmp_path / "t.jsonl", [SHAREGPT_ROW])), cutoff_len=1024)
    [preview] = preview_rows(load_examples(cfg).train, demo_tokenizer, cfg)["rows"]
    prompt = "".join(t for t, loss in preview["segments"] if not loss)
    trained = "".join(t for t, loss in preview["segments"] if loss)
    assert "get_weather" in prompt and "Current weather of a city" in prompt
    assert "get_weather" in trained and "Paris" in trained


def test_broken_tool_rows_are_named_with_their_line(tmp_path):
    rows = [
        SHAREGPT_ROW,
        {"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "get_weather("},
                           {"from": "observation", "value": "r"}, {"from": "gpt", "value": "y"}]},
        {"conversations": [{"from": "human", "value": "x"}, {"from": "observation", "value": "r"},
                           {"from": "gpt", "value": "y"}]},
        {**SHAREGPT_ROW, "tools": "[{\"name\": "},
        {"conversations": SHAREGPT_ROW["conversations"][:3]},
        {"conversations": [{"from": "human", "value": "x"},
                           {"from": "function_call", "value": json.dumps({"arguments": {}})},
                           {"from": "observation", "value": "r"}, {"from": "gpt", "value": "y"}]},
    ]
    path = _write(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_examples(TrainConfig(dataset=str(path)))
    assert str(info.value).splitlines()[1:] == [
        "  line 2: turn 2: a function call must be JSON {\"name\": ..., \"arguments\": ...}: Expecting value "
        "(column 1)",
        "  line 3: turn 2: a tool result must follow an assistant turn that calls a tool (function_call / tool_calls)",
        "  line 4: field 'tools' is not a JSON list of tools: Expecting value (column 11)",
        "  line 5: turn 3: the conversation ends with a tool result; it must end with an assistant answer",
        "  line 6: turn 2: a tool call needs a \"name\" (and \"arguments\")",
    ]
    # Skipping the broken rows keeps the good row whole, its tool list included.
    data = load_examples(TrainConfig(dataset=str(path), skip_invalid_rows=True))
    assert data.skipped == 5 and data.train[0]["tools"] == [{"type": "function", "function": WEATHER_TOOL}]


@pytest.mark.slow
def test_tool_rows_train_the_demo_model_with_the_calls_in_the_loss(tmp_path, demo_tokenizer):
    """A real tiny training on tool-calling rows: the loss falls and the calls are among the trained tokens."""
    from trainer.engine.train import run_training
    from trainer.run.events import FINISHED, number, read_events

    rows = []
    for i, city in enumerate(["Paris", "Oslo", "Rome", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"] * 3):
        call = {"name": "get_weather", "arguments": {"city": city}}
        rows.append({"conversations": [
            {"from": "human", "value": f"Weather in {city}?"},
            {"from": "function_call", "value": json.dumps(call)},
            {"from": "observation", "value": json.dumps({"temperature": 10 + i})},
            {"from": "gpt", "value": f"{10 + i} degrees in {city}."}], "tools": json.dumps([WEATHER_TOOL])})
    path = _write(tmp_path / "tools.jsonl", rows)
    cfg = TrainConfig.from_dict(dict(
        model_name_or_path="demo", dataset=str(path), cutoff_len=768, per_device_train_batch_size=4,
        gradient_accumulation_steps=1, max_steps=6, learning_rate=0.005, warmup_ratio=0.0, lora_rank=8,
        lora_alpha=16, logging_steps=1, save_strategy="no", gradient_checkpointing=False, packing=False))
    tokenized = tokenize_examples(load_examples(cfg).train, demo_tokenizer, cfg)
    assert not tokenized.truncated_rows
    for row in tokenized:
        loss_text = _loss_text(demo_tokenizer, row)
        assert "get_weather" in loss_text and "degrees" in loss_text and "temperature" not in loss_text
    run_dir = tmp_path / "run"
    assert run_training(cfg, run_dir) == 0
    events = read_events(run_dir)
    assert [e for e in events if e["type"] == "status"][-1]["status"] == FINISHED
    losses = [number(e["loss"]) for e in events if e["type"] == "log" and "loss" in e]
    assert len(losses) >= 6 and losses[-1] < losses[0]
