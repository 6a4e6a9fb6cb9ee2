"""The guide table: which perturbation each guide stands for.

A CSV (or TSV) with the columns ``guide`` and ``target`` and, optionally, ``class``:
``targeting``, ``non-targeting`` or ``safe-targeting`` (case, spaces and underscores do not
matter). Without a ``class`` column a guide whose target is literally ``non-targeting`` or
``safe-targeting`` is that kind of control and every other guide is targeting. A control
guide's perturbation label is its class (all non-targeting guides form one control group,
all safe-targeting guides another); its target may be left empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pertcontrast.errors import InputDataError

TARGETING = "targeting"
CONTROL_CLASSES = ("non-targeting", "safe-targeting")
CLASSES = (TARGETING, *CONTROL_CLASSES)
HEADER_ROW = 1


@dataclass(frozen=True)
class GuideTable:
    """One row per guide (index: guide name): ``target``, ``class`` and ``label`` (the
    perturbation the guide stands for: the target, or the class for a control)."""

    table: pd.DataFrame
    source: str

    @property
    def guides(self) -> pd.Index:
        return self.table.index

    def labels(self) -> pd.Series:
        return self.table["label"]

    def class_of_label(self) -> dict[str, str]:
        return dict(zip(self.table["label"], self.table["class"]))


def read_guide_table(path) -> GuideTable:
    path = Path(path)
    name = path.name
    try:
        raw = pd.read_csv(path, sep="\t" if path.suffix.lower() in (".tsv", ".txt") else ",", dtype=str,
                          keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot be read as a guide table CSV ({_first_line(error)}).") from error
    raw.columns = [str(c).strip() for c in raw.columns]
    return guide_table_from_frame(raw, name)


def guide_table_from_frame(raw: pd.DataFrame, name: str) -> GuideTable:
    """Check a guide table read as text; every problem names the row and the column."""
    for column in ("guide", "target"):
        if column not in raw.columns:
            raise InputDataError(
                f"{name} row {HEADER_ROW}: no '{column}' column; a guide table needs the columns guide, target "
                f"and optionally class (the header has: {', '.join(raw.columns)})."
            )
    if raw.empty:
        raise InputDataError(f"{name}: the guide table has a header but no guides.")
    table = pd.DataFrame({column: raw[column].astype(str).str.strip() for column in raw.columns
                          if column in ("guide", "target", "class")})
    rows = pd.RangeIndex(HEADER_ROW + 1, HEADER_ROW + 1 + len(table))
    table["class"] = _classes(table, rows, name)
    _check_values(table, rows, name)
    table["label"] = table["target"].where(table["class"] == TARGETING, table["class"])
    return GuideTable(table.set_index("guide")[["target", "class", "label"]], name)


def _classes(table: pd.DataFrame, rows: pd.Index, name: str) -> pd.Series:
    if "class" not in table.columns:
        target = table["target"].map(_normalise)
        return target.where(target.isin(CONTROL_CLASSES), TARGETING)
    classes = table["class"].map(_normalise)
    bad = ~classes.isin(CLASSES)
    if bad.any():
        first = bad.to_numpy().argmax()
        raise InputDataError(
            f"{name} row {rows[first]}, column 'class': {table['class'].iloc[first]!r} is not a guide class; "
            f"use one of {', '.join(CLASSES)}."
        )
    return classes


def _check_values(table: pd.DataFrame, rows: pd.Index, name: str) -> None:
    empty_guide = (table["guide"] == "").to_numpy()
    if empty_guide.any():
        raise InputDataError(f"{name} row {rows[empty_guide.argmax()]}, column 'guide': empty guide name.")
    empty_target = ((table["target"] == "") & (table["class"] == TARGETING)).to_numpy()
    if empty_target.any():
        raise InputDataError(
            f"{name} row {rows[empty_target.argmax()]}, column 'target': empty target of a targeting guide; "
            "name the target gene, or give the guide a control class (non-targeting, safe-targeting)."
        )
    duplicated = table["guide"].duplicated().to_numpy()
    if duplicated.any():
        row = duplicated.argmax()
        first = (table["guide"] == table["guide"].iloc[row]).to_numpy().argmax()
        raise InputDataError(
            f"{name} row {rows[row]}, column 'guide': duplicate guide {table['guide'].iloc[row]!r} "
            f"(also in row {rows[first]}); list each guide once."
        )
    clash = ((table["class"] == TARGETING) & table["target"].map(_normalise).isin(CONTROL_CLASSES)).to_numpy()
    if clash.any():
        raise InputDataError(
            f"{name} row {rows[clash.argmax()]}, column 'class': target {table['target'].iloc[clash.argmax()]!r} "
            "is a control name but the class is 'targeting'; set the class to the control kind."
        )


def _normalise(value: str) -> str:
    return "-".join(str(value).strip().lower().replace("_", " ").split())


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
