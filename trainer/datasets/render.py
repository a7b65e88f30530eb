"""Rendering: a normalized example as the text the model sees, split into (text, is_answer) segments.

A conversation is rendered through the tokenizer's own jinja chat template (``template: auto`` when
the tokenizer has one) or a named template (trainer/templates.py). Tool lists, calls and results go to
the tokenizer's template when it renders them (``tools=``), else they are written as plain turns
(templates.flatten_tools), the calls inside the answers that carry the loss. With a jinja template the answer
spans are found by rendering prefixes of the conversation; for templates that rewrite earlier turns
each answer is located by its text. Plain text is one segment between BOS and EOS, all of it trained.
"""

from __future__ import annotations

from typing import Any, Optional

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError
from trainer.datasets.rows import Example, is_text_example
from trainer.templates import (AUTO, FALLBACK_TEMPLATE, NAMED_TEMPLATES, QWEN_SYSTEM, Segment, chat_template_jinja,
                               flatten_tools, has_tools, render_named, unknown_template_message)


def chat_template_for_saving(tokenizer: Any, cfg: TrainConfig) -> Optional[str]:
    """The jinja chat_template to save with a trained model when a named template (or the `auto` fallback)
    rendered its data, so generation renders prompts exactly as training did; None when the
    tokenizer's own template was used."""
    if cfg.template == AUTO:
        return None if getattr(tokenizer, "chat_template", None) else chat_template_jinja(FALLBACK_TEMPLATE)
    return chat_template_jinja(cfg.template) if cfg.template in NAMED_TEMPLATES else None


def render_segments(example: dict, tokenizer: Any, cfg: TrainConfig) -> list[Segment]:
    """The text the model sees for one example, as (text, is_answer) segments."""
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    if is_text_example(example):
        return [(bos + example["text"] + eos, True)]
    messages, tools = example["messages"], example.get("tools") or None
    with_tools = has_tools(example)
    name = cfg.template
    if name == AUTO:
        if getattr(tokenizer, "chat_template", None):
            if with_tools and not renders_tools(tokenizer):
                messages, tools = flatten_tools(messages, tools), None
            return _render_jinja(messages, tokenizer, example, tools)
        name = FALLBACK_TEMPLATE
    if name not in NAMED_TEMPLATES:
        raise DataError(f"template: {unknown_template_message(name)}")
    if with_tools:
        messages = flatten_tools(messages, tools, QWEN_SYSTEM if name == "qwen" else "")
    return render_named(name, messages, bos, eos)


_PROBE_TOOL = {"type": "function", "function": {"name": "tunedeck_probe_tool", "description": "probe",
                                                "parameters": {"type": "object", "properties": {}}}}
_PROBE_CALL = [{"role": "user", "content": "x"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "tunedeck_probe_call", "arguments": {}}}]},
               {"role": "tool", "content": "tunedeck_probe_result"}]
_RENDERS_TOOLS: dict[str, bool] = {}


def renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template writes a `tools=` list, assistant tool_calls and tool results
    (Qwen 2.5+, Llama 3.1+, Mistral's newer ones do; many do not, and would drop them silently)."""
    template = tokenizer.chat_template
    if template not in _RENDERS_TOOLS:
        try:
            listed = tokenizer.apply_chat_template(_PROBE_CALL[:1], tools=[_PROBE_TOOL], tokenize=False)
            called = tokenizer.apply_chat_template(_PROBE_CALL, tokenize=False)
            _RENDERS_TOOLS[template] = ("tunedeck_probe_tool" in listed and "tunedeck_probe_call" in called
                                        and "tunedeck_probe_result" in called)
        except Exception:  # noqa: BLE001 - a template that raises on tools does not support them
            _RENDERS_TOOLS[template] = False
    return _RENDERS_TOOLS[template]


def _apply_template(tokenizer: Any, messages: list, add_generation_prompt: bool, example: dict,
                    tools: Optional[list] = None) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises TemplateError, its own raise_exception(), TypeError...
        where = f" ({getattr(example, 'source', '')}: {example.where})" if isinstance(example, Example) else ""
        raise DataError(f"bad chat template: the tokenizer's chat template failed to render a "
                        f"conversation{where}: {exc}. Set template to a named one "
                        f"({', '.join(NAMED_TEMPLATES)})") from None
    if not isinstance(text, str):
        raise DataError("bad chat template: the tokenizer's chat template did not return text")
    return text


def _render_jinja(messages: list[dict], tokenizer: Any, example: dict, tools: Optional[list] = None) -> list[Segment]:
    """Answer spans of a jinja template found by rendering prefixes of the conversation.

    The answer of turn i spans from the end of render(turns before i, generation prompt) to the end of
    render(turns up to i). Templates that rewrite earlier turns break the prefix property; then each
    answer is located by its text, in order.
    """
    full = _apply_template(tokenizer, messages, False, example, tools)
    spans: list[tuple[int, int]] = []
    prefix_ok = True
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _apply_template(tokenizer, messages[:i], True, example, tools)
        end_text = _apply_template(tokenizer, messages[:i + 1], False, example, tools)
        if not (full.startswith(end_text) and end_text.startswith(start_text) and len(end_text) > len(start_text)):
            prefix_ok = False
            break
        spans.append((len(start_text), len(end_text)))
    if not prefix_ok:
        spans = _find_answers(full, messages, getattr(tokenizer, "eos_token", None) or "")
    segments: list[Segment] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            segments.append((full[cursor:start], False))
        segments.append((full[start:end], True))
        cursor = end
    if cursor < len(full):
        segments.append((full[cursor:], False))
    return segments


# End-of-turn markers of common chat templates: the one after an answer belongs to the answer.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


# The exported plain script copies this function's source (interop/export_script.py): it must use
# nothing but its arguments, END_OF_TURN_MARKERS and built-ins.
def _find_answers(full: str, messages: list[dict], eos: str) -> list[tuple[int, int]]:
    """Answer spans located by their text, turn by turn, for templates that rewrite earlier turns.

    Every turn is searched after the previous one, so an answer that repeats the prompt's words is not
    found inside the prompt. An answer the template rewrote (reasoning stripped from earlier turns) is
    looked up by what follows its </think>; one not found at all carries no loss.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for m in messages:
        content = m["content"]
        candidates = [content]
        if m["role"] == "assistant" and "</think>" in content:
            candidates.append(content.split("</think>")[-1].strip())
        start, found = -1, ""
        for candidate in candidates:
            if candidate:
                start = full.find(candidate, cursor)
                if start >= 0:
                    found = candidate
                    break
        if start < 0:
            continue
        end = start + len(found)
        if m["role"] == "assistant":
            tail = full[end:].lstrip(" ")
            # The end-of-turn marker right after an answer is part of what the model must learn to emit.
            for marker in (eos, *END_OF_TURN_MARKERS):
                if marker and tail.startswith(marker):
                    end = full.index(marker, end) + len(marker)
                    break
            spans.append((start, end))
        cursor = end
    return spans
