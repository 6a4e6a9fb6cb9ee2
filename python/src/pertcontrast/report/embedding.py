"""Two-dimensional views of the plotted subsample: the salient latent, the background
latent and, for comparison, log-normalised counts. Computed on the subsample only, so the
cost is bounded by ``--max-points`` whatever the screen size."""

from __future__ import annotations

import logging
import warnings

import numpy as np

METHODS = ("umap", "pca")
COUNT_PCS = 50
log = logging.getLogger("pertcontrast")


def embed(matrix: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(cells x 2) coordinates of ``matrix`` by UMAP or by its first two principal components."""
    if method not in METHODS:
        raise ValueError(f"unknown embedding '{method}'; use one of {', '.join(METHODS)}")
    matrix = np.asarray(matrix, dtype=np.float32)
    if method == "pca" or len(matrix) < 30:
        return _pca(matrix, 2)
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed forces one thread: intended
        reducer = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed, n_jobs=1, low_memory=True)
        return np.asarray(reducer.fit_transform(matrix), dtype=np.float32)


def count_view(counts, method: str, seed: int = 0) -> np.ndarray:
    """The same view of log-normalised counts (per 10k, log1p; PCA, then UMAP of the PCs)."""
    from pertcontrast.analysis.predictability import log_normalised_pca

    pcs = log_normalised_pca(counts, n_components=COUNT_PCS, seed=seed)
    return pcs[:, :2] if method == "pca" else embed(pcs, method, seed)


def views(latents, rows: np.ndarray, method: str, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"salient", "background", "counts"}`` coordinates of ``rows`` (``counts`` only when
    the file holds counts)."""
    result = {}
    for which in ("salient", "background"):
        log.info("report: %s of the %s latent (%d cells)", method.upper(), which, len(rows))
        result[which] = embed(getattr(latents, which)[rows], method, seed)
    if latents.has_counts:
        log.info("report: %s of log-normalised counts (%d cells)", method.upper(), len(rows))
        result["counts"] = count_view(latents.counts(rows), method, seed)
    return result


def _pca(matrix: np.ndarray, n_components: int) -> np.ndarray:
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    if centred.shape[1] < n_components:
        centred = np.pad(centred, ((0, 0), (0, n_components - centred.shape[1])))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:n_components].T).astype(np.float32)
