"""The report's calibration section, from the folder of 'pertcontrast calibration'
(calibration.csv, summary.json; docs/outputs.md): what the calls find in pseudo-perturbations
(groups of null controls), against the targets of a calibrated screen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pertcontrast.errors import InputDataError
from pertcontrast.report.markup import Html, join, tag
from pertcontrast.report.tables import sortable_table

STEP = "pertcontrast calibration"
REQUIRED = ("group", "n_cells", "energy_pvalue", "energy_padj", "effect_called", "responder_fraction")
SHOWN = {"effects_called": "pseudo-perturbations with an effect", "responder_fraction": "mean responder fraction",
         "model_called_fraction": "model DE: fraction of genes called",
         "wilcoxon_called_fraction": "Wilcoxon DE: fraction of genes called"}


@dataclass
class Calibration:
    folder: Path
    table: pd.DataFrame
    summary: dict


def read_calibration(path) -> Calibration:
    folder = Path(path)
    if not (folder / "calibration.csv").is_file() or not (folder / "summary.json").is_file():
        raise InputDataError(f"{folder}: no calibration.csv and summary.json; give the folder written by '{STEP}'.")
    try:
        table = pd.read_csv(folder / "calibration.csv")
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError) as error:
        raise InputDataError(f"{folder}: its calibration.csv or summary.json cannot be read; re-run '{STEP}'.") \
            from error
    missing = [c for c in REQUIRED if c not in table.columns] + [k for k in ("targets", "passed") if k not in summary]
    if missing:
        raise InputDataError(f"{folder} lacks {', '.join(missing)}; re-run '{STEP}'.")
    return Calibration(folder, table, summary)


def section(calibration: Calibration | None) -> Html:
    if calibration is None:
        return tag("p", f"Not run: no calibration folder given (run '{STEP}').", class_="not-run")
    s, targets = calibration.summary, calibration.summary["targets"]
    intro = tag("p", f"{s['n_groups']} pseudo-perturbations: random groups of the {s.get('n_null_controls', '?')} "
                     "null controls (decoy controls and controls the model never saw), sized like this screen's "
                     "perturbations, through the same effect test, responder calls and DE, each against the other "
                     "null controls. None has an effect, so a calibrated screen calls none.", class_="note")
    verdict = tag("p", "Within every target: the calls of this screen are calibrated." if s["passed"] else
                  "Outside a target (marked below): treat this screen's calls with care; more null controls "
                  "(a higher decoy_control_fraction) or more training may help.",
                  class_="good" if s["passed"] else "bad", id="calibration-verdict")
    rows = [{"check": label, "value": s[key], "target": f"≤ {targets[key]}",
             "within": "yes" if s[key] <= targets[key] else "NO"} for key, label in SHOWN.items() if key in s]
    return join([intro, verdict, sortable_table(pd.DataFrame(rows), "calibration-summary-table",
                                                placeholder="check…"),
                 tag("h3", "Pseudo-perturbations"),
                 sortable_table(calibration.table, "calibration-table", placeholder="group…")])
