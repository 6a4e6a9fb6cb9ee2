"""A whole screen: guide data matched to the expression's cells, calls, one perturbation
per cell, the QC tables; the kept cells as an AnnData ready for ``preprocess``."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.guides import knockdown, qc
from pertcontrast.data.guides.assignment import GuideCalls, call_from_umis, calls_from_table
from pertcontrast.data.guides.guide_table import CONTROL_CLASSES, GuideTable
from pertcontrast.data.guides.moi import KEPT, label_cells
from pertcontrast.data.guides.readers import GuideMatrix
from pertcontrast.data.guides.settings import AssignmentSettings, GuideSettings
from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")
UNS_KEY = "pertcontrast_guides"
GEM_SUFFIX = re.compile(r"-\d+$")
OBS_COLUMNS = ("guide", "guide_umis", "guide_umis_total", "n_guides", "assignment", "guide_class")


@dataclass
class GuideResult:
    adata: object  # the kept cells (AnnData: Gene Expression counts, calls in obs)
    cells: pd.DataFrame  # every cell of the expression: calls, perturbation, status
    guides: pd.DataFrame
    perturbations: pd.DataFrame
    control_kinds: pd.DataFrame
    summary: dict


def assign_screen(expression, guide_data: GuideMatrix | pd.DataFrame, table: GuideTable,
                  settings: GuideSettings = GuideSettings(), source: str = "counts") -> GuideResult:
    """Call the guides of every cell of ``expression``, label the cells, build the QC tables."""
    cells = pd.Index(expression.obs_names)
    calls = _calls(guide_data, cells, table, settings.assignment, source)
    per_cell = calls.per_cell().join(label_cells(calls, table, settings.multiple_targets))
    kept_mask = per_cell["status"].isin(KEPT).to_numpy()
    if not kept_mask.any():
        raise InputDataError(f"{source}: no cell was assigned a perturbation ({_counts_text(per_cell)}); check that "
                             "the guide data belongs to these cells, or lower {param:min_umis}.")
    adata = expression[kept_mask].copy()
    _add_obs(adata, per_cell[kept_mask], settings.perturbation_key)
    guides, perturbations, kinds = _qc_tables(calls, table, per_cell, adata, settings)
    summary = _summary(per_cell, calls, guides, settings)
    adata.uns[UNS_KEY] = {"summary": summary, "guides": guides.copy()}
    log.info("guides: %s", _counts_text(per_cell))
    return GuideResult(adata, per_cell, guides, perturbations, kinds, summary)


def _qc_tables(calls: GuideCalls, table: GuideTable, per_cell: pd.DataFrame, adata, settings: GuideSettings):
    """Per guide, per perturbation (both with the knockdown) and per kind of control."""
    kept = per_cell[per_cell["status"].isin(KEPT).to_numpy()]
    guides = qc.guide_rows(calls, table, per_cell)
    perturbations = qc.perturbation_rows(kept, table)
    guides, perturbations = qc.add_knockdown(guides, perturbations, adata, kept, settings.knockdown_fdr,
                                             settings.max_knockdown_controls, settings.seed)
    classes = adata.obs["guide_class"].astype(str)
    control = classes.isin(CONTROL_CLASSES).to_numpy()
    kinds = knockdown.control_kind_rows(sp.csr_matrix(adata.X)[control], classes[control], settings.knockdown_fdr)
    return guides, perturbations, kinds


def _calls(guide_data, cells: pd.Index, table: GuideTable, settings: AssignmentSettings, source: str) -> GuideCalls:
    if isinstance(guide_data, GuideMatrix):
        if guide_data.guides.has_duplicates:
            twice = guide_data.guides[guide_data.guides.duplicated()][0]
            raise InputDataError(f"{guide_data.source}: the guide {twice!r} appears twice; give each guide once.")
        guides = _known_guides(guide_data.guides, table, guide_data.source)
        rows = _cell_positions(guide_data.cells, cells, guide_data.source, source)
        present = rows >= 0
        columns = guide_data.guides.get_indexer(guides)
        matrix = guide_data.umis[np.flatnonzero(present)][:, columns]
        placed = sp.csr_matrix((np.ones(present.sum()), (rows[present], np.arange(present.sum()))),
                               shape=(len(cells), present.sum())) @ matrix
        return call_from_umis(placed, cells, guides, settings)
    calls = guide_data
    where = calls.attrs.get("source", "the calls table")
    guides = _known_guides(pd.Index(pd.unique(calls["guide"])), table, where)
    rows = _cell_positions(pd.Index(calls["cell"]), cells, where, source)
    calls = calls.assign(cell=np.where(rows >= 0, cells.to_numpy()[np.maximum(rows, 0)], None))
    calls = calls[(rows >= 0) & calls["guide"].isin(guides).to_numpy()]
    return calls_from_table(calls, cells, guides)


def _known_guides(found: pd.Index, table: GuideTable, where: str) -> pd.Index:
    known = table.guides[table.guides.isin(found)]  # in the table's order
    if known.empty:
        raise InputDataError(
            f"{where}: none of its {len(found)} guides is in the guide table {table.source} "
            f"(e.g. {', '.join(map(repr, found[:3]))} here, {', '.join(map(repr, table.guides[:3]))} in the table)."
        )
    unknown = found[~found.isin(table.guides)]
    if len(unknown):
        log.warning("%s: %d guides are not in the guide table and are left out (e.g. %s)", where, len(unknown),
                    ", ".join(map(str, unknown[:5])))
    return known


def _cell_positions(guide_cells: pd.Index, cells: pd.Index, where: str, source: str) -> np.ndarray:
    """Row of each guide-data cell in the expression (-1: not a cell of the expression).
    Barcodes are matched as they are, else without a trailing GEM-well suffix ('-1')."""
    if not cells.is_unique:
        raise InputDataError(f"{source}: {int(cells.duplicated().sum())} duplicate cell barcodes (e.g. "
                             f"{cells[cells.duplicated()][0]!r}); make them unique first.")
    positions = cells.get_indexer(guide_cells)
    if (positions >= 0).any():
        return positions
    bare_cells = cells.str.replace(GEM_SUFFIX, "", regex=True)
    bare_guides = guide_cells.astype(str).str.replace(GEM_SUFFIX, "", regex=True)
    if bare_cells.is_unique and bare_cells.get_indexer(bare_guides).max() >= 0:
        return bare_cells.get_indexer(bare_guides)
    raise InputDataError(
        f"{where}: no cell barcode is a cell of {source} (e.g. {', '.join(map(repr, guide_cells[:2]))} there, "
        f"{', '.join(map(repr, cells[:2]))} here); give the guide data of the same cells."
    )


def _add_obs(adata, kept: pd.DataFrame, perturbation_key: str) -> None:
    replaced = [c for c in (*OBS_COLUMNS, perturbation_key) if c in adata.obs]
    if replaced:
        log.warning("guides: the input's obs columns %s are replaced by the guide calls", ", ".join(replaced))
    for column in OBS_COLUMNS:
        adata.obs[column] = kept[column].to_numpy()
    adata.obs[perturbation_key] = pd.Categorical(kept["perturbation"].to_numpy())
    adata.obs["guide_class"] = pd.Categorical(kept["guide_class"].to_numpy())
    adata.obs["assignment"] = pd.Categorical(kept["assignment"].astype(str).to_numpy())


def _summary(per_cell: pd.DataFrame, calls: GuideCalls, guides: pd.DataFrame, settings: GuideSettings) -> dict:
    status = per_cell["status"].value_counts()
    kept = per_cell["status"].isin(KEPT)
    return {
        "cells": int(len(per_cell)),
        "cells_with_guide_umis": int((per_cell["guide_umis_total"] > 0).sum()),
        "cells_kept": int(kept.sum()),
        "single_guide": int((per_cell["assignment"] == "single").sum()),
        "several_guides_one_target": int((kept & (per_cell["n_guides"] > 1) & (per_cell["n_targets"] == 1)).sum()),
        "multiple_targets": int((per_cell["n_targets"] > 1).sum()),
        "no_guide": int(status.get("no guide", 0)),
        "multiple_targets_kept": settings.multiple_targets == "combine",
        "guides_in_table": int(len(guides)),
        "guides_with_cells": int((guides["cells_single"] > 0).sum()),
        "guides_without_knockdown": int((guides["knockdown"] == knockdown.NO_KNOCKDOWN).sum()),
        "calls_from": "thresholds" if calls.thresholds is not None else "calls table",
        "perturbation_key": settings.perturbation_key,
        "settings": {**asdict(settings.assignment), "multiple_targets": settings.multiple_targets,
                     "knockdown_fdr": settings.knockdown_fdr, "max_knockdown_controls": settings.max_knockdown_controls,
                     "seed": settings.seed},
    }


def _counts_text(per_cell: pd.DataFrame) -> str:
    status = per_cell["status"].value_counts()
    parts = [f"{int(status.get(s, 0)):,} {s}" for s in status.index if status.get(s, 0)]
    return f"{len(per_cell):,} cells: " + ", ".join(parts)
