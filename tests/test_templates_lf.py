"""tunedeck's named templates render what LLaMA-Factory's templates of the same name render, answers
(the tokens that carry the loss) included, or the difference is reported.

The definitions below are LLaMA-Factory's, from ``src/llamafactory/data/template.py``: each
``register_template(...)``'s format_user / format_assistant / format_system / format_prefix slots,
default_system and template class, with its defaults (assistant ``{{content}}`` + EOS, system
``{{content}}``, no prefix). ``lf_render`` is ``Template._encode`` (and Llama2Template's system merged into
the first user turn, ReasoningTemplate's empty thought before answers without one) on text.
"""

from __future__ import annotations

import pytest

from trainer.interop.llamafactory import export_llamafactory, import_llamafactory_text
from trainer.templates import (ALPACA_SYSTEM, LLAMAFACTORY_DIFFERENCES, NAMED_TEMPLATES, QWEN_SYSTEM, VICUNA_SYSTEM,
                               render_named)
from trainer.config import TrainConfig
from trainer.plan.resolve import CPU

_CHATML = dict(user=["<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"],
               assistant=["{{content}}<|im_end|>\n"], system=["<|im_start|>system\n{{content}}<|im_end|>\n"])
LF_TEMPLATES = {
    "chatml": _CHATML,
    "qwen": {**_CHATML, "default_system": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."},
    "qwen3": {**_CHATML, "reasoning": True},
    "llama3": dict(
        user=["<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n"],
        assistant=["{{content}}<|eot_id|>"],
        system=["<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>"], prefix=["bos_token"]),
    "llama2": dict(user=["bos_token", "[INST] {{content}} [/INST]"], system=["<<SYS>>\n{{content}}\n<</SYS>>\n\n"],
                   llama2=True),
    "mistral": dict(user=["[INST] {{content}}[/INST]"], assistant=[" {{content}}", "eos_token"],
                    system=["{{content}}\n\n"], prefix=["bos_token"], llama2=True),
    "gemma": dict(user=["<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n"],
                  assistant=["{{content}}<end_of_turn>\n"], system=["{{content}}\n\n"], prefix=["bos_token"],
                  llama2=True),
    "alpaca": dict(user=["### Instruction:\n{{content}}\n\n### Response:\n"],
                   assistant=["{{content}}", "eos_token", "\n\n"],
                   default_system="Below is an instruction that describes a task. Write a response that "
                                  "appropriately completes the request.\n\n"),
    "vicuna": dict(user=["USER: {{content}} ASSISTANT:"],
                   default_system="A chat between a curious user and an artificial intelligence assistant. The "
                                  "assistant gives helpful, detailed, and polite answers to the user's questions."),
}
BOS_EOS = {"llama3": ("<|begin_of_text|>", "<|eot_id|>"), "gemma": ("<bos>", "<eos>")}
EMPTY_THOUGHT = "<think>\n\n</think>\n\n"


def _apply(slots: list[str], content: str, bos: str, eos: str) -> str:
    return "".join(bos if s == "bos_token" else eos if s == "eos_token" else s.replace("{{content}}", content)
                   for s in slots)


def lf_render(name: str, messages: list[dict], bos: str, eos: str) -> tuple[str, list[str]]:
    """(full text, the assistant turns' text) as LLaMA-Factory encodes a training conversation."""
    t = LF_TEMPLATES[name]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    turns = messages[1:] if system else messages
    system = system or t.get("default_system", "")
    text, answers = [], []
    for i, m in enumerate(turns):
        if i == 0:
            text.append(_apply(t.get("prefix", []), "", bos, eos))
        if m["role"] == "user":
            content = m["content"]
            if i == 0 and system:
                if t.get("llama2"):
                    content = _apply(t["system"], system, bos, eos) + content
                else:
                    text.append(_apply(t.get("system", ["{{content}}"]), system, bos, eos))
            text.append(_apply(t["user"], content, bos, eos))
        else:
            answer = _apply(t.get("assistant", ["{{content}}", "eos_token"]), m["content"], bos, eos)
            if t.get("reasoning") and "<think>" not in m["content"]:
                answer = EMPTY_THOUGHT + answer
            text.append(answer)
            answers.append(answer)
    return "".join(text), answers


WITH_SYSTEM = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Sky colour?"},
               {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Grass?"},
               {"role": "assistant", "content": "Green."}]
WITHOUT_SYSTEM = WITH_SYSTEM[1:]


def _ours(name: str, messages: list[dict]) -> tuple[str, list[str]]:
    bos, eos = BOS_EOS.get(name, ("<s>", "</s>"))
    segments = render_named(name, messages, bos, eos)
    return "".join(t for t, _ in segments), [t for t, answer in segments if answer]


@pytest.mark.parametrize("name", sorted(LF_TEMPLATES))
@pytest.mark.parametrize("messages", [WITH_SYSTEM, WITHOUT_SYSTEM], ids=["system", "no-system"])
def test_named_template_renders_as_llamafactory(name, messages):
    bos, eos = BOS_EOS.get(name, ("<s>", "</s>"))
    expected = lf_render(name, messages, bos, eos)
    if name == "alpaca" and messages is WITH_SYSTEM:  # the reported difference: a blank line after the system
        text, answers = expected
        expected = (text.replace("Answer in one word.", "Answer in one word.\n\n", 1), answers)
        assert "blank line" in LLAMAFACTORY_DIFFERENCES["alpaca"]
    assert _ours(name, messages) == expected


def test_the_strings_llamafactory_users_know():
    """Spelled out for the templates the issue names, so a reader sees the text itself."""
    assert _ours("qwen3", WITHOUT_SYSTEM[:2])[0] == (
        "<|im_start|>user\nSky colour?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nBlue.<|im_end|>\n")
    assert _ours("qwen", WITHOUT_SYSTEM[:2])[0].startswith(f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n")
    assert _ours("llama2", WITH_SYSTEM)[0] == (
        "<s>[INST] <<SYS>>\nAnswer in one word.\n<</SYS>>\n\nSky colour? [/INST]Blue.</s><s>[INST] Grass? [/INST]"
        "Green.</s>")
    assert _ours("mistral", WITH_SYSTEM)[0] == (
        "<s>[INST] Answer in one word.\n\nSky colour?[/INST] Blue.</s>[INST] Grass?[/INST] Green.</s>")
    assert _ours("vicuna", WITHOUT_SYSTEM[:2])[0] == f"{VICUNA_SYSTEM}USER: Sky colour? ASSISTANT:Blue.</s>"
    assert _ours("alpaca", WITHOUT_SYSTEM[:2])[0] == (
        f"{ALPACA_SYSTEM}\n\n### Instruction:\nSky colour?\n\n### Response:\nBlue.</s>\n\n")
    # A reasoning answer keeps its own thought, untouched.
    thought = [WITHOUT_SYSTEM[0], {"role": "assistant", "content": "<think>\nsky\n</think>\n\nBlue."}]
    assert _ours("qwen3", thought)[1] == ["<think>\nsky\n</think>\n\nBlue.<|im_end|>\n"]


@pytest.mark.parametrize("name", sorted(LF_TEMPLATES))
def test_import_maps_each_name_to_itself_and_reports_differences(name, tmp_path):
    result = import_llamafactory_text(f"model_name_or_path: m\ndataset: demo\ntemplate: {name}\n", "t.yaml")
    assert result.config.template == name and "template" not in result.unmapped
    reported = [n for n in result.notes if n.startswith(f"template {name}:")]
    assert bool(reported) == (name in LLAMAFACTORY_DIFFERENCES)
    exported = export_llamafactory(TrainConfig(template=name), dataset_dir=tmp_path, hardware=CPU)
    assert exported.data["template"] == name
    assert bool([n for n in exported.notes if n.startswith(f"template {name}:")]) == (name in LLAMAFACTORY_DIFFERENCES)


def test_every_named_template_but_plain_is_a_llamafactory_template():
    assert set(NAMED_TEMPLATES) - set(LF_TEMPLATES) == {"plain"}
    for alias, ours in (("yi", "chatml"), ("gemma2", "gemma"), ("qwen3_nothink", "chatml")):
        text = f"model_name_or_path: m\ndataset: demo\ntemplate: {alias}\n"
        assert import_llamafactory_text(text, "t.yaml").config.template == ours
    unknown = import_llamafactory_text("model_name_or_path: m\ndataset: demo\ntemplate: baichuan2\n", "t.yaml")
    assert unknown.config.template == "auto" and "baichuan2" in unknown.unmapped["template"]
