"""The perturbation effect table: one row per perturbation with its cells, responders,
effect magnitude (energy distance to the controls in the salient space, permutation
p-value), DE gene counts and top genes, and its perturbation cluster."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pertcontrast.analysis.cells import perturbation_groups
from pertcontrast.analysis.energy import energy_test
from pertcontrast.errors import ParameterError

PROFILES = ("salient", "lfc")
COLUMNS = [
    "perturbation", "n_cells", "n_responders", "responder_fraction", "energy_distance", "energy_pvalue",
    "n_de_genes", "n_de_up", "n_de_down", "top_up", "top_down", "cluster", "effect_detected",
]


@dataclass(frozen=True)
class EffectSettings:
    max_cells: int = 300  # per group for the energy distance
    n_permutations: int = 200
    responders_only: bool = False
    top_n: int = 10
    profile: str = "salient"  # what perturbations are clustered on: "salient" or "lfc"
    min_effect: float = 1.0  # salient profiles: standardised shift for a detected effect
    seed: int = 0

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ParameterError(f"--profile must be one of {', '.join(PROFILES)} (got {self.profile!r}).")
        if self.max_cells < 2:
            raise ParameterError(f"--max-cells must be at least 2 (got {self.max_cells}).")
        if self.n_permutations < 0:
            raise ParameterError(f"--permutations must be 0 or more (got {self.n_permutations}).")
        if self.min_effect < 0:
            raise ParameterError(f"--min-effect must be 0 or more (got {self.min_effect}).")
        if self.top_n < 1:
            raise ParameterError(f"--top-n must be at least 1 (got {self.top_n}).")

    def to_dict(self) -> dict:
        return asdict(self)


def energy_table(salient: np.ndarray, labels: np.ndarray, control_label: str,
                 responder: np.ndarray | None, settings: EffectSettings) -> pd.DataFrame:
    """perturbation, n_cells, n_responders, responder_fraction, energy_distance,
    energy_pvalue (responders only when ``settings.responders_only``)."""
    controls = salient[labels == control_label]
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
    return pd.DataFrame(rows)


def de_counts(de_table: pd.DataFrame, top_n: int = 10) -> pd.DataFrame:
    """perturbation, n_de_genes, n_de_up, n_de_down, top_up, top_down (called genes by
    |lfc_mean|, ';'-separated)."""
    rows = []
    for perturbation, part in de_table.groupby("perturbation", observed=True, sort=False):
        called = part[part["is_de"].astype(bool)]
        up = called[called["lfc_mean"] > 0].sort_values("lfc_mean", ascending=False)
        down = called[called["lfc_mean"] < 0].sort_values("lfc_mean")
        rows.append({
            "perturbation": str(perturbation),
            "n_de_genes": int(len(called)),
            "n_de_up": int(len(up)),
            "n_de_down": int(len(down)),
            "top_up": ";".join(up["gene"].astype(str).head(top_n)),
            "top_down": ";".join(down["gene"].astype(str).head(top_n)),
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
