"""The QC tables of a guide assignment: one row per guide, one per perturbation, one per
kind of control (the columns are described in docs/outputs.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.guides import knockdown
from pertcontrast.data.guides.assignment import GuideCalls
from pertcontrast.data.guides.guide_table import TARGETING, GuideTable
from pertcontrast.data.guides.moi import COMBINATION

KNOCKDOWN_COLUMNS = ("target_mean", "control_mean", "log2fc", "pvalue", "qvalue", "knockdown")


def guide_rows(calls: GuideCalls, table: GuideTable, cells: pd.DataFrame) -> pd.DataFrame:
    """Per guide of the table: cells with UMIs, cells called, single-guide cells, UMIs, threshold."""
    umis, called = calls.umis.tocsc(), calls.called.tocsc()
    called_umis = calls.umis.multiply(calls.called).tocsc()
    single = cells.loc[cells["assignment"] == "single", "guide"].value_counts()
    frame = pd.DataFrame({
        "guide": calls.guides,
        "cells_with_umis": np.diff(umis.indptr),
        "umis_total": np.asarray(umis.sum(axis=0)).ravel().astype(np.int64),
        "cells_called": np.diff(called.indptr),
        "median_umis_called": [_median(called_umis, j) for j in range(called_umis.shape[1])],
    })
    if calls.thresholds is not None:
        frame["threshold"] = [t.umis for t in calls.thresholds]
        frame["threshold_method"] = [t.method for t in calls.thresholds]
    else:
        frame["threshold"] = np.nan
        frame["threshold_method"] = "calls table"
    frame = frame.set_index("guide").reindex(table.guides)
    frame.index.name = "guide"
    for column in ("cells_with_umis", "umis_total", "cells_called"):
        frame[column] = frame[column].fillna(0).astype(np.int64)
    frame["threshold_method"] = frame["threshold_method"].fillna("not in the guide data")
    frame["cells_single"] = single.reindex(frame.index).fillna(0).astype(np.int64).to_numpy()
    frame.insert(0, "class", table.table["class"])
    frame.insert(0, "target", table.table["target"])
    return frame.reset_index()


def perturbation_rows(kept: pd.DataFrame, table: GuideTable) -> pd.DataFrame:
    """Per perturbation (of the guide table, and combinations that were kept): its class,
    guides, cells (with one guide, with several)."""
    grouped = kept.groupby("perturbation", observed=True)
    labels = pd.Index(pd.unique(table.labels())).union(grouped.size().index, sort=False)
    class_of = {**dict(zip(kept["perturbation"], kept["guide_class"])), **table.class_of_label()}
    frame = pd.DataFrame({
        "class": [class_of[label] for label in labels],
        "guides": table.labels().value_counts().reindex(labels).fillna(0).astype(np.int64),
        "guides_seen": grouped["guide"].agg(lambda g: len({x for label in g for x in label.split("|")})),
        "cells": grouped.size(),
        "cells_single_guide": grouped["assignment"].agg(lambda a: int((a == "single").sum())),
    }, index=labels)
    for column in ("guides_seen", "cells", "cells_single_guide"):
        frame[column] = frame[column].reindex(labels).fillna(0).astype(np.int64)
    frame.index.name = "perturbation"
    return frame.reset_index().sort_values(["class", "cells"], ascending=[False, False], ignore_index=True)


def add_knockdown(guides: pd.DataFrame, perturbations: pd.DataFrame, adata, kept: pd.DataFrame,
                  fdr: float, max_controls: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The on-target knockdown columns of both tables (``knockdown`` module)."""
    counts = sp.csr_matrix(adata.X)
    genes = knockdown.gene_index(adata.var, adata.var_names)
    is_control = (kept["guide_class"] != TARGETING) & (kept["guide_class"] != COMBINATION)
    controls = np.flatnonzero(is_control.to_numpy())
    targeting = guides[guides["class"] == TARGETING]
    single = kept["guide"].where(kept["assignment"] == "single", "")
    by_guide = {g: np.flatnonzero((single == g).to_numpy()) for g in targeting["guide"]}
    guide_stats = knockdown.knockdown_rows(by_guide, dict(zip(targeting["guide"], targeting["target"])), counts,
                                           genes, controls, fdr, max_controls, seed)
    perturbed = perturbations[perturbations["class"] == TARGETING]["perturbation"]
    by_label = {p: np.flatnonzero((kept["perturbation"] == p).to_numpy()) for p in perturbed}
    label_stats = knockdown.knockdown_rows(by_label, {p: p for p in perturbed}, counts, genes, controls, fdr,
                                           max_controls, seed)
    return _merge(guides, guide_stats, "guide"), _merge(perturbations, label_stats, "perturbation")


def _merge(frame: pd.DataFrame, stats: pd.DataFrame, key: str) -> pd.DataFrame:
    stats = stats.rename(columns={"name": key}).drop(columns=["cells"], errors="ignore")
    merged = frame.merge(stats[[key, *KNOCKDOWN_COLUMNS]] if len(stats) else
                         pd.DataFrame(columns=[key, *KNOCKDOWN_COLUMNS]), on=key, how="left")
    merged["knockdown"] = merged["knockdown"].where(merged["class"] == TARGETING, knockdown.CONTROL)
    merged.loc[merged["class"] == COMBINATION, "knockdown"] = COMBINATION
    for column in KNOCKDOWN_COLUMNS[:-1]:
        merged[column] = merged[column].astype(float)
    return merged


def _median(matrix: sp.csc_matrix, column: int) -> float:
    values = matrix.data[matrix.indptr[column]:matrix.indptr[column + 1]]
    return float(np.median(values)) if values.size else np.nan
