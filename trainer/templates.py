"""Named chat templates for models whose tokenizer has none (base models, the demo model).

A template turns a conversation into text. Each renderer returns the text as segments
``(text, is_answer)`` so that the tokens of the assistant's answers (which carry the loss) are known
exactly, without guessing where an answer starts. The end-of-turn marker that follows an answer is
part of the answer: the model must learn to stop.

Pure Python, no jinja, no tokenizer: only the tokenizer's BOS/EOS strings are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

Segment = tuple[str, bool]  # (text, is an assistant answer)
Messages = list[dict[str, str]]

ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def _split_system(messages: Messages) -> tuple[Optional[str], Messages]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _chatml(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    out: list[Segment] = []
    for m in messages:
        if m["role"] == "assistant":
            out.append(("<|im_start|>assistant\n", False))
            out.append((m["content"] + "<|im_end|>\n", True))
        else:
            out.append((f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n", False))
    if add_generation_prompt:
        out.append(("<|im_start|>assistant\n", False))
    return out


def _llama3(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    out: list[Segment] = [("<|begin_of_text|>", False)]
    for m in messages:
        header = f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"
        if m["role"] == "assistant":
            out.append((header, False))
            out.append((m["content"] + "<|eot_id|>", True))
        else:
            out.append((header + m["content"] + "<|eot_id|>", False))
    if add_generation_prompt:
        out.append(("<|start_header_id|>assistant<|end_header_id|>\n\n", False))
    return out


def _mistral(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = f"{system}\n\n{m['content']}" if system and first_user else m["content"]
            first_user = False
            out.append((f"[INST] {content} [/INST]", False))
        else:
            out.append((m["content"] + eos, True))
    return out


def _gemma(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = f"{system}\n\n{m['content']}" if system and first_user else m["content"]
            first_user = False
            out.append((f"<start_of_turn>user\n{content}<end_of_turn>\n", False))
        else:
            out.append(("<start_of_turn>model\n", False))
            out.append((m["content"] + "<end_of_turn>\n", True))
    if add_generation_prompt:
        out.append(("<start_of_turn>model\n", False))
    return out


def _alpaca(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    system, turns = _split_system(messages)
    out: list[Segment] = [((bos or "") + (system or ALPACA_SYSTEM) + "\n\n", False)]
    for m in turns:
        if m["role"] == "user":
            out.append((f"### Instruction:\n{m['content']}\n\n### Response:\n", False))
        else:
            out.append((m["content"] + eos, True))
            out.append(("\n\n", False))
    if out[-1] == ("\n\n", False):
        out.pop()
    return out


def _vicuna(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    system, turns = _split_system(messages)
    out: list[Segment] = [((bos or "") + (system or VICUNA_SYSTEM) + " ", False)]
    for m in turns:
        if m["role"] == "user":
            out.append((f"USER: {m['content']} ASSISTANT:", False))
        else:
            out.append((" " + m["content"] + eos, True))
    return out


def _plain(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """The smallest readable template: `User: ...` / `Assistant: ...`. The fallback of `auto`.

    The prompt ends with "Assistant:" and the answer starts with its space, so the generation prompt
    tokenizes exactly as in training.
    """
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    if system:
        out.append((system + "\n\n", False))
    for m in turns:
        if m["role"] == "user":
            separator = "\n" if any(answer for _, answer in out) else ""
            out.append((f"{separator}User: {m['content']}\nAssistant:", False))
        else:
            out.append((" " + m["content"] + eos, True))
    return out


# The same templates in jinja, for tokenizer.chat_template: a model trained with a named template is
# saved with it, so that generation (chat tab, export) renders prompts exactly as training did.
# tests/test_data.py checks that each renders the same text as its Python twin.
_JINJA = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "llama3": (
        "{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
        "'<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
    "mistral": (
        "{{ bos_token }}{% set ns = namespace(system='', first=true) %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}{% if ns.first and ns.system %}"
        "{{ '[INST] ' + ns.system + '\\n\\n' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}{% set ns.first = false %}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"),
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(system='', first=true) %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}{% if ns.first and ns.system %}"
        "{{ '<start_of_turn>user\\n' + ns.system + '\\n\\n' + m['content'] + '<end_of_turn>\\n' }}"
        "{% else %}{{ '<start_of_turn>user\\n' + m['content'] + '<end_of_turn>\\n' }}{% endif %}"
        "{% set ns.first = false %}"
        "{% else %}{{ '<start_of_turn>model\\n' + m['content'] + '<end_of_turn>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"),
    "alpaca": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}{{ \"" + ALPACA_SYSTEM + "\" }}{% endif %}{{ '\\n\\n' }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ '### Instruction:\\n' + m['content'] + '\\n\\n### Response:\\n' }}"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% if not loop.last %}{{ '\\n\\n' }}"
        "{% endif %}{% endif %}{% endfor %}"),
    "vicuna": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}{{ \"" + VICUNA_SYSTEM + "\" }}{% endif %}{{ ' ' }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ASSISTANT:' }}"
        "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"),
    "plain": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
        "{% elif m['role'] == 'user' %}{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'assistant' %}"
        "{{ '\\n' }}{% endif %}{{ 'User: ' + m['content'] + '\\nAssistant:' }}"
        "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"),
}


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    description: str
    render: Callable[[Messages, str, str, bool], list[Segment]]

    @property
    def jinja(self) -> str:
        """The template as a jinja chat_template string (for tokenizer.chat_template)."""
        return _JINJA[self.name]


NAMED_TEMPLATES: dict[str, NamedTemplate] = {t.name: t for t in [
    NamedTemplate("chatml", "<|im_start|>role ... <|im_end|> (Qwen, many fine-tunes)", _chatml),
    NamedTemplate("llama3", "Llama 3 headers and <|eot_id|>", _llama3),
    NamedTemplate("mistral", "[INST] ... [/INST] (Mistral, Llama 2 style)", _mistral),
    NamedTemplate("gemma", "<start_of_turn>user / model (Gemma)", _gemma),
    NamedTemplate("alpaca", "### Instruction: / ### Response:", _alpaca),
    NamedTemplate("vicuna", "USER: ... ASSISTANT: ...", _vicuna),
    NamedTemplate("plain", "User: ... / Assistant: ... (the fallback when a tokenizer has no template)", _plain),
]}
AUTO = "auto"
FALLBACK_TEMPLATE = "plain"


def template_names() -> list[str]:
    """Every accepted value of `template`: auto first, then the named ones."""
    return [AUTO, *NAMED_TEMPLATES]


def unknown_template_message(name: str) -> str:
    return f"unknown chat template '{name}': use one of {', '.join(template_names())}"


def render_named(name: str, messages: Messages, bos: str = "", eos: str = "",
                 add_generation_prompt: bool = False) -> list[Segment]:
    """Render a conversation with a named template as (text, is_answer) segments."""
    template = NAMED_TEMPLATES.get(name)
    if template is None:
        raise KeyError(unknown_template_message(name))
    return [(text, answer) for text, answer in template.render(messages, bos or "", eos or "",
                                                                  add_generation_prompt) if text]


def chat_template_jinja(name: str) -> str:
    """The jinja chat_template of a named template, to save with a tokenizer trained on it."""
    template = NAMED_TEMPLATES.get(name)
    if template is None:
        raise KeyError(unknown_template_message(name))
    return template.jinja
