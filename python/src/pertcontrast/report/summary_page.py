"""The run summary page: one row per screen (its headline numbers from
``<id>.report.json``) with a relative link to the screen's report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from pertcontrast.errors import InputDataError
from pertcontrast.report.markup import join, tag
from pertcontrast.report.tables import sortable_table
from pertcontrast.report.templating import render_page

log = logging.getLogger("pertcontrast")
COLUMNS = {  # report.json key -> column heading
    "id": "screen",
    "n_cells": "cells",
    "n_perturbations": "perturbations",
    "n_control_cells": "control cells",
    "phase_predictability_salient": "phase: salient",
    "phase_predictability_background": "phase: background",
    "batch_predictability_salient": "batch: salient",
    "batch_predictability_background": "batch: background",
    "median_salient_norm_control": "norm: control",
    "median_salient_norm_perturbed": "norm: perturbed",
    "salient_norm_auc": "norm AUC",
    "n_perturbations_with_effect": "with effect",
    "n_perturbations_with_de": "with DE genes",
    "responder_fraction": "responder fraction",
    "epochs_run": "epochs",
    "created": "report created",
}


def read_headlines(paths, output_folder, link_template: str | None = None) -> list[dict]:
    """The headline numbers of each report, each with ``link``: relative to ``output_folder``
    (or ``link_template`` with ``{id}`` and ``{html}`` filled in, for a published layout)."""
    headlines, seen = [], set()
    for path in map(Path, paths):
        headline = _read(path)
        if headline["id"] in seen:
            log.warning("summary: screen id '%s' appears more than once (%s)", headline["id"], path)
        seen.add(headline["id"])
        if link_template:
            link = link_template.replace("{id}", quote(headline["id"])).replace("{html}", quote(headline["report_html"]))
        else:
            target = os.path.relpath(path.parent.resolve() / headline["report_html"], Path(output_folder).resolve())
            link = "/".join(quote(part) for part in Path(target).parts)
        headlines.append({**headline, "link": link})
    return headlines


def _read(path: Path) -> dict:
    try:
        headline = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: not readable JSON ({error}); give a .report.json written by "
                             "'pertcontrast report'.") from error
    if not isinstance(headline, dict) or not {"id", "report_html"} <= set(headline):
        raise InputDataError(f"{path}: has no 'id' and 'report_html'; give a .report.json written by "
                             "'pertcontrast report'.")
    headline["id"], headline["report_html"] = str(headline["id"]), str(headline["report_html"])
    return headline


def summary_table(headlines: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame([{key: h.get(key) for key in COLUMNS} for h in headlines], columns=list(COLUMNS))
    for key in COLUMNS:
        if key not in ("id", "created"):
            table[key] = pd.to_numeric(table[key], errors="coerce")
    return table.rename(columns=COLUMNS)


def render_summary(headlines: list[dict], title: str) -> str:
    links = {h["id"]: h["link"] for h in headlines}
    body = join([
        tag("header", tag("h1", title),
            tag("p", f"{len(headlines)} screen{'s' if len(headlines) != 1 else ''}; click a screen for its report. "
                     "Predictability: k-NN balanced accuracy minus chance (low in the salient latent means the "
                     "background was removed). With effect: the responders' detection test (without a "
                     "model: the energy-distance test), BH ≤ 0.05."),
            class_="page"),
        tag("main", tag("section", sortable_table(summary_table(headlines), "summary-table", links,
                                                  search_label="Filter screens", placeholder="screen id…"),
                        id="screens")),
    ], "\n")
    return render_page(title, body)
