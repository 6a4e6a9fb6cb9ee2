"""The pseudo-perturbation check: are the calls calibrated on this screen?

Random groups of null controls (controls the model did not train on), as large as the
screen's real perturbations (at most half of the null controls), are labelled as fake
perturbations and go through the same calls as the real ones, each against the null
controls outside its group and beside the screen's real perturbations (the detection test
borrows from the other perturbations' effects, so a group is tested the way a real
perturbation is): the responders' detection test (the effect calls;
Benjamini-Hochberg over the groups; the energy test is kept beside it), the responder
calls, and DE (model and Wilcoxon). None of them has an effect,
so at FDR 0.05 the check should call about no effect, at most ~5% responders and at most
~5% of genes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError

PSEUDO_LABEL = "pseudo_perturbation"
# what a calibrated screen shows at FDR 0.05 (issue 20): the largest value of each summary
TARGETS = {"effects_called": 0, "responder_fraction": 0.05, "model_called_fraction": 0.05,
           "wilcoxon_called_fraction": 0.05}


@dataclass(frozen=True)
class CalibrationSettings:
    n_groups: int = 5
    fdr: float = 0.05
    de: bool = True  # run DE on the groups (the slow part)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def pseudo_groups(null_rows: np.ndarray, real_sizes, settings: CalibrationSettings) -> list[np.ndarray]:
    """Row groups drawn from the null controls, sized like randomly chosen real
    perturbations (at most half of the null controls each)."""
    if len(null_rows) < 20:
        raise InputDataError(f"only {len(null_rows)} null controls; the check needs at least 20.")
    rng = np.random.default_rng([settings.seed, 3])
    sizes = rng.choice(np.asarray(real_sizes), size=settings.n_groups, replace=True)
    return [np.sort(rng.choice(null_rows, size=int(min(size, len(null_rows) // 2)), replace=False))
            for size in sizes]


def run_check(salient: np.ndarray, labels: np.ndarray, control_label: str, null: np.ndarray,
              settings: CalibrationSettings = CalibrationSettings(), model=None, adata=None,
              de_settings=None, device: str = "auto") -> pd.DataFrame:
    """One row per pseudo-perturbation: n_cells, energy_pvalue, energy_padj,
    effect_called, responder_fraction and, with ``model`` and ``adata`` (and
    ``settings.de``), n_genes, model_called, wilcoxon_called (their fractions of genes)."""
    from pertcontrast.analysis.decode import ExpressionResiduals
    from pertcontrast.analysis.multiple_testing import benjamini_hochberg
    from pertcontrast.analysis.responders import call_responders

    null_rows = np.flatnonzero(null)
    perturbed = np.flatnonzero(labels != control_label)
    real = pd.Series(labels[perturbed]).value_counts()
    if PSEUDO_LABEL in real.index:
        raise InputDataError(f"a perturbation is named {PSEUDO_LABEL!r}, the check's own label; rename it.")
    rows = []
    for index, group in enumerate(pseudo_groups(null_rows, real.to_numpy(), settings)):
        rest = np.setdiff1d(null_rows, group)
        subset = np.concatenate([group, rest, perturbed])
        n_null = len(group) + len(rest)  # the rows DE compares: the group against the rest
        sub_labels = np.concatenate([np.array([PSEUDO_LABEL] * len(group) + [control_label] * len(rest), dtype=object),
                                     labels[perturbed].astype(object)])
        # a fresh view of the counts per group: the DE below may reopen a backed file
        residuals = ExpressionResiduals(model, adata, device) if model is not None and adata is not None else None
        result = call_responders(salient[subset], sub_labels, control_label, fdr=settings.fdr,
                                 seed=settings.seed + index,
                                 residuals=None if residuals is None else residuals.subset(subset))
        if residuals is not None:
            residuals.release()
        pseudo = result.table.set_index("perturbation").loc[PSEUDO_LABEL]
        row = {"group": index + 1, "n_cells": len(group), "energy_pvalue": float(pseudo["energy_pvalue"]),
               "detection_pvalue": float(pseudo["detection_pvalue"]),
               "responder_fraction": float(pseudo["responder_fraction"])}
        if settings.de and model is not None and adata is not None:
            row.update(_group_de(model, adata, subset[:n_null], sub_labels[:n_null], de_settings, device))
        rows.append(row)
    table = pd.DataFrame(rows)
    table["energy_padj"] = benjamini_hochberg(table["energy_pvalue"].to_numpy())
    # the effect calls of the steps: the responders' detection test (the energy test without a model)
    table["detection_padj"] = benjamini_hochberg(table["detection_pvalue"].to_numpy())
    table["effect_called"] = table["detection_padj"] < settings.fdr
    # a screen calls responders only in the perturbations whose effect it calls (BH over all
    # of them); each group went through the calls alone, where its own p-value below the FDR
    # was enough (and put the bar's ~12% of its cells in), so its responders count where the
    # check calls its effect
    table["responder_fraction"] = table["responder_fraction"].where(table["effect_called"], 0.0)
    return table


def _group_de(model, adata, subset: np.ndarray, sub_labels: np.ndarray, de_settings, device: str) -> dict:
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    order = np.argsort(subset)
    cells = adata[subset[order]]
    cells = cells.to_memory() if getattr(cells, "isbacked", False) else cells.copy()
    cells.obs[model.encoding.perturbation_key] = sub_labels[order]
    table = differential_expression(model, cells, de_settings or DESettings(), device).table
    return {"n_genes": int(len(table)), "model_called": float(table.loc[table["de_source"] == "model", "is_de"].mean()),
            "wilcoxon_called": float(table["wilcoxon_is_de"].mean())}


def summary(table: pd.DataFrame) -> dict:
    """What the report shows: effects called (of the groups), mean responder fraction,
    mean fraction of genes called, and ``passed``: every one within ``TARGETS``."""
    out = {"n_groups": int(len(table)), "effects_called": int(table["effect_called"].sum()),
           "responder_fraction": float(table["responder_fraction"].mean())}
    for column in ("model_called", "wilcoxon_called"):
        if column in table:
            out[f"{column}_fraction"] = float(table[column].mean())
    out["passed"] = all(out[key] <= limit for key, limit in TARGETS.items() if key in out)
    return out
