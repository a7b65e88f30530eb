"""Row formats: which format a dataset's columns point to, and one raw row validated and normalized to
``{"messages": [{"role", "content"}, ...]}`` or ``{"text": ...}``.

Formats: alpaca (instruction/input/output, optional system and history), sharegpt (conversations of
from/value turns, function_call/observation turns and a tools column), messages (role/content turns,
OpenAI tool_calls/tool turns, text parts), prompt_completion (text, or lists of turns) and text (plain
text, continued pre-training). A conversation with tools normalizes to OpenAI's shape: assistant turns
with ``tool_calls``, ``tool`` turns with the results, and ``"tools"`` beside ``"messages"``. A row that cannot be used raises RowProblem naming the
field; the loader turns it into a RowIssue with the row's line number.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Optional

from trainer.datasets.issues import type_name
from trainer.datasets.sources import CSV_EXTRA_CELLS
from trainer.textio import load_json

MEDIA_PART_TYPES = ("image", "image_url", "video", "video_url", "audio", "input_audio", "audio_url")

# Column names people use for what a format calls otherwise: suggested in a column_mapping hint.
COLUMN_SYNONYMS = {
    "output": ("response", "answer", "completion", "target", "output_text", "chosen"),
    "instruction": ("prompt", "question", "query", "input", "instruction_text"),
    "text": ("content", "document", "body", "sentence", "passage"),
    "completion": ("response", "answer", "output", "target"),
    "prompt": ("question", "query", "instruction", "input"),
    "messages": ("conversations", "conversation", "dialog", "chat"),
    "conversations": ("messages", "conversation", "dialog", "chat"),
}

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system", "function_call": "function_call",
                  "observation": "tool", "tool": "tool"}
MESSAGE_ROLES = ("system", "user", "assistant", "tool")
_MESSAGE_ROLE_MAP = {**{r: r for r in MESSAGE_ROLES}, "function": "tool", "ipython": "tool"}


class Example(dict):
    """A normalized example (a plain dict) that also remembers where it came from (set by make_example)."""

    # Slots, not an instance __dict__: a million rows are a million of these.
    __slots__ = ("row", "kind", "source")

    @property
    def where(self) -> str:
        return f"{self.kind} {self.row}"


def make_example(data: dict[str, Any], row: int, kind: str, source: str) -> Example:
    """A normalized row as an Example from `source`, at its line or row number."""
    ex = Example(data)
    ex.row, ex.kind, ex.source = row, kind, source
    return ex


def is_text_example(example: dict) -> bool:
    """A plain-text row (continued pre-training) rather than a conversation."""
    return "text" in example and "messages" not in example


def detect_format(rows: Iterable[dict]) -> Optional[str]:
    """The format the rows' columns point to, or None."""
    keys: set[str] = set()
    for i, row in enumerate(rows):
        if i >= 50:
            break
        if isinstance(row, dict):
            keys.update(k for k, v in row.items() if v is not None)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or ("output" in keys and "input" in keys):
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


class RowProblem(Exception):
    """Why one row cannot be used, and the field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _text_field(row: dict, name: str, *, required: bool = True, allow_empty: bool = False) -> str:
    if name not in row:
        if not required:
            return ""
        raise RowProblem(name, f"missing field '{name}'")
    value = row[name]
    if value is None:  # null in JSON, an empty Parquet cell
        if required and not allow_empty:
            raise RowProblem(name, f"field '{name}' is empty")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowProblem(name, f"field '{name}' must be text, got {type_name(value)}")
    if isinstance(value, float) and math.isnan(value):  # an empty CSV/Parquet cell read by pandas-like tools
        value = ""
    text = str(value)
    if required and not allow_empty and not text.strip():
        raise RowProblem(name, f"field '{name}' is empty")
    return text


def _list_field(row: dict, name: str) -> list:
    if name not in row:
        raise RowProblem(name, f"missing field '{name}'")
    value = row[name]
    if value is None:
        raise RowProblem(name, f"field '{name}' is empty")
    if isinstance(value, str):  # CSV cells hold conversations as JSON text
        try:
            value = load_json(value)
        except json.JSONDecodeError as exc:
            raise RowProblem(name, f"field '{name}' is not a JSON list: {exc.msg} (column {exc.colno})") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise RowProblem(name, f"field '{name}' must be a list of turns, got {type_name(value)}")
    if not value:
        raise RowProblem(name, f"field '{name}' is empty")
    return value


def _content_text(value: Any, field_name: str, turn: int, allow_empty: bool = False) -> str:
    if isinstance(value, list):
        # Content parts: OpenAI's {"type": "text", "text": ...}, LLaMA-Factory v1's {"type": "text", "value": ...}.
        parts = []
        for part in value:
            kind = part.get("type", "text") if isinstance(part, dict) else None
            text = part.get("text", part.get("value")) if isinstance(part, dict) else None
            if kind == "text" and isinstance(text, str):
                parts.append(text)
            elif kind in MEDIA_PART_TYPES:
                raise RowProblem(field_name, f"turn {turn}: a {kind} part: multimodal rows are not supported "
                                 "(tunedeck trains text-only models)")
            else:
                raise RowProblem(field_name, f"turn {turn}: content parts must be {{\"type\": \"text\", \"text\" or "
                                 f"\"value\": ...}}, got {json.dumps(part, ensure_ascii=False)[:80]}")
        value = "".join(parts)
    if allow_empty and (value is None or value == ""):
        return ""
    if value is None:
        raise RowProblem(field_name, f"turn {turn}: empty content")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowProblem(field_name, f"turn {turn}: content must be text, got {type_name(value)}")
    text = str(value)
    if not text.strip():
        raise RowProblem(field_name, f"turn {turn}: empty content")
    return text


def _check_turns(messages: list[dict[str, Any]], field_name: str) -> None:
    """Optional system first, then user/assistant alternating from a user turn, ending with an answer; an
    answer that calls tools is followed by their results (tool turns), then by the next answer."""
    expected: tuple[str, ...] = ("user",)
    previous = None
    for turn, m in enumerate(messages, 1):
        role = m["role"]
        if role == "system":
            if turn != 1:
                raise RowProblem(field_name, f"turn {turn}: a system turn must be the first turn")
            continue
        if role not in expected:
            if role == "tool":
                raise RowProblem(field_name, f"turn {turn}: a tool result must follow an assistant turn that calls "
                                 "a tool (function_call / tool_calls)")
            if role == previous:
                raise RowProblem(field_name, f"turn {turn}: two {role} turns in a row")
            if previous is None:
                raise RowProblem(field_name, f"turn {turn}: the conversation must start with a user turn, "
                                 f"not {role}")
            raise RowProblem(field_name, f"turn {turn}: {role} after {previous}: expected {' or '.join(expected)}")
        if role == "assistant":
            expected = ("tool",) if m.get("tool_calls") else ("user",)
        elif role == "tool":
            expected = ("tool", "assistant")
        else:
            expected = ("assistant",)
        previous = role
    if previous == "tool":
        raise RowProblem(field_name, f"turn {len(messages)}: the conversation ends with a tool result; it must end "
                         "with an assistant answer")
    if previous is None:
        raise RowProblem(field_name, "no user or assistant turn")
    if previous == "user":
        raise RowProblem(field_name, f"turn {len(messages)}: the conversation ends with a user turn; "
                          "it must end with an assistant answer")


def _turns(row: dict, name: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, Any]]:
    turns = _list_field(row, name)
    messages = []
    for turn, item in enumerate(turns, 1):
        if not isinstance(item, dict):
            raise RowProblem(name, f"turn {turn}: expected an object with '{role_key}' and '{content_key}', "
                              f"got {type_name(item)}")
        # Accept either spelling of a turn in either format (from/value or role/content).
        rk = role_key if role_key in item else ("role" if "role" in item else "from")
        ck = content_key if content_key in item else ("content" if "content" in item else "value")
        if rk not in item:
            raise RowProblem(name, f"turn {turn}: missing '{role_key}'")
        raw_role = item[rk]
        role = roles.get(str(raw_role).strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            known = ", ".join(k for k in roles if k not in ("function", "ipython"))  # legacy spellings of tool
            other = SHAREGPT_ROLES.get(str(raw_role).strip().lower()) if isinstance(raw_role, str) else None
            hint = f"; ShareGPT's {raw_role!r} is {other!r} here" if other in MESSAGE_ROLES else ""
            raise RowProblem(name, f"turn {turn}: unknown role {raw_role!r} (expected one of: {known}{hint})")
        if role == "function_call":  # sharegpt: the call as JSON text in the turn's value
            messages.append({"role": "assistant", "content": "",
                             "tool_calls": parse_tool_calls(item.get(ck), name, turn)})
            continue
        if role == "assistant" and item.get("tool_calls"):  # OpenAI: calls beside an optional text
            messages.append({"role": "assistant", "content": _content_text(item.get(ck), name, turn, True),
                             "tool_calls": parse_tool_calls(item["tool_calls"], name, turn)})
            continue
        if ck not in item:
            raise RowProblem(name, f"turn {turn}: missing '{content_key}'")
        content = item[ck]
        if role == "tool" and isinstance(content, (dict, list)) and not _is_parts(content):
            content = json.dumps(content, ensure_ascii=False)  # a structured tool result, as the model reads it
        messages.append({"role": role, "content": _content_text(content, name, turn)})
    return messages


def _is_parts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(p, dict) and "type" in p for p in value)


def parse_tool_calls(value: Any, field_name: str, turn: int) -> list[dict[str, Any]]:
    """Tool calls as {"type": "function", "function": {"name", "arguments": {...}}}, from sharegpt's JSON text
    ({"name", "arguments"} or a list of them) or OpenAI's tool_calls list."""
    if isinstance(value, str):
        try:
            value = load_json(value)
        except json.JSONDecodeError as exc:
            raise RowProblem(field_name, f"turn {turn}: a function call must be JSON {{\"name\": ..., \"arguments\": "
                             f"...}}: {exc.msg} (column {exc.colno})") from None
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise RowProblem(field_name, f"turn {turn}: a tool call needs a \"name\" (and \"arguments\")")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = load_json(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                raise RowProblem(field_name, f"turn {turn}: the arguments of tool call '{function['name']}' are not "
                                 "JSON") from None
        out.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    if not out:
        raise RowProblem(field_name, f"turn {turn}: an empty list of tool calls")
    return out


def _tools(row: dict) -> list[dict[str, Any]]:
    """The row's tool list (a `tools` column: JSON text or a list), as {"type": "function", "function": ...}."""
    value = row.get("tools")
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = load_json(value)
        except json.JSONDecodeError as exc:
            raise RowProblem("tools", f"field 'tools' is not a JSON list of tools: {exc.msg} (column {exc.colno})") \
                from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowProblem("tools", f"field 'tools' must be a list of tools, got {type_name(value)}")
    tools = []
    for i, tool in enumerate(value, 1):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RowProblem("tools", f"tool {i} needs a \"name\" (and \"description\", \"parameters\")")
        tools.append({"type": "function", "function": function})
    return tools


def _with_tools(row: dict, normalized: dict) -> dict:
    tools = _tools(row)
    if tools:
        normalized["tools"] = tools
    return normalized


def _with_system(row: dict, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _normalize_alpaca(row: dict) -> dict:
    instruction = _text_field(row, "instruction", allow_empty=True) if "instruction" in row else None
    extra_input = _text_field(row, "input", required=False)
    if instruction is None:
        if not extra_input.strip():
            raise RowProblem("instruction", "missing field 'instruction'")
        instruction = ""
    if not instruction.strip() and not extra_input.strip():
        raise RowProblem("instruction", "field 'instruction' is empty")
    output = _text_field(row, "output")
    prompt = "\n\n".join(p for p in (instruction, extra_input) if p.strip())
    messages: list[dict[str, str]] = []
    system = _text_field(row, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = row.get("history")
    if hasattr(history, "tolist"):
        history = history.tolist()
    if isinstance(history, str) and history.strip():
        try:
            history = load_json(history)
        except json.JSONDecodeError:
            raise RowProblem("history", "field 'history' must be a list of [instruction, answer] pairs") from None
    if history:
        if not isinstance(history, list):
            raise RowProblem("history", "field 'history' must be a list of [instruction, answer] pairs")
        for turn, pair in enumerate(history, 1):
            if hasattr(pair, "tolist"):
                pair = pair.tolist()
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(p, str) and p.strip() for p in pair)):
                raise RowProblem("history", f"history pair {turn} must be [instruction, answer], both non-empty text")
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _normalize_sharegpt(row: dict) -> dict:
    messages = _with_system(row, _turns(row, "conversations", "from", "value", SHAREGPT_ROLES))
    _check_turns(messages, "conversations")
    return _with_tools(row, {"messages": messages})


def _normalize_messages(row: dict) -> dict:
    messages = _with_system(row, _turns(row, "messages", "role", "content", _MESSAGE_ROLE_MAP))
    _check_turns(messages, "messages")
    return _with_tools(row, {"messages": messages})


def _normalize_prompt_completion(row: dict) -> dict:
    if isinstance(row.get("prompt"), list) or isinstance(row.get("completion"), list):
        roles = _MESSAGE_ROLE_MAP
        prompt = _turns(row, "prompt", "role", "content", roles)
        completion = _turns(row, "completion", "role", "content", roles)
        messages = _with_system(row, prompt + completion)
        _check_turns(messages, "completion")
        return _with_tools(row, {"messages": messages})
    prompt = _text_field(row, "prompt")
    completion = _text_field(row, "completion")
    return {"messages": _with_system(row, [{"role": "user", "content": prompt},
                                           {"role": "assistant", "content": completion}])}


def _normalize_text(row: dict) -> dict:
    return {"text": _text_field(row, "text")}


_NORMALIZERS = {
    "alpaca": _normalize_alpaca,
    "sharegpt": _normalize_sharegpt,
    "messages": _normalize_messages,
    "prompt_completion": _normalize_prompt_completion,
    "text": _normalize_text,
}


def normalize_row(row: Any, fmt: str) -> dict:
    """One raw row -> a normalized example; raises RowProblem."""
    if not isinstance(row, dict):
        raise RowProblem("", f"expected a JSON object, got {type_name(row)}")
    extra = row.get(CSV_EXTRA_CELLS)
    if extra:
        raise RowProblem("", f"{extra} more cell{'s' if extra > 1 else ''} than the header has columns")
    return _NORMALIZERS[fmt](row)
