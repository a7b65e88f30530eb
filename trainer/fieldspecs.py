"""The schema as data, for generated forms, docs and contract tests: one FieldSpec per TrainConfig field
(its kind, bounds, help, group, visibility and where its value goes), read from the field declarations in
trainer/config.py."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from trainer.config import TrainConfig


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # "bool", "int", "float", "str", "choice", "list", "dict"
    default: Any
    help: str
    group: str
    advanced: bool
    optional: bool  # None is a valid value ("auto" / "empty")
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    sft: str | None = None
    sft_via: str | None = None
    used_by: tuple[str, ...] = ()
    not_for_trainer: str | None = None
    lf: str | None = None
    lf_default: Any = None
    lf_skip: str | None = None
    visible_when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ((field, allowed values), ...), all must hold

    def shown_with(self, values: dict[str, Any]) -> bool:
        """Whether this field matters given the other fields' values (a field not given counts as holding)."""
        return all(values[name] in allowed for name, allowed in self.visible_when if name in values)


def field_specs() -> list[FieldSpec]:
    """One FieldSpec per TrainConfig field, in declaration order."""
    specs = []
    for name, info in TrainConfig.model_fields.items():
        extra = info.json_schema_extra or {}
        annotation = info.annotation
        optional = False
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is Union and type(None) in args:
            optional = True
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]
        origin = typing.get_origin(annotation)
        choices: tuple[Any, ...] = ()
        if origin is Literal:
            kind, choices = "choice", typing.get_args(annotation)
        elif annotation is bool:
            kind = "bool"
        elif annotation is int:
            kind = "int"
        elif annotation is float:
            kind = "float"
        elif annotation is str:
            kind = "str"
        elif origin is dict:
            kind = "dict"
        else:
            kind = "list"  # str | list[str]
        minimum = maximum = None
        exclusive_min = exclusive_max = False
        for meta in info.metadata:
            for attr, is_max, exclusive in (("ge", False, False), ("gt", False, True), ("le", True, False),
                                             ("lt", True, True)):
                value = getattr(meta, attr, None)
                if value is None:
                    continue
                if is_max:
                    maximum, exclusive_max = value, exclusive
                else:
                    minimum, exclusive_min = value, exclusive
        specs.append(FieldSpec(
            name=name,
            label=str(extra.get("label") or name.replace("_", " ").capitalize()),
            kind=kind,
            default=info.default,
            help=info.description or "",
            group=str(extra["group"]),
            advanced=bool(extra.get("advanced")),
            optional=optional,
            choices=choices,
            minimum=minimum,
            maximum=maximum,
            exclusive_minimum=exclusive_min,
            exclusive_maximum=exclusive_max,
            sft=extra.get("sft"),
            sft_via=extra.get("sft_via"),
            used_by=tuple(extra.get("used_by") or ()),
            not_for_trainer=extra.get("not_for_trainer"),
            lf=extra.get("lf"),
            lf_default=extra.get("lf_default", info.default),
            lf_skip=extra.get("lf_skip"),
            visible_when=tuple((key, tuple(allowed)) for key, allowed in (extra.get("visible_when") or {}).items()),
        ))
    return specs
