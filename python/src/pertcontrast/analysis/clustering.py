"""Hierarchical clustering of effect profiles.

Perturbations: profiles are their mean salient latent minus the null controls' (or their
LFC over genes). Perturbations without a detected effect (no significant energy distance
to the null controls, or no DE gene) form one cluster of their own; the others are clustered
by the direction of their profiles (cosine distance), so programs of very different
strength, and strong and weak members of one program, are cut alike (a Euclidean
silhouette cut lets one strong program dominate: it splits {strong} from {the rest}).

Gene programs: genes called DE somewhere, clustered by the correlation of their LFC
across perturbations (so the up- and down-regulated halves of a program are separate
programs).

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
    distances = np.nan_to_num(pdist(profiles, metric=metric), nan=1.0 if metric in ("correlation", "cosine") else 0.0)
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


def lfc_profiles(de_table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Perturbations x genes lfc_mean over the genes called DE somewhere (all genes when
    fewer than 2 are called), and which perturbations have an effect (a DE gene)."""
    matrix = lfc_matrix(de_table)
    called = de_genes(de_table)
    if len(called) >= 2:
        matrix = matrix[called]
    n_called = de_table.groupby("perturbation", observed=True)["is_de"].sum()
    has_effect = (n_called.reindex(matrix.index).fillna(0) > 0).astype(bool)
    return matrix, has_effect


def salient_profiles(salient: np.ndarray, labels: np.ndarray, control_label: str,
                     keep: np.ndarray | None = None, null_controls: np.ndarray | None = None) -> pd.DataFrame:
    """Perturbations x salient dimensions: each perturbation's mean salient minus the null
    controls' mean (``null_controls``: boolean per cell, default every control); only
    cells in ``keep`` when given (NaN rows for perturbations with fewer than 4 cells)."""
    is_control = labels == control_label
    control_mean = salient[is_control if null_controls is None else is_control & null_controls].mean(axis=0)
    perturbations = sorted(set(labels) - {control_label})
    rows = []
    for perturbation in perturbations:
        mask = labels == perturbation
        if keep is not None:
            mask &= keep
        rows.append(salient[mask].mean(axis=0) - control_mean if mask.sum() >= 4 else np.full(salient.shape[1], np.nan))
    columns = [f"salient_{i + 1}" for i in range(salient.shape[1])]
    return pd.DataFrame(np.array(rows).reshape(len(perturbations), -1), index=perturbations, columns=columns)


def cluster_perturbations(profiles: pd.DataFrame, has_effect: pd.Series | None = None
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clusters: perturbation, cluster, leaf_order, effect_detected; similarity: correlation
    matrix of the profiles in leaf order).

    Perturbations with an effect are clustered by the direction of their profiles
    (cosine distance); those without one form one last cluster. Perturbations with
    missing profiles (too few cells) are left unclustered (cluster NA, last).
    """
    profiles = profiles.set_axis(profiles.index.astype(str), axis=0)
    if has_effect is not None:
        has_effect = has_effect.set_axis(has_effect.index.astype(str))
    names = profiles.index.to_numpy()
    values = profiles.to_numpy(dtype=float)
    valid = np.isfinite(values).all(axis=1)
    effect = valid & (np.ones(len(names), bool) if has_effect is None
                      else has_effect.reindex(profiles.index).fillna(False).to_numpy(dtype=bool))
    effect &= np.linalg.norm(np.nan_to_num(values), axis=1) > 0
    null = valid & ~effect
    cluster = pd.array([pd.NA] * len(names), dtype="Int64")
    leaf = np.empty(len(names), dtype=int)
    rows = np.flatnonzero(effect)
    labels, positions, _ = cluster_rows(values[rows], metric="cosine")
    cluster[rows], leaf[rows] = labels, positions
    null_rows = _by_name(np.flatnonzero(null), names)
    leaf[null_rows] = len(rows) + np.arange(len(null_rows))
    cluster[null_rows] = (int(labels.max()) if len(labels) else 0) + 1
    missing = _by_name(np.flatnonzero(~valid), names)
    leaf[missing] = len(rows) + len(null_rows) + np.arange(len(missing))
    clusters = pd.DataFrame({"perturbation": names, "cluster": cluster, "leaf_order": leaf, "effect_detected": effect})
    clusters = clusters.sort_values("leaf_order").reset_index(drop=True)
    ordered = np.nan_to_num(profiles.loc[clusters["perturbation"]].to_numpy(dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.corrcoef(ordered) if len(ordered) > 1 else np.ones((len(ordered), len(ordered)))
    similarity = pd.DataFrame(np.atleast_2d(similarity), index=clusters["perturbation"], columns=clusters["perturbation"])
    similarity.index.name = "perturbation"
    return clusters, similarity


def _by_name(rows: np.ndarray, names: np.ndarray) -> np.ndarray:
    return rows[np.argsort(names[rows], kind="stable")]


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
