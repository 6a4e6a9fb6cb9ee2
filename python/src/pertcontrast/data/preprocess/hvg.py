"""Highly variable genes, seurat_v3 flavour (Stuart et al. 2019), from per-gene sums.

The same computation as scanpy's ``highly_variable_genes(flavor="seurat_v3")`` without a
batch key (scanpy is the test oracle): a loess fit (span 0.3, degree 2) of log10 variance
on log10 mean of the counts gives each gene's expected sd; counts are clipped at
mean + sd * sqrt(cells); genes are ranked by the variance of the standardised, clipped
counts. Here the two sums it needs come from passes over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPAN = 0.3


@dataclass
class VarianceFit:
    mean: np.ndarray
    reg_std: np.ndarray  # the loess-regularised sd of each gene
    clip_val: np.ndarray


def fit_variance(sums: np.ndarray, squares: np.ndarray, n_cells: int) -> VarianceFit:
    """Gene means and unbiased variances (as scanpy's mean_var), the loess fit and the clip."""
    from skmisc.loess import loess

    mean = sums / n_cells
    var = squares / n_cells - (sums / n_cells) ** 2
    if n_cells > 1:
        var *= n_cells / (n_cells - 1)
    not_const = var > 0
    fitted = np.zeros(len(mean), dtype=np.float64)
    model = loess(np.log10(mean[not_const]), np.log10(var[not_const]), span=SPAN, degree=2)
    model.fit()
    fitted[not_const] = model.outputs.fitted_values
    reg_std = np.sqrt(10**fitted)
    return VarianceFit(mean, reg_std, reg_std * np.sqrt(n_cells) + mean)


def ranks(fit: VarianceFit, clipped_sums, clipped_squares, n_cells: int, n_top: int) -> np.ndarray:
    """Rank of each gene by standardised variance (0 = most variable; float32, NaN outside
    the top ``n_top``)."""
    norm_gene_var = (1 / ((n_cells - 1) * np.square(fit.reg_std))) * (
        (n_cells * np.square(fit.mean)) + clipped_squares - 2 * clipped_sums * fit.mean
    )
    ranked = np.argsort(np.argsort(-norm_gene_var)).astype(np.float32)
    ranked[ranked >= n_top] = np.nan
    return ranked
