"""Energy distance between two samples, with a permutation p-value."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Euclidean; V-statistic, zero diagonals
    included), 0 for identical samples."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def _from_distances(d: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Energy distances for group assignments ``first`` (n, or n x permutations; True =
    first sample) from the pooled distance matrix ``d``, with sums as matrix products."""
    f = first.astype(np.float64)
    n_x = f.sum(axis=0)
    n_y = len(d) - n_x
    d_f = d @ f
    s_xx = (f * d_f).sum(axis=0)
    s_xy = d.sum(axis=1) @ f - s_xx
    s_yy = d.sum() - s_xx - 2 * s_xy
    return 2 * s_xy / (n_x * n_y) - s_xx / n_x**2 - s_yy / n_y**2


def energy_test(
    x: np.ndarray,
    y: np.ndarray,
    n_permutations: int = 200,
    max_cells: int = 300,
    seed=0,
) -> tuple[float, float]:
    """Energy distance of ``x`` and ``y`` (each subsampled to ``max_cells`` rows) and its
    permutation p-value ``(1 + #{permuted >= observed}) / (1 + n_permutations)``.

    NaN for both when either sample is empty. ``seed`` is anything
    ``numpy.random.default_rng`` takes (an int, or a list such as ``[seed, index]``).
    """
    rng = np.random.default_rng(seed)
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    if len(x) == 0 or len(y) == 0:
        return float("nan"), float("nan")
    if len(x) > max_cells:
        x = x[rng.choice(len(x), max_cells, replace=False)]
    if len(y) > max_cells:
        y = y[rng.choice(len(y), max_cells, replace=False)]
    pooled = np.vstack([x, y])
    d = cdist(pooled, pooled)
    first = np.zeros(len(pooled), dtype=bool)
    first[: len(x)] = True
    observed = float(_from_distances(d, first))
    if n_permutations <= 0:
        return observed, float("nan")
    permuted = np.stack([rng.permutation(first) for _ in range(n_permutations)], axis=1)
    exceed = int((_from_distances(d, permuted) >= observed - 1e-12).sum())
    return observed, (1.0 + exceed) / (1.0 + n_permutations)
