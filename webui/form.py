"""The train form, generated from the schema. Pure: no gradio here (webui/tabs/train.py renders it).

Every TrainConfig field gets one control described by a `Control`, built from `field_specs()`; nothing
lists fields by hand. `config_to_values` and `values_to_config` convert between a TrainConfig and the
values the controls hold, so the form and the schema round-trip exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Collection, Sequence


from trainer.config import GROUPS, ConfigError, TrainConfig
from trainer.fieldspecs import FieldSpec, field_specs
from trainer.textio import parse_yaml

EMPTY = "empty"  # the choice that means None for an optional field
AUTO = "auto"  # ... for an optional on/off field, where None means "decide for me"
TRUE, FALSE = "on", "off"
METHODS = {  # the top bar's method -> (finetuning_type, quantization_bit as the control holds it)
    "LoRA": ("lora", EMPTY),
    "QLoRA (4-bit)": ("lora", "4"),
    "QLoRA (8-bit)": ("lora", "8"),
    "Full": ("full", EMPTY),
}


@dataclass(frozen=True)
class Control:
    """How one schema field is shown: widget kind, choices, and the words around it."""

    name: str
    widget: str  # "checkbox" | "number" | "dropdown" | "textbox"
    label: str
    help: str
    group: str
    advanced: bool
    choices: tuple[str, ...] = ()
    integer: bool = False
    placeholder: str = ""
    spec: FieldSpec | None = None

    @property
    def info(self) -> str:
        """Help text plus the bounds, shown under the label."""
        return f"{self.help} {bounds_text(self.spec)}".strip() if self.spec else self.help


def bounds_text(spec: FieldSpec) -> str:
    parts = []
    if spec.minimum is not None:
        parts.append(f"{'>' if spec.exclusive_minimum else '≥'} {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"{'<' if spec.exclusive_maximum else '≤'} {spec.maximum:g}")
    return f"[{', '.join(parts)}]" if parts else ""


def _choice_text(value: Any) -> str:
    return str(value)


def control_for(spec: FieldSpec) -> Control:
    common = dict(name=spec.name, label=spec.label, help=spec.help, group=spec.group, advanced=spec.advanced,
                  spec=spec)
    if spec.kind == "bool":
        if spec.optional:
            return Control(widget="dropdown", choices=(AUTO, TRUE, FALSE), **common)
        return Control(widget="checkbox", **common)
    if spec.kind == "choice":
        choices = tuple(_choice_text(c) for c in spec.choices)
        if spec.optional:
            choices = (EMPTY,) + choices
        return Control(widget="dropdown", choices=choices, **common)
    if spec.kind in ("int", "float"):
        if spec.optional:  # a textbox, so "empty" is something the user can type (or leave blank)
            return Control(widget="textbox", integer=spec.kind == "int", placeholder=f"{EMPTY}", **common)
        return Control(widget="number", integer=spec.kind == "int", **common)
    if spec.kind == "list":
        examples = {"lora_target": "all-linear, or q_proj,v_proj,...", "report_to": "tensorboard, trackio"}
        return Control(widget="textbox", placeholder=examples.get(spec.name, "a, b, ..."), **common)
    if spec.kind == "dict":
        return Control(widget="textbox", placeholder="{question: instruction, answer: output}", **common)
    return Control(widget="textbox", placeholder=EMPTY if spec.optional else "", **common)


def controls() -> list[Control]:
    """One control per schema field, in schema order."""
    return [control_for(spec) for spec in field_specs()]


def grouped_controls() -> list[tuple[str, str, bool, list[Control], list[Control]]]:
    """(group key, title, open by default, common controls, advanced controls) in the schema's group order."""
    all_controls = controls()
    out = []
    for key, title, is_open in GROUPS:
        members = [c for c in all_controls if c.group == key]
        out.append((key, title, is_open, [c for c in members if not c.advanced], [c for c in members if c.advanced]))
    return out


# --- values <-> config ---------------------------------------------------------------------------

def to_control_value(control: Control, value: Any) -> Any:
    """A field's value as its control holds it."""
    spec = control.spec
    assert spec is not None
    if spec.kind == "bool":
        if spec.optional:
            return AUTO if value is None else (TRUE if value else FALSE)
        return bool(value)
    if spec.kind == "choice":
        return EMPTY if value is None else _choice_text(value)
    if spec.kind in ("int", "float"):
        if control.widget == "textbox":
            return "" if value is None else _number_text(value)
        return value
    if spec.kind == "list":
        return ", ".join(value) if isinstance(value, list) else str(value)
    if spec.kind == "dict":
        return "" if not value else json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if value != 0 else "0"
    return repr(value) if isinstance(value, float) else str(value)


class _FieldProblem(ValueError):
    pass


def from_control_value(control: Control, raw: Any) -> Any:
    """A control's value as the schema expects it (None for "empty"/"auto"). Raises _FieldProblem."""
    spec = control.spec
    assert spec is not None
    if spec.kind == "bool":
        if spec.optional:
            text = str(raw or AUTO).strip().lower()
            if text == AUTO:
                return None
            if text in (TRUE, "true", "yes", "1"):
                return True
            if text in (FALSE, "false", "no", "0"):
                return False
            raise _FieldProblem(f"choose {AUTO}, {TRUE} or {FALSE} (got {raw!r})")
        return bool(raw)
    if spec.kind == "choice":
        if raw is None or str(raw).strip() in ("", EMPTY):
            if spec.optional:
                return None
            raise _FieldProblem(f"choose one of {', '.join(map(str, spec.choices))}")
        for choice in spec.choices:
            if str(choice) == str(raw).strip():
                return choice
        raise _FieldProblem(f"choose one of {', '.join(map(str, spec.choices))} (got {raw!r})")
    if spec.kind in ("int", "float"):
        return _parse_number(spec, raw)
    if spec.kind == "list":
        return str(raw or "")
    if spec.kind == "dict":
        text = str(raw or "").strip()
        if not text:
            return {}
        try:
            data = parse_yaml(text, spec.name)
        except ConfigError:
            raise _FieldProblem("write a mapping such as {question: instruction, answer: output}") from None
        if not isinstance(data, dict):
            raise _FieldProblem("write a mapping such as {question: instruction, answer: output}")
        return {str(k): str(v) for k, v in data.items()}
    text = "" if raw is None else str(raw).strip()
    if spec.optional and text in ("", EMPTY):
        return None
    return text


def _parse_number(spec: FieldSpec, raw: Any) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", EMPTY, "none")):
        if spec.optional:
            return None
        raise _FieldProblem("a number is required")
    if isinstance(raw, bool):
        raise _FieldProblem(f"a number is required (got {raw!r})")
    if isinstance(raw, (int, float)):
        value = raw
    else:
        text = str(raw).strip().replace("_", "")
        try:
            value = int(text) if spec.kind == "int" else float(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise _FieldProblem(f"a number is required (got {raw!r})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _FieldProblem(f"must be a finite number (got {raw!r})")
    if spec.kind == "int":
        if float(value) != int(value):
            raise _FieldProblem(f"must be a whole number (got {raw!r})")
        return int(value)
    return float(value)


def config_to_values(cfg: TrainConfig) -> dict[str, Any]:
    """{field name: control value} for every schema field."""
    data = cfg.model_dump()
    return {c.name: to_control_value(c, data[c.name]) for c in controls()}


def values_to_dict(values: dict[str, Any]) -> dict[str, Any]:
    """Control values -> a plain field dict; raises ConfigError naming each field that cannot be parsed."""
    data: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for control in controls():
        if control.name not in values:
            continue
        try:
            data[control.name] = from_control_value(control, values[control.name])
        except _FieldProblem as exc:
            errors.append((control.name, str(exc)))
    if errors:
        raise ConfigError(errors)
    return data


def values_to_config(values: dict[str, Any]) -> TrainConfig:
    """Control values -> a validated TrainConfig; raises ConfigError (use .by_field() to show at the fields).

    A value that cannot even be parsed (text in a number field) is reported together with what the
    schema says of the other fields, so the user sees every problem at once, not one per attempt.
    """
    try:
        return TrainConfig.from_dict(values_to_dict(values))
    except ConfigError as parse_error:
        if not parse_error.errors or any(not field for field, _ in parse_error.errors):
            raise
        unparsable = {field for field, _ in parse_error.errors}
        rest = {c.name: values[c.name] for c in controls() if c.name in values and c.name not in unparsable}
        try:
            TrainConfig.from_dict(values_to_dict(rest))
        except ConfigError as schema_error:
            extra = [(f, m) for f, m in schema_error.errors if f not in unparsable]
            raise ConfigError(parse_error.errors + extra) from None
        raise


def method_of(values: dict[str, Any]) -> str:
    """The top bar's method for the form's finetuning_type and quantization_bit."""
    if values.get("finetuning_type") == "full":
        return "Full"
    return {"4": "QLoRA (4-bit)", "8": "QLoRA (8-bit)"}.get(str(values.get("quantization_bit") or EMPTY), "LoRA")


# --- visibility declared in the schema (`visible_when`) ---------------------------------------------

def governing_fields() -> list[str]:
    """The fields that some other field's visibility depends on, in schema order."""
    named = {name for spec in field_specs() for name, _ in spec.visible_when}
    return [spec.name for spec in field_specs() if spec.name in named]


def hidden_fields(values: dict[str, Any], errors: Collection[str] = ()) -> set[str]:
    """Fields whose `visible_when` does not hold for the form's values.

    A governing value that cannot be parsed hides nothing, and a field with an error stays shown: the
    user must be able to see, and fix, what stops the run.
    """
    by_name = {c.name: c for c in controls()}
    parsed: dict[str, Any] = {}
    for name in governing_fields():
        if name in values:
            try:
                parsed[name] = from_control_value(by_name[name], values[name])
            except _FieldProblem:
                continue
    return {spec.name for spec in field_specs() if spec.name not in errors and not spec.shown_with(parsed)}


def shown_groups(hidden: Collection[str], left_out: Collection[str] = ()) -> dict[tuple[str, bool], bool]:
    """(group key, its Advanced part?) -> shown, for the groups that have controls besides `left_out`.

    A group (or its Advanced part) is shown while any of its controls is.
    """
    out: dict[tuple[str, bool], bool] = {}
    for key, _, _, common, advanced in grouped_controls():
        common = [c.name for c in common if c.name not in left_out]
        advanced = [c.name for c in advanced if c.name not in left_out]
        if advanced:
            out[(key, True)] = any(name not in hidden for name in advanced)
        if common or advanced:
            out[(key, False)] = any(name not in hidden for name in common + advanced)
    return out


def field_errors_text(errors: dict[str, str], label_of: Any = None, message_of: Any = None) -> str:
    """An error box naming each field by its label (and its schema name, unless the label already says it).

    `label_of(name, english_label)` and `message_of(message)` put them in the page's language."""
    labels = {c.name: c.label for c in controls()}
    lines = []
    for name, message in errors.items():
        message = message_of(message) if message_of else message
        if name:
            label = labels.get(name, name)
            label = label_of(name, label) if label_of else label
            named = "" if name in label else f" (`{name}`)"
            lines.append(f"- **{label}**{named}: {message}")
        else:
            lines.append(f"- {message}")
    return "\n".join(lines)
