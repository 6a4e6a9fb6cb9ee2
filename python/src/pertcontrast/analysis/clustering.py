"""Hierarchical clustering of effect profiles: perturbations (their mean salient latent
relative to the controls, or their LFC over genes; Euclidean distance, so perturbations
without an effect, whose profiles are all near 0, fall together) and gene programs (genes called DE somewhere, clustered by
the correlation of their LFC across perturbations, so up- and down-regulated halves of a
program are separate programs).

The number of clusters maximises the silhouette width over 2..``max_clusters``; when
no cut reaches ``min_silhouette`` (0.25, Kaufman & Rousseeuw's "no substantial
structure") everything is one cluster. Clusters are numbered 1, 2, ... in leaf order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import pdist, squareform

MIN_SILHOUETTE = 0.25


def cluster_rows(
    profiles: np.ndarray,
    metric: str = "euclidean",
    method: str = "average",
    max_clusters: int = 30,
    min_silhouette: float = MIN_SILHOUETTE,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(cluster per row, numbered 1.. in leaf order; leaf position per row; silhouette
    of the chosen cut, NaN for one cluster)."""
    from sklearn.metrics import silhouette_score

    profiles = np.asarray(profiles, dtype=np.float64)
    n = len(profiles)
    if n < 3:
        return np.ones(n, dtype=int), np.arange(n), float("nan")
    distances = np.nan_to_num(pdist(profiles, metric=metric), nan=1.0 if metric == "correlation" else 0.0)
    tree = linkage(distances, method=method, optimal_ordering=True)
    order = leaves_list(tree)
    square = squareform(distances)
    best, best_score = np.ones(n, dtype=int), float("nan")
    for k in range(2, min(max_clusters, n - 1) + 1):
        labels = fcluster(tree, k, criterion="maxclust")
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(square, labels, metric="precomputed")
        if score >= min_silhouette and not score <= best_score:
            best, best_score = labels, score
    leaf_position = np.empty(n, dtype=int)
    leaf_position[order] = np.arange(n)
    return _number_in_leaf_order(best, order), leaf_position, best_score


def _number_in_leaf_order(labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    mapping = {}
    for label in labels[order]:
        mapping.setdefault(label, len(mapping) + 1)
    return np.array([mapping[label] for label in labels], dtype=int)


def lfc_matrix(de_table: pd.DataFrame, value: str = "lfc_mean") -> pd.DataFrame:
    """Perturbations x genes matrix of ``value`` from the long DE table."""
    matrix = de_table.pivot_table(index="perturbation", columns="gene", values=value, observed=True, dropna=False)
    genes = pd.unique(de_table["gene"])
    return matrix.reindex(columns=genes)


def de_genes(de_table: pd.DataFrame) -> list:
    """Genes called DE in at least one perturbation (in table order)."""
    return list(pd.unique(de_table.loc[de_table["is_de"].astype(bool), "gene"]))


def lfc_profiles(de_table: pd.DataFrame) -> pd.DataFrame:
    """Perturbations x genes lfc_mean over the genes called DE somewhere (all genes when
    fewer than 2 are called)."""
    matrix = lfc_matrix(de_table)
    called = de_genes(de_table)
    return matrix[called] if len(called) >= 2 else matrix


def salient_profiles(salient: np.ndarray, labels: np.ndarray, control_label: str,
                     keep: np.ndarray | None = None) -> pd.DataFrame:
    """Perturbations x salient dimensions: each perturbation's mean salient minus the
    controls' mean (so no effect is ~0); only cells in ``keep`` when given (NaN rows for
    perturbations left without cells)."""
    controls = salient[labels == control_label].mean(axis=0)
    perturbations = sorted(set(labels) - {control_label})
    rows = []
    for perturbation in perturbations:
        mask = labels == perturbation
        if keep is not None:
            mask &= keep
        rows.append(salient[mask].mean(axis=0) - controls if mask.any() else np.full(salient.shape[1], np.nan))
    columns = [f"salient_{i + 1}" for i in range(salient.shape[1])]
    return pd.DataFrame(np.array(rows).reshape(len(perturbations), -1), index=perturbations, columns=columns)


def cluster_perturbations(profiles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clusters: perturbation, cluster, leaf_order; similarity: correlation matrix of the
    profiles in leaf order) from a perturbations x features profile matrix (Euclidean).
    Perturbations with missing profiles (too few cells) are left unclustered (cluster
    NA, last in leaf order)."""
    matrix = profiles
    valid = matrix.notna().all(axis=1).to_numpy()
    names = matrix.index.astype(str).to_numpy()
    cluster = pd.array([pd.NA] * len(names), dtype="Int64")
    leaf = np.full(len(names), len(names), dtype=int)
    labels, leaf_valid, _ = cluster_rows(matrix.to_numpy()[valid])
    cluster[valid] = labels
    leaf[valid] = leaf_valid
    invalid = np.flatnonzero(~valid)
    leaf[invalid] = valid.sum() + np.arange(len(invalid))
    clusters = pd.DataFrame({"perturbation": names, "cluster": cluster, "leaf_order": leaf})
    clusters = clusters.sort_values("leaf_order").reset_index(drop=True)
    ordered = np.nan_to_num(matrix.loc[clusters["perturbation"]].to_numpy(dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.corrcoef(ordered) if len(ordered) > 1 else np.ones((len(ordered), len(ordered)))
    similarity = pd.DataFrame(np.atleast_2d(similarity), index=clusters["perturbation"], columns=clusters["perturbation"])
    similarity.index.name = "perturbation"
    return clusters, similarity


def gene_programs(de_table: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """Genes called DE somewhere, clustered by their LFC profiles across perturbations
    (correlation distance): gene, program, and the gene's mean lfc_mean in each
    perturbation cluster (columns ``cluster_<k>``)."""
    called = de_genes(de_table)
    matrix = lfc_matrix(de_table)[called].fillna(0.0)
    cluster_of = clusters.set_index("perturbation")["cluster"]
    columns = {}
    for k in sorted(cluster_of.dropna().unique()):
        members = [p for p in matrix.index.astype(str) if cluster_of.get(p) == k]
        columns[f"cluster_{k}"] = matrix.loc[members].mean(axis=0).to_numpy() if members else np.nan
    if not called:
        return pd.DataFrame(columns=["gene", "program", *columns])
    programs, leaf, _ = cluster_rows(matrix.to_numpy().T, metric="correlation")
    table = pd.DataFrame({"gene": called, "program": programs, **columns, "_leaf": leaf})
    return table.sort_values("_leaf").drop(columns="_leaf").reset_index(drop=True)
