"""How much of a label a representation carries: cross-validated k-nearest-neighbour
balanced accuracy minus chance (0 = no information, 1 - 1/K = perfect).

Used three ways: the quality tests (truth labels of simulated screens), the background
removal summary logged to MLflow and shown in reports (observed labels such as phase
and batch, no truth needed), and the benchmark.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def knn_predictability(
    representation: np.ndarray,
    labels,
    k: int = 15,
    n_folds: int = 5,
    max_cells: int = 10_000,
    seed: int = 0,
) -> float:
    """Balanced accuracy of a cross-validated k-NN classifier, minus chance (1/K).

    Cells are subsampled (stratified) to ``max_cells`` so large screens stay quick.
    Returns NaN when fewer than two classes have at least ``n_folds`` cells.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    labels = pd.Series(np.asarray(labels)).astype(str).to_numpy()
    representation = np.asarray(representation, dtype=np.float32)
    keep = _classes_with_enough_cells(labels, n_folds)
    if len(np.unique(labels[keep])) < 2:
        return float("nan")
    index = np.flatnonzero(keep)
    rng = np.random.default_rng(seed)
    if len(index) > max_cells:
        index = np.sort(rng.choice(index, size=max_cells, replace=False))
        keep_small = _classes_with_enough_cells(labels[index], n_folds)
        index = index[keep_small]
    X, y = representation[index], labels[index]
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    classifier = KNeighborsClassifier(n_neighbors=min(k, len(y) - 1))
    predicted = cross_val_predict(classifier, X, y, cv=folds)
    n_classes = len(np.unique(y))
    return float(balanced_accuracy_score(y, predicted) - 1.0 / n_classes)


def _classes_with_enough_cells(labels: np.ndarray, minimum: int) -> np.ndarray:
    values, counts = np.unique(labels, return_counts=True)
    large = set(values[counts >= minimum])
    return np.array([label in large for label in labels], dtype=bool)


def log_normalised_pca(counts, n_components: int = 50, target_sum: float = 1e4, seed: int = 0) -> np.ndarray:
    """PCA of log-normalised counts (the usual scanpy recipe); sparse input stays sparse
    (scanpy centres implicitly)."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    from pertcontrast.data.reading import compact_index

    adata = ad.AnnData(X=compact_index(sp.csr_matrix(counts, dtype=np.float32)))
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    n_components = min(n_components, min(adata.shape) - 1)
    sc.pp.pca(adata, n_comps=n_components, random_state=seed)
    return np.asarray(adata.obsm["X_pca"], dtype=np.float32)
