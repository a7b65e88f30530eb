"""Data that is not supervised fine-tuning data, named before it trains as if it were.

KTO data (a true/false ``label`` or ``kto_tag`` column: which answers to imitate and which not; JSON
booleans, or the words true/false as a CSV file spells them),
preference data (``chosen``/``rejected`` answers, ``chosen_messages``/``rejected_messages``) and
multimodal data (``images``/``videos``/``audios`` columns, ``<image>``-style placeholders) would train
as SFT: every answer imitated, undesirable ones included, placeholders learned as literal text.
:func:`sft_records` refuses them with a message saying what the data is and what tunedeck trains, or,
for KTO with ``kto_desirable_only``, keeps the desirable rows only.
"""

from __future__ import annotations

from typing import Any, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError
from trainer.datasets.sources import Record

KTO_COLUMNS = ("kto_tag", "label")
PREFERENCE_PAIRS = (("chosen", "rejected"), ("chosen_messages", "rejected_messages"))
MEDIA_COLUMNS = ("images", "videos", "audios")
MEDIA_PLACEHOLDERS = ("<image>", "<video>", "<audio>")
# Placeholders are looked for in this many rows: a multimodal dataset has them in nearly every row.
PLACEHOLDER_SCAN_ROWS = 200


def sft_records(records: list[Record], cfg: TrainConfig, source: str) -> list[Record]:
    """The records unchanged when they are SFT data; the desirable KTO rows with ``kto_desirable_only``;
    a DataError naming the kind of data otherwise. Runs after column_mapping, so a mapped column
    (chosen -> output) counts under its new name."""
    rows = [r.value for r in records if isinstance(r.value, dict)]
    columns = {k for row in rows for k, v in row.items() if v is not None}
    kto = next((c for c in KTO_COLUMNS if c in columns and _all_bool(rows, c)), None)
    if kto is not None:
        return _kto_records(records, kto, cfg, source)
    for chosen, rejected in PREFERENCE_PAIRS:
        if chosen in columns and rejected in columns:
            target = "output" if "instruction" in columns else ("completion" if "prompt" in columns else "conversations")
            raise DataError(
                f"{source}: this is preference data (a '{chosen}' and a '{rejected}' answer per row, for DPO, ORPO "
                "or reward models): tunedeck trains supervised fine-tuning on one answer per prompt. To train on the "
                f"chosen answers, set column_mapping {{{chosen}: {target}}} (the rejected ones are then left "
                f"out), or train it with LLaMA-Factory's stage dpo", source=source)
    media = [c for c in MEDIA_COLUMNS if c in columns and any(_non_empty(row.get(c)) for row in rows)]
    placeholders = sorted({p for row in rows[:PLACEHOLDER_SCAN_ROWS] for p in MEDIA_PLACEHOLDERS
                           if _mentions(row, p)})
    if media or placeholders:
        found = ([f"a '{c}' column" for c in media]
                 + [f"{p} placeholders in the text" for p in placeholders])
        raise DataError(
            f"{source}: this is multimodal data ({', '.join(found)}): tunedeck fine-tunes text-only models and would "
            "train each placeholder as literal text, without the media. Remove the media columns and "
            "placeholders to train on the text alone, or train it with LLaMA-Factory and a vision/audio model",
            source=source)
    return records


def _kto_records(records: list[Record], column: str, cfg: TrainConfig, source: str) -> list[Record]:
    desirable = [r for r in records if isinstance(r.value, dict) and _tag(r.value.get(column)) is True]
    undesirable = sum(1 for r in records if isinstance(r.value, dict) and _tag(r.value.get(column)) is False)
    if not cfg.kto_desirable_only:
        raise DataError(
            f"{source}: this is KTO data (a true/false '{column}' column marks which answers to imitate: "
            f"{len(desirable)} desirable, {undesirable} undesirable): tunedeck trains supervised fine-tuning, which "
            "would imitate the undesirable answers too. Set kto_desirable_only to train on the "
            f"{len(desirable)} desirable rows only, or train it with LLaMA-Factory's stage kto", source=source)
    if not desirable:
        raise DataError(f"{source}: kto_desirable_only is set but no row has {column}: true", source=source)
    return [Record(r.row, r.kind, {k: v for k, v in r.value.items() if k != column}) for r in desirable]


def _tag(value: Any) -> bool | None:
    """A KTO tag's truth: a JSON boolean, or 'true'/'false' in any case (CSV cells are text); None otherwise.
    Numbers are not tags: a 0/1 label column is as likely a class as a KTO mark."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _all_bool(rows: Sequence[dict], column: str) -> bool:
    values = [row[column] for row in rows if row.get(column) not in (None, "")]
    return bool(values) and all(_tag(v) is not None for v in values)


def _non_empty(value: Any) -> bool:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return bool(value) and not (isinstance(value, float) and value != value)


def _mentions(value: Any, placeholder: str) -> bool:
    if isinstance(value, str):
        return placeholder in value
    if isinstance(value, dict):
        return any(_mentions(v, placeholder) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, placeholder) for v in value)
    return False
