"""On-target knockdown and whether the kinds of control differ, before any training.

Knockdown, per guide (its single-guide cells) and per perturbation (all its cells): the
target gene's expression per 10k counts in those cells against all control cells, as
log2((mean + 0.1) / (control mean + 0.1)), and a one-sided Mann-Whitney U test (lower in
the perturbed cells) against at most ``max_controls`` controls (a seeded subsample; the
test's cost grows with them and a few thousand are plenty). Benjamini-Hochberg over the
measured rows; ``knockdown`` when q < ``fdr`` and the fold change is below 1, else ``no
knockdown``. Rows that cannot be measured say why: ``target not in data`` (no gene of
that name or id), ``too few cells`` (fewer than 3), ``target barely detected`` (in
the controls: detected in fewer than 5% of them, too little to see a drop).

Control kinds: each kind against the other controls, per gene, Welch's t-test on
log1p(counts per 10k) (from sparse sums; nothing is densified), Benjamini-Hochberg; the
number of genes that differ at q < ``fdr`` and the correlation of the mean profiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

PSEUDOCOUNT = 0.1  # per 10k counts
MIN_CELLS = 3
MIN_DETECTED = 0.05  # of the controls with a count of the target
SCALE = 1e4
KNOCKDOWN, NO_KNOCKDOWN = "knockdown", "no knockdown"
NOT_IN_DATA, TOO_FEW, NOT_DETECTED, CONTROL = "target not in data", "too few cells", "target barely detected", "control"


def gene_index(var: pd.DataFrame, var_names: pd.Index) -> dict[str, int]:
    """Gene name or id -> column (names win over ids)."""
    lookup = {}
    if "gene_ids" in var:
        lookup.update({str(g): i for i, g in enumerate(var["gene_ids"].astype(str))})
    lookup.update({str(g): i for i, g in enumerate(var_names)})
    return lookup


def normalised_columns(counts: sp.csr_matrix, columns: list[int]) -> sp.csc_matrix:
    """Counts per 10k of the given genes (cells x genes, sparse)."""
    totals = np.asarray(counts.sum(axis=1)).ravel().astype(float)
    scale = np.divide(SCALE, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csc_matrix(sp.diags(scale) @ counts[:, columns])


def knockdown_rows(groups: dict[str, np.ndarray], targets: dict[str, str], counts: sp.csr_matrix,
                   genes: dict[str, int], controls: np.ndarray, fdr: float, max_controls: int,
                   seed: int) -> pd.DataFrame:
    """One row per group (a guide or a perturbation): its cells' target expression vs controls."""
    wanted = sorted({genes[t] for t in targets.values() if t in genes})
    expression = normalised_columns(counts, wanted)
    column_of = {gene: k for k, gene in enumerate(wanted)}
    rng = np.random.default_rng(seed)
    tested = controls if controls.size <= max_controls else np.sort(rng.choice(controls, max_controls, replace=False))
    rows = []
    for name, cells in groups.items():
        target = targets[name]
        row = {"name": name, "cells": int(cells.size), "target_mean": np.nan, "control_mean": np.nan,
               "log2fc": np.nan, "pvalue": np.nan}
        if target not in genes:
            rows.append({**row, "knockdown": NOT_IN_DATA})
            continue
        values = expression[:, column_of[genes[target]]].toarray().ravel()
        mine, theirs = values[cells], values[controls]
        row.update(target_mean=float(mine.mean()) if mine.size else np.nan, control_mean=float(theirs.mean()))
        if cells.size < MIN_CELLS or controls.size < MIN_CELLS:
            rows.append({**row, "knockdown": TOO_FEW})
        elif (theirs > 0).mean() < MIN_DETECTED:
            rows.append({**row, "knockdown": NOT_DETECTED})
        else:
            row["log2fc"] = float(np.log2((row["target_mean"] + PSEUDOCOUNT) / (row["control_mean"] + PSEUDOCOUNT)))
            row["pvalue"] = float(stats.mannwhitneyu(mine, values[tested], alternative="less").pvalue)
            rows.append({**row, "knockdown": ""})
    table = pd.DataFrame(rows)
    return _called(table, fdr)


def _called(table: pd.DataFrame, fdr: float) -> pd.DataFrame:
    measured = table["knockdown"] == ""
    table["qvalue"] = np.nan
    if measured.any():
        table.loc[measured, "qvalue"] = stats.false_discovery_control(table.loc[measured, "pvalue"].to_numpy())
        hit = measured & (table["qvalue"] < fdr) & (table["log2fc"] < 0)
        table.loc[measured, "knockdown"] = np.where(hit[measured], KNOCKDOWN, NO_KNOCKDOWN)
    return table


def control_kind_rows(counts: sp.csr_matrix, kinds: pd.Series, fdr: float) -> pd.DataFrame:
    """Each kind of control against the other controls (only with two kinds or more)."""
    present = [k for k in pd.unique(kinds) if k]
    rows = []
    if len(present) < 2:
        return pd.DataFrame(columns=["control_kind", "cells", "compared_with", "genes_tested", "genes_different",
                                     "mean_correlation"])
    log_expression = _log_normalised(counts)
    for kind in present:
        mine = (kinds == kind).to_numpy()
        others = kinds.isin([k for k in present if k != kind]).to_numpy()
        (mean_a, var_a), (mean_b, var_b) = _moments(log_expression[mine]), _moments(log_expression[others])
        tested = (mean_a > 0) | (mean_b > 0)
        n_a, n_b = mine.sum(), others.sum()
        se = np.sqrt(var_a[tested] / n_a + var_b[tested] / n_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (mean_a[tested] - mean_b[tested]) / se
            dof = se**4 / ((var_a[tested] / n_a) ** 2 / max(n_a - 1, 1) + (var_b[tested] / n_b) ** 2 / max(n_b - 1, 1))
        pvalues = np.where(np.isfinite(t), 2 * stats.t.sf(np.abs(t), np.where(np.isfinite(dof), dof, 1)), 1.0)
        q = stats.false_discovery_control(pvalues) if pvalues.size else pvalues
        correlation = float(np.corrcoef(mean_a[tested], mean_b[tested])[0, 1]) if tested.sum() > 2 else np.nan
        rows.append({"control_kind": kind, "cells": int(n_a),
                     "compared_with": "+".join(k for k in present if k != kind), "genes_tested": int(tested.sum()),
                     "genes_different": int((q < fdr).sum()), "mean_correlation": correlation})
    return pd.DataFrame(rows)


def _log_normalised(counts: sp.csr_matrix) -> sp.csr_matrix:
    totals = np.asarray(counts.sum(axis=1)).ravel().astype(float)
    scale = np.divide(SCALE, totals, out=np.zeros_like(totals), where=totals > 0)
    scaled = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float64)
    scaled.data = np.log1p(scaled.data)
    return scaled


def _moments(block: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    n = block.shape[0]
    mean = np.asarray(block.mean(axis=0)).ravel()
    square = np.asarray(block.multiply(block).mean(axis=0)).ravel()
    variance = np.maximum(square - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, variance
