"""False discovery rate control: Benjamini-Hochberg (plain and weighted) for p-values and
the posterior expected FDR procedure for posterior probabilities."""

from __future__ import annotations

import numpy as np


def benjamini_hochberg(pvalues) -> np.ndarray:
    """BH-adjusted p-values (q-values); NaN p-values stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite) == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    # Step-up: the adjusted value of rank i is the smallest scaled value at rank >= i.
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


def weighted_benjamini_hochberg(pvalues, weights) -> np.ndarray:
    """Weighted BH (Genovese, Roeder and Wasserman 2006): BH of ``p / w``, the weights
    rescaled to mean 1 over the finite p-values, so FDR control holds as for BH when the
    weights do not depend on the p-values they weigh. All weights equal is plain BH."""
    p = np.asarray(pvalues, dtype=float)
    w = np.asarray(weights, dtype=float)
    finite = np.isfinite(p)
    if not finite.any():
        return np.full(p.shape, np.nan)
    if np.any(w[finite] <= 0) or not np.all(np.isfinite(w[finite])):
        raise ValueError("weights must be positive and finite")
    w = w / w[finite].mean()
    return benjamini_hochberg(np.where(finite, np.minimum(p / w, 1.0), np.nan))


def posterior_fdr_calls(prob_de, fdr: float = 0.05) -> np.ndarray:
    """Boolean calls at a target posterior expected FDR.

    Genes are sorted by ``prob_de`` (highest first); the largest top set whose mean
    ``1 - prob_de`` (its expected false discovery proportion) is at most ``fdr`` is
    called. NaN probabilities are never called.
    """
    p = np.asarray(prob_de, dtype=float)
    calls = np.zeros(p.shape, dtype=bool)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite) == 0:
        return calls
    order = finite[np.argsort(-p[finite], kind="stable")]
    expected_fdr = np.cumsum(1.0 - p[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(expected_fdr <= fdr)
    if len(passing):
        calls[order[: passing[-1] + 1]] = True
    return calls


def log10_bayes_factor(prob, eps: float = 1e-6) -> np.ndarray:
    """log10 of prob / (1 - prob), with prob clipped to [eps, 1 - eps] to stay finite."""
    p = np.clip(np.asarray(prob, dtype=float), eps, 1.0 - eps)
    return np.log10(p) - np.log10(1.0 - p)
