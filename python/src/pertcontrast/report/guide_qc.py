"""The report's guide section, from the QC folder of 'pertcontrast assign-guides'
(guides.csv, perturbations.csv, control_kinds.csv, summary.json; docs/outputs.md): how
cells were assigned, cells per perturbation and per guide, on-target knockdown with the
guides that show none flagged, and whether the kinds of control differ."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError
from pertcontrast.report.figures import new_figure, short_label
from pertcontrast.report.markup import Html, format_number, join, tag
from pertcontrast.report.tables import sortable_table

STEP = "pertcontrast assign-guides"
GUIDE_COLUMNS = ("guide", "target", "class", "cells_with_umis", "cells_called", "cells_single", "threshold",
                 "knockdown")
PERTURBATION_COLUMNS = ("perturbation", "class", "guides", "cells", "knockdown")
SHOWN_GUIDE_COLUMNS = ("guide", "target", "class", "cells_single", "cells_called", "cells_with_umis",
                       "median_umis_called", "threshold", "threshold_method", "log2fc", "qvalue", "knockdown")
SHOWN_PERTURBATION_COLUMNS = ("perturbation", "class", "guides", "guides_seen", "cells", "cells_single_guide",
                              "log2fc", "qvalue", "knockdown")
MAX_FIGURE_GUIDES = 60
COLOURS = {"knockdown": "#1b7f3b", "no knockdown": "#b3261e"}


@dataclass
class GuideQC:
    folder: Path
    guides: pd.DataFrame
    perturbations: pd.DataFrame
    control_kinds: pd.DataFrame | None
    summary: dict


def read_guide_qc(path) -> GuideQC:
    folder = Path(path)
    if not folder.is_dir():
        raise InputDataError(f"{folder}: not a folder; give the QC folder written by '{STEP}' (guide_qc/).")
    guides = _table(folder / "guides.csv", GUIDE_COLUMNS)
    perturbations = _table(folder / "perturbations.csv", PERTURBATION_COLUMNS)
    kinds = _table(folder / "control_kinds.csv", ("control_kind", "genes_different")) \
        if (folder / "control_kinds.csv").is_file() else None
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError) as error:
        raise InputDataError(f"{folder / 'summary.json'}: missing or not JSON; give the QC folder written by "
                             f"'{STEP}'.") from error
    return GuideQC(folder, guides, perturbations, kinds, summary)


def _table(path: Path, required) -> pd.DataFrame:
    if not path.is_file():
        raise InputDataError(f"{path}: no such file; give the QC folder written by '{STEP}'.")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: cannot be read as CSV; re-run '{STEP}'.") from error
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputDataError(f"{path} lacks the column(s) {', '.join(missing)}; re-run '{STEP}'.")
    for column in ("guide", "target", "perturbation", "class", "knockdown"):
        if column in table:
            table[column] = table[column].fillna("").astype(str)
    return table


def knockdown_figure(qc: GuideQC):
    """On-target log2 fold change of each measured guide (the most affected first)."""
    measured = qc.guides[qc.guides["knockdown"].isin(list(COLOURS))].copy()
    if measured.empty:
        return None
    measured = measured.sort_values("log2fc").head(MAX_FIGURE_GUIDES)
    figure = new_figure(6.5, 0.9 + 0.17 * len(measured))
    axis = figure.subplots()
    values = measured["log2fc"].to_numpy(dtype=float)
    axis.barh(range(len(measured)), values, color=[COLOURS[k] for k in measured["knockdown"]], height=0.7)
    axis.set_yticks(range(len(measured)), [short_label(f"{g} ({t})") for g, t in
                                          zip(measured["guide"], measured["target"])], fontsize=6)
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_xlabel("target gene log2 fold change vs controls (per 10k counts)", fontsize=8)
    return figure


def section(qc: GuideQC | None, figure) -> Html:
    if qc is None:
        return tag("p", f"Not run: no guide QC folder given (the screen's perturbations came labelled, or run "
                        f"'{STEP}' on the Cell Ranger output).", class_="not-run")
    parts = [tag("p", _assignment_text(qc.summary), class_="note", id="guide-summary"), _flagged(qc.guides)]
    if figure is not None:
        parts.append(figure)
    parts += [tag("h3", "Perturbations"),
              sortable_table(_shown(qc.perturbations, SHOWN_PERTURBATION_COLUMNS), "perturbation-qc-table",
                             placeholder="perturbation, class…"),
              tag("h3", "Guides"),
              sortable_table(_shown(qc.guides, SHOWN_GUIDE_COLUMNS), "guide-qc-table",
                             placeholder="guide, target, knockdown…"),
              tag("h3", "Kinds of control"), _control_kinds(qc.control_kinds)]
    return join(parts)


def _assignment_text(s: dict) -> str:
    multiple = "kept as combined labels (A+B)" if s.get("multiple_targets_kept") else "excluded"
    calls = "per-guide thresholds (two-component mixture on log UMIs)" if s.get("calls_from") == "thresholds" \
        else "a calls table"
    return (f"{format_number(s.get('cells', 0))} cells; {format_number(s.get('cells_kept', 0))} kept: "
            f"{format_number(s.get('single_guide', 0))} with one guide, "
            f"{format_number(s.get('several_guides_one_target', 0))} with several guides of one target. Not kept: "
            f"{format_number(s.get('no_guide', 0))} without a guide; {format_number(s.get('multiple_targets', 0))} "
            f"with guides of several targets ({multiple}). Guides called from {calls}.")


def _flagged(guides: pd.DataFrame) -> Html:
    flagged = guides[guides["knockdown"] == "no knockdown"]
    measured = guides["knockdown"].isin(list(COLOURS)).sum()
    if not measured:
        return tag("p", "On-target knockdown: no guide could be measured (targets not in the expression data, or "
                        "too few cells).", class_="note")
    if flagged.empty:
        return tag("p", f"On-target knockdown: all {measured} measured guides lower their target.", class_="good",
                   id="guides-flagged")
    names = ", ".join(f"{g} ({t})" for g, t in zip(flagged["guide"], flagged["target"]))
    return tag("p", f"{len(flagged)} of {measured} measured guides show no on-target knockdown: {names}.",
               class_="bad", id="guides-flagged")


def _control_kinds(kinds: pd.DataFrame | None) -> Html:
    if kinds is None or kinds.empty:
        return tag("p", "One kind of control only: nothing to compare.", class_="note")
    return join([tag("p", "Each kind of control against the others: genes whose log expression differs (Welch's "
                          "t-test, BH q < 0.05), and the correlation of their mean profiles. Controls that differ "
                          "are not interchangeable backgrounds.", class_="note"),
                 sortable_table(kinds, "control-kind-table", placeholder="control kind…")])


def _shown(table: pd.DataFrame, columns) -> pd.DataFrame:
    shown = table[[c for c in columns if c in table.columns]].copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = shown[column].replace({np.nan: ""})
    return shown
