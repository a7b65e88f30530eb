"""Talking to a run's model: prompts rendered exactly as training rendered them, replies streamed.

    loaded = load_run(resolve_weights(run_dir, checkpoint))
    settings = GenerationSettings.from_dict({"temperature": 0.7, "max_new_tokens": 128})
    messages = conversation(history, "What is 2 plus 2?", system_prompt="Be brief.")
    for text in stream_reply(loaded, messages, settings, which="tuned"): print(text, end="")

The prompt is the training rendering (trainer.datasets.render_segments with the run's config) of
the conversation followed by an assistant turn: everything before that turn's answer is the prompt, and
what the template puts after the answer (its end-of-turn marker) is where generation stops. So a named
template, the `auto` fallback and a tokenizer's own jinja template all prompt as they trained.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, Optional

from trainer.datasets import DataError, render_segments
from trainer.datasets.tokenize import tokenize_segments
from trainer.engine.artifacts import TUNED, AfterTrainingError, LoadedRun

ROLES = ("user", "assistant")
# Stands for the reply while rendering: the template's text before it is the prompt, after it the stop marker.
_REPLY = "\u2063TUNEDECK-REPLY\u2063"


@dataclass
class GenerationSettings:
    """How a reply is generated. temperature 0 = greedy (the same reply every time)."""

    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    seed: Optional[int] = None

    LIMITS = {"temperature": (0.0, 5.0), "top_p": (0.01, 1.0), "max_new_tokens": (1, 8192),
              "repetition_penalty": (0.5, 3.0)}

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]]) -> "GenerationSettings":
        """Settings from a form or a request; AfterTrainingError naming the field that is wrong."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AfterTrainingError(f"{unknown[0]}: not a generation setting (use {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if value is None or value == "":
                continue
            if name == "system_prompt":
                if not isinstance(value, str):
                    raise AfterTrainingError("system_prompt: must be text")
                values[name] = value
                continue
            kind = int if name in ("max_new_tokens", "seed") else float
            try:
                if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
                    raise ValueError
                number = kind(float(value)) if kind is int else kind(value)
            except (TypeError, ValueError):
                raise AfterTrainingError(f"{name}: expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {value!r}") from None
            low, high = cls.LIMITS.get(name, (0, 2**32 - 1))
            if not low <= number <= high:
                raise AfterTrainingError(f"{name}: {number:g} is out of range ({low:g} to {high:g})")
            values[name] = number
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def conversation(history: Optional[list[dict[str, Any]]], user_message: str,
                 system_prompt: str = "") -> list[dict[str, str]]:
    """System prompt + earlier turns + the new user message, checked: AfterTrainingError names the bad turn."""
    if not isinstance(user_message, str) or not user_message.strip():
        raise AfterTrainingError("message: empty; type something to send")
    messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for i, turn in enumerate(history or []):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise AfterTrainingError(f"history turn {i + 1}: expected {{'role': 'user' or 'assistant', "
                                     "'content': text}")
        messages.append({"role": turn["role"], "content": turn["content"]})
    messages.append({"role": "user", "content": user_message})
    for i, message in enumerate(messages):
        try:
            message["content"].encode("utf-8")
        except UnicodeEncodeError:  # bytes a terminal passed through undecoded (surrogate escapes)
            what = "message" if i == len(messages) - 1 else f"{message['role']} turn {i + 1}"
            raise AfterTrainingError(f"{what}: not UTF-8 text; type it again as UTF-8") from None
    return messages


@dataclass(frozen=True)
class Prompt:
    input_ids: list[int]
    text: str
    stop: str  # the end-of-turn marker the template puts after an answer ("" when it puts none)


def build_prompt(loaded: LoadedRun, messages: list[dict[str, str]]) -> Prompt:
    """The token ids of the generation prompt, rendered and tokenized as in training."""
    example = {"messages": [*messages, {"role": "assistant", "content": _REPLY}]}
    try:
        segments = render_segments(example, loaded.tokenizer, loaded.cfg)
    except DataError as exc:
        raise AfterTrainingError(str(exc)) from None
    prompt_segments: list[tuple[str, bool]] = []
    stop = ""
    for text, is_answer in segments:
        if is_answer and _REPLY in text:
            stop = text.split(_REPLY, 1)[1].strip()
            break
        prompt_segments.append((text, is_answer))
    else:
        # A template that hides the last answer from its own rendering: prompt with the text before it.
        full = "".join(text for text, _ in segments)
        prompt_segments = [(full.split(_REPLY, 1)[0], False)]
    row = tokenize_segments(prompt_segments, loaded.tokenizer, loaded.cfg, truncate=False)
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if limit and len(row.input_ids) >= limit:
        raise AfterTrainingError(f"the conversation is {len(row.input_ids)} tokens, over the model's context of "
                                 f"{limit}: clear the history or shorten the message")
    return Prompt(input_ids=list(row.input_ids), text=row.text, stop=stop)


def _stop_token_ids(tokenizer: Any, stop: str) -> tuple[list[int], bool]:
    """Token ids that end a reply (eos, and the template's end-of-turn marker when it is one token), and
    whether the marker is covered by them (else generation watches for it as a string)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not stop or stop == tokenizer.eos_token:
        return ids, True
    token = tokenizer.convert_tokens_to_ids(stop)
    if isinstance(token, int) and token != tokenizer.unk_token_id:
        return ids + ([token] if token not in ids else []), True
    return ids, False


def stream_reply(loaded: LoadedRun, messages: list[dict[str, str]], settings: GenerationSettings,
                 which: str = TUNED, stop_event: Optional[threading.Event] = None) -> Iterator[str]:
    """The reply of the tuned (`tuned`) or base (`base`) model, as pieces of text while they are generated.

    `stop_event` set from another thread ends the reply after the current token.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    prompt = build_prompt(loaded, messages)
    tokenizer = loaded.tokenizer
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    finished = threading.Event()  # the consumer stopped reading

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            stop = finished.is_set() or (stop_event is not None and stop_event.is_set())
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    stop_ids, marker_is_token = _stop_token_ids(tokenizer, prompt.stop)
    input_ids = torch.tensor([prompt.input_ids], device=loaded.device)
    kwargs: dict[str, Any] = dict(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=settings.max_new_tokens,
        repetition_penalty=settings.repetition_penalty, streamer=streamer,
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([_Stop()]))
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if not marker_is_token:
        kwargs.update(stop_strings=[prompt.stop], tokenizer=tokenizer)  # a marker that is several tokens
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            with loaded.use(which) as model, torch.inference_mode():
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                model.generate(**kwargs)
        except BaseException as exc:  # noqa: BLE001 — raised again in the consumer's thread below
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=generate, name=f"generate-{which}", daemon=True)
    thread.start()
    try:
        yield from _until_marker(streamer, prompt.stop)
    finally:
        finished.set()  # a consumer that stops reading stops the generation too
        thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, AfterTrainingError):
            raise exc
        raise AfterTrainingError(f"generation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _until_marker(pieces: Iterator[str], marker: str) -> Iterator[str]:
    """The pieces up to a visible end-of-turn marker (one that is not a special token is decoded as text)."""
    if not marker:
        yield from (piece for piece in pieces if piece)
        return
    held = ""
    for piece in pieces:
        held += piece
        if marker in held:
            before = held.split(marker, 1)[0]
            if before:
                yield before
            return
        # Keep back what could be the start of the marker; send the rest.
        keep = next((k for k in range(min(len(marker) - 1, len(held)), 0, -1) if marker.startswith(held[-k:])), 0)
        if len(held) > keep:
            yield held[:len(held) - keep]
            held = held[len(held) - keep:]
    if held:
        yield held


def reply(loaded: LoadedRun, messages: list[dict[str, str]], settings: GenerationSettings,
          which: str = TUNED) -> str:
    """The whole reply at once."""
    return "".join(stream_reply(loaded, messages, settings, which))
