"""Rendering: a normalized example as the text the model sees, split into (text, is_answer) segments.

A conversation is rendered through the tokenizer's own jinja chat template (``template: auto`` when
the tokenizer has one) or a named template (trainer/templates.py). With a jinja template the answer
spans are found by rendering prefixes of the conversation; for templates that rewrite earlier turns
each answer is located by its text. Plain text is one segment between BOS and EOS, all of it trained.
"""

from __future__ import annotations

from typing import Any, Optional

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError
from trainer.datasets.rows import Example, is_text_example
from trainer.templates import (AUTO, FALLBACK_TEMPLATE, NAMED_TEMPLATES, Segment, chat_template_jinja, render_named,
                               unknown_template_message)


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
    messages = example["messages"]
    name = cfg.template
    if name == AUTO:
        if getattr(tokenizer, "chat_template", None):
            return _render_jinja(messages, tokenizer, example)
        name = FALLBACK_TEMPLATE
    if name not in NAMED_TEMPLATES:
        raise DataError(f"template: {unknown_template_message(name)}")
    return render_named(name, messages, bos, eos)


def _apply_template(tokenizer: Any, messages: list, add_generation_prompt: bool, example: dict) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises TemplateError, its own raise_exception(), TypeError...
        where = f" ({getattr(example, 'source', '')}: {example.where})" if isinstance(example, Example) else ""
        raise DataError(f"bad chat template: the tokenizer's chat template failed to render a "
                        f"conversation{where}: {exc}. Set template to a named one "
                        f"({', '.join(NAMED_TEMPLATES)})") from None
    if not isinstance(text, str):
        raise DataError("bad chat template: the tokenizer's chat template did not return text")
    return text


def _render_jinja(messages: list[dict], tokenizer: Any, example: dict) -> list[Segment]:
    """Answer spans of a jinja template found by rendering prefixes of the conversation.

    The answer of turn i spans from the end of render(turns before i, generation prompt) to the end of
    render(turns up to i). Templates that rewrite earlier turns break the prefix property; then each
    answer is located by its text, in order.
    """
    full = _apply_template(tokenizer, messages, False, example)
    spans: list[tuple[int, int]] = []
    prefix_ok = True
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _apply_template(tokenizer, messages[:i], True, example)
        end_text = _apply_template(tokenizer, messages[:i + 1], False, example)
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
