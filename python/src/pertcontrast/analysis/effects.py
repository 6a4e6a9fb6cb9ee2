"""The perturbation effect table: one row per perturbation with its cells, responders,
effect magnitude (energy distance to the controls in the salient space, permutation
p-value), DE gene counts and top genes, and its perturbation cluster."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pertcontrast.analysis.cells import perturbation_groups
from pertcontrast.analysis.energy import energy_test
from pertcontrast.analysis.multiple_testing import benjamini_hochberg
from pertcontrast.errors import ParameterError

PROFILES = ("salient", "lfc")
COLUMNS = [
    "perturbation", "n_cells", "n_responders", "responder_fraction", "energy_distance", "energy_pvalue",
    "energy_padj", "detection_pvalue", "detection_padj", "n_de_genes", "n_de_up", "n_de_down", "top_up", "top_down",
    "lfc_agreement", "cluster", "effect_detected",
]


@dataclass(frozen=True)
class EffectSettings:
    max_cells: int = 300  # per group for the energy distance
    n_permutations: int = 1000
    responders_only: bool = False
    top_n: int = 10
    profile: str = "salient"  # what perturbations are clustered on: "salient" or "lfc"
    fdr: float = 0.05  # detection test (the responders'; else the energy test) vs the null controls, BH
    seed: int = 0

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ParameterError(f"must be one of {', '.join(PROFILES)} (got {self.profile!r}).", param="profile")
        if self.max_cells < 2:
            raise ParameterError(f"must be at least 2 (got {self.max_cells}).", param="max_cells")
        if self.n_permutations < 0:
            raise ParameterError(f"must be 0 or more (got {self.n_permutations}).", param="n_permutations")
        if not 0 < self.fdr < 1:
            raise ParameterError(f"must be between 0 and 1 (got {self.fdr}).", param="fdr")
        if self.top_n < 1:
            raise ParameterError(f"must be at least 1 (got {self.top_n}).", param="top_n")

    def to_dict(self) -> dict:
        return asdict(self)


def energy_table(salient: np.ndarray, labels: np.ndarray, control_label: str,
                 responder: np.ndarray | None, settings: EffectSettings,
                 null_controls: np.ndarray | None = None) -> pd.DataFrame:
    """perturbation, n_cells, n_responders, responder_fraction, energy_distance,
    energy_pvalue against the null controls (``null_controls``, boolean per cell: the
    controls the model did not train on; default every control), responders only when
    ``settings.responders_only``."""
    is_control = labels == control_label
    controls = salient[is_control if null_controls is None else is_control & null_controls]
    rows = []
    for i, (perturbation, cells) in enumerate(perturbation_groups(labels, control_label).items()):
        n_responders = int(responder[cells].sum()) if responder is not None else None
        used = cells[responder[cells]] if settings.responders_only and responder is not None else cells
        distance, pvalue = (float("nan"), float("nan"))
        if len(used) >= 2:
            distance, pvalue = energy_test(salient[used], controls, settings.n_permutations,
                                           settings.max_cells, seed=[settings.seed, i])
        rows.append({
            "perturbation": perturbation,
            "n_cells": int(len(cells)),
            "n_responders": n_responders,
            "responder_fraction": n_responders / len(cells) if n_responders is not None and len(cells) else np.nan,
            "energy_distance": distance,
            "energy_pvalue": pvalue,
        })
    table = pd.DataFrame(rows)
    table["energy_padj"] = benjamini_hochberg(table["energy_pvalue"].to_numpy()) if len(table) else []
    return table


def lfc_agreement(part: pd.DataFrame) -> float:
    """Spearman correlation of the decoded LFC (``lfc_mean``) with the observed pseudobulk
    LFC (``wilcoxon_lfc``) over the model genes Wilcoxon calls: does the decoder carry the
    effect the counts show? NaN with fewer than 5 such genes."""
    from scipy.stats import spearmanr

    genes = part[part["wilcoxon_is_de"].astype(bool) & part["lfc_mean"].notna()]
    if len(genes) < 5:
        return float("nan")
    return float(spearmanr(genes["lfc_mean"], genes["wilcoxon_lfc"]).statistic)


def de_counts(de_table: pd.DataFrame, top_n: int = 10) -> pd.DataFrame:
    """perturbation, n_de_genes, n_de_up, n_de_down, top_up, top_down (called genes by
    |lfc_mean|, ';'-separated), lfc_agreement (see :func:`lfc_agreement`)."""
    rows = []
    for perturbation, part in de_table.groupby("perturbation", observed=True, sort=False):
        called = part[part["is_de"].astype(bool)]
        # genes outside the model carry the Wilcoxon LFC
        called = called.assign(lfc=called["lfc_mean"].fillna(called["wilcoxon_lfc"]))
        up = called[called["lfc"] > 0].sort_values("lfc", ascending=False)
        down = called[called["lfc"] < 0].sort_values("lfc")
        rows.append({
            "perturbation": str(perturbation),
            "n_de_genes": int(len(called)),
            "n_de_up": int(len(up)),
            "n_de_down": int(len(down)),
            "top_up": ";".join(up["gene"].astype(str).head(top_n)),
            "top_down": ";".join(down["gene"].astype(str).head(top_n)),
            "lfc_agreement": lfc_agreement(part),
        })
    return pd.DataFrame(rows)


def effect_table(energy: pd.DataFrame, de_table: pd.DataFrame, clusters: pd.DataFrame, top_n: int = 10) -> pd.DataFrame:
    """The effect table (COLUMNS, in perturbation leaf order where clustered)."""
    table = energy.merge(de_counts(de_table, top_n), on="perturbation", how="left")
    table = table.merge(clusters, on="perturbation", how="left")
    for column in ("n_de_genes", "n_de_up", "n_de_down"):
        table[column] = table[column].fillna(0).astype(int)
    for column in ("top_up", "top_down"):
        table[column] = table[column].fillna("")
    table["n_responders"] = table["n_responders"].astype("Int64")
    table["cluster"] = table["cluster"].astype("Int64")
    table = table.sort_values("leaf_order", na_position="last").drop(columns="leaf_order")
    return table[COLUMNS].reset_index(drop=True)
