"""How a dataset problem is reported: ``DataError`` (the dataset cannot be used) and ``RowIssue`` (one
row's problem, with its 1-based line or row number), and the list of problems a message shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

MAX_LISTED_PROBLEMS = 10


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and the line or row."""

    def __init__(self, message: str, issues: Optional[list["RowIssue"]] = None, source: Optional[str] = None):
        super().__init__(message)
        self.issues = issues or []
        self.source = source


@dataclass(frozen=True)
class RowIssue:
    """A problem with one row. ``kind`` says what ``row`` counts: a file "line" or a "row" index."""

    row: int  # 1-based
    field: str
    message: str
    kind: str = "line"
    severity: str = "error"  # "error" (row unusable) or "warning"

    @property
    def where(self) -> str:
        return f"{self.kind} {self.row}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "kind": self.kind, "field": self.field, "message": self.message,
                "severity": self.severity}


def problem_list(head: str, issues: Sequence[RowIssue]) -> str:
    """``head`` and the first MAX_LISTED_PROBLEMS problems, one a line, and how many more there are."""
    lines = [head] + [f"  {i}" for i in issues[:MAX_LISTED_PROBLEMS]]
    if len(issues) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(issues) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


def type_name(value: Any) -> str:
    """A parsed value's type in the words of a JSON file, for messages."""
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
            type(None): "null", str: "text"}.get(type(value), type(value).__name__)
