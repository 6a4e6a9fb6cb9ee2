"""Wilcoxon rank-sum (Mann-Whitney U) tests of perturbed cells against controls on
log-normalised counts, computed on the sparse matrix (no cells x genes array is made).

Zeros are one big tie per gene: they share the average rank ``(n_zero + 1) / 2`` and
only the non-zero values are sorted. The p-value is the normal approximation with tie
and continuity corrections (as ``scipy.stats.mannwhitneyu(method="asymptotic")``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import norm

from pertcontrast.analysis.multiple_testing import benjamini_hochberg

NORMALISED_TOTAL = 1e4


def normalise_rows(counts) -> sp.csr_matrix:
    """Counts scaled to ``NORMALISED_TOTAL`` per cell (CSR float64, zeros dropped)."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = NORMALISED_TOTAL / np.maximum(totals, 1.0)
    normalised = sp.diags(scale) @ counts
    normalised.eliminate_zeros()
    return sp.csr_matrix(normalised)


def log_normalise(counts) -> sp.csr_matrix:
    """``log1p`` of counts per 10k (the usual scanpy recipe), sparse."""
    normalised = normalise_rows(counts)
    normalised.data = np.log1p(normalised.data)
    return normalised


def rank_sum_test(x, y, gene_block: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Per-column Mann-Whitney U statistic of ``x`` and two-sided p-values against ``y``.

    ``x`` and ``y`` are sparse (or dense) cells x genes matrices of non-negative values.
    Genes are processed in blocks of ``gene_block`` columns. Columns where every value is
    tied get p-value 1.
    """
    x, y = sp.csc_matrix(x, dtype=np.float64), sp.csc_matrix(y, dtype=np.float64)
    n_genes = x.shape[1]
    u = np.zeros(n_genes)
    p = np.ones(n_genes)
    for start in range(0, n_genes, gene_block):
        block = slice(start, min(start + gene_block, n_genes))
        u[block], p[block] = _rank_sum_block(x[:, block], y[:, block])
    return u, p


def _rank_sum_block(x: sp.csc_matrix, y: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    n_x, n_y = x.shape[0], y.shape[0]
    n = n_x + n_y
    combined = sp.vstack([x, y], format="csc")
    combined.eliminate_zeros()
    n_genes = combined.shape[1]
    nnz = np.diff(combined.indptr)
    column = np.repeat(np.arange(n_genes), nnz)
    order = np.lexsort((combined.data, column))  # by column, then value
    values, rows, column = combined.data[order], combined.indices[order], column[order]
    n_zero = n - nnz
    # Runs of equal values within a column share their average rank.
    new_run = np.ones(len(values), dtype=bool)
    new_run[1:] = (np.diff(column) != 0) | (np.diff(values) != 0)
    run_start = np.flatnonzero(new_run)
    run_size = np.diff(np.append(run_start, len(values)))
    run_of = np.cumsum(new_run) - 1
    position = np.arange(len(values)) - combined.indptr[column]  # 0-based among the column's non-zeros
    run_rank = position[run_start] + (run_size + 1) / 2.0
    rank = n_zero[column] + run_rank[run_of]
    in_x = rows < n_x
    rank_sum_x = np.bincount(column[in_x], weights=rank[in_x], minlength=n_genes)
    zeros_x = n_x - np.bincount(column[in_x], minlength=n_genes)
    rank_sum_x += zeros_x * (n_zero + 1) / 2.0
    u = rank_sum_x - n_x * (n_x + 1) / 2.0
    ties = np.bincount(column[run_start], weights=run_size**3 - run_size, minlength=n_genes)
    ties += n_zero.astype(float) ** 3 - n_zero
    variance = n_x * n_y / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    mean = n_x * n_y / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.abs(u - mean) - 0.5) / np.sqrt(variance)
        p = np.where(variance > 0, 2 * norm.sf(np.maximum(z, 0.0)), 1.0)
    return u, np.clip(p, 0.0, 1.0)


def wilcoxon_against_controls(perturbed_counts, control_lognorm, control_mean, pseudocount: float = 0.5):
    """Wilcoxon test of one perturbation's cells against the controls.

    ``perturbed_counts`` are raw counts (cells x genes, sparse); ``control_lognorm`` the
    controls' log-normalised counts and ``control_mean`` their mean expression per 10k.
    Returns (lfc, pvalue, padj): lfc is log2 of the ratio of mean expression per 10k
    (with ``pseudocount`` per 10k added to both), padj Benjamini-Hochberg over genes.
    """
    normalised = normalise_rows(perturbed_counts)
    perturbed_mean = np.asarray(normalised.mean(axis=0)).ravel()
    lfc = np.log2((perturbed_mean + pseudocount) / (control_mean + pseudocount))
    normalised.data = np.log1p(normalised.data)
    _, pvalue = rank_sum_test(normalised, control_lognorm)
    return lfc, pvalue, benjamini_hochberg(pvalue)
