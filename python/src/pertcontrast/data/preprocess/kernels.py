"""Loops over the stored values of a CSR block, accumulating into arrays the caller owns.

Sums run value by value in storage order and carry over from block to block, so the
result does not depend on how the rows are cut into blocks (one block, or one cell each),
and equals a single pass over the whole matrix such as scanpy's.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np


@functools.cache
def kernels() -> SimpleNamespace:
    """Compiled on first use (a few seconds), once per process."""
    import numba

    @numba.njit
    def row_metrics(indptr, indices, data, mito, totals, n_genes, mito_counts):
        for row in range(indptr.shape[0] - 1):
            for k in range(indptr[row], indptr[row + 1]):
                totals[row] += data[k]
                n_genes[row] += data[k] > 0
                if mito[indices[k]]:
                    mito_counts[row] += data[k]

    @numba.njit
    def detection(indices, data, detected):
        for k in range(indices.shape[0]):
            if data[k] > 0:
                detected[indices[k]] += 1

    @numba.njit
    def add_moments(indices, data, sums, squares):
        for k in range(indices.shape[0]):
            value = data[k]
            sums[indices[k]] += value
            squares[indices[k]] += value * value  # in the data's precision, as scanpy's mean_var

    @numba.njit
    def add_sums(indices, data, sums):
        for k in range(indices.shape[0]):
            sums[indices[k]] += data[k]

    @numba.njit
    def add_clipped(indices, data, clip_val, squares, sums):
        for k in range(indices.shape[0]):
            j = indices[k]
            element = min(np.float64(data[k]), clip_val[j])
            squares[j] += element**2
            sums[j] += element

    return SimpleNamespace(
        row_metrics=row_metrics, detection=detection, add_moments=add_moments, add_sums=add_sums,
        add_clipped=add_clipped,
    )
