"""Perturbation-level figures: the similarity heatmap (leaf order), volcano plots of the
strongest perturbations and their top genes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pertcontrast.report.figures import category_colours, new_figure, short_label

MAX_TICK_LABELS = 80
PANELS_PER_ROW = 3
BAYES_FACTOR_CLIP = 5.0  # |log10 BF| beyond this is drawn at the edge
GENE_LABELS = 4
UP, DOWN, NOT_CALLED = "#d62728", "#1f77b4", "#bdbdbd"


def heatmap_figure(similarity: pd.DataFrame, clusters: pd.DataFrame | None):
    """Correlation of the perturbations' mean effect profiles, rows and columns in leaf
    order; a strip on the left shows the clusters."""
    n = len(similarity)
    side = min(10.0, 3.5 + 0.11 * n)
    figure = new_figure(side + 1.6, side)
    strip_axis, axis = figure.subplots(1, 2, width_ratios=[0.04, 1])
    image = axis.imshow(similarity.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest", aspect="auto")
    with_labels = n <= MAX_TICK_LABELS
    labels = [short_label(p) for p in similarity.index]
    if with_labels:
        axis.set_xticks(range(n), labels, rotation=90, fontsize=6)
    else:
        axis.set_xticks([])
        axis.set_xlabel(f"{n} perturbations (labels in perturbation_similarity.csv)")
    axis.set_yticks([])
    figure.colorbar(image, ax=axis, shrink=0.6, label="correlation of mean effects")
    if clusters is None:
        strip_axis.set_visible(False)
        if with_labels:
            axis.set_yticks(range(n), labels, fontsize=6)
    else:
        _cluster_strip(strip_axis, similarity.index, clusters, labels if with_labels else [])
    return figure


def _cluster_strip(axis, perturbations, clusters: pd.DataFrame, labels: list[str]) -> None:
    from matplotlib.colors import ListedColormap

    cluster_of = dict(zip(clusters["perturbation"].astype(str), clusters["cluster"].astype(str)))
    ids = [cluster_of.get(str(p), "none") for p in perturbations]
    order = sorted(set(ids), key=_natural)
    colours = category_colours(order)
    axis.imshow(np.array([[order.index(i)] for i in ids]), cmap=ListedColormap([colours[c] for c in order]),
                aspect="auto", interpolation="nearest", vmin=0, vmax=max(1, len(order) - 1))
    axis.set_xticks([])
    axis.set_yticks(range(len(labels)), labels, fontsize=6)
    axis.set_title("cluster", fontsize=7)


def volcano_figure(de: pd.DataFrame, perturbations: list[str], delta: float | None):
    """Posterior log2 fold change against the log10 Bayes factor of a DE effect, one panel
    per perturbation; called genes coloured, the strongest named."""
    n_rows = max(1, math.ceil(len(perturbations) / PANELS_PER_ROW))
    figure = new_figure(3.6 * PANELS_PER_ROW, 3.0 * n_rows)
    axes = figure.subplots(n_rows, PANELS_PER_ROW, squeeze=False).ravel()
    for axis, perturbation in zip(axes, perturbations):
        rows = de[de["perturbation"] == perturbation]
        x = rows["lfc_mean"].to_numpy(dtype=float)
        y = _log_bayes_factor(rows)
        called = rows["is_de"].fillna(False).astype(bool).to_numpy()
        colour = np.where(~called, NOT_CALLED, np.where(x > 0, UP, DOWN))
        axis.scatter(x, y, c=colour, s=6, linewidths=0, rasterized=True)
        if delta:
            for edge in (-delta, delta):
                axis.axvline(edge, color="#999999", linewidth=0.7, linestyle="--")
        named = np.argsort(-np.abs(np.where(called, x, 0)))[: min(GENE_LABELS, int(called.sum()))]
        for i in named:
            axis.annotate(short_label(rows["gene"].iloc[i]), (x[i], y[i]), fontsize=6, xytext=(2, 2),
                          textcoords="offset points")
        axis.set_title(f"{short_label(perturbation)} ({int(called.sum())} called)")
        axis.set_xlabel("log2 fold change (posterior mean)", fontsize=8)
        axis.set_ylabel("log10 Bayes factor", fontsize=8)
    for axis in axes[len(perturbations):]:
        axis.set_visible(False)
    return figure


def top_genes_figure(top: pd.DataFrame, perturbations: list[str], n_genes: int = 6):
    """Top up- and down-regulated genes (posterior mean LFC) of each perturbation."""
    n_rows = max(1, math.ceil(len(perturbations) / PANELS_PER_ROW))
    figure = new_figure(3.6 * PANELS_PER_ROW, (0.2 * 2 * n_genes + 0.8) * n_rows)
    axes = figure.subplots(n_rows, PANELS_PER_ROW, squeeze=False).ravel()
    for axis, perturbation in zip(axes, perturbations):
        rows = top[top["perturbation"] == perturbation].sort_values("rank")
        up = rows[rows["direction"] == "up"].head(n_genes)
        down = rows[rows["direction"] == "down"].head(n_genes)
        shown = pd.concat([up, down.iloc[::-1]])
        values = shown["lfc_mean"].to_numpy(dtype=float)
        axis.barh(range(len(shown)), values, color=np.where(values > 0, UP, DOWN), height=0.7)
        axis.set_yticks(range(len(shown)), [short_label(g) for g in shown["gene"]], fontsize=7)
        axis.invert_yaxis()
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_title(short_label(perturbation))
        axis.set_xlabel("log2 fold change", fontsize=8)
    for axis in axes[len(perturbations):]:
        axis.set_visible(False)
    return figure


def _log_bayes_factor(rows: pd.DataFrame) -> np.ndarray:
    if "bayes_factor" in rows:
        values = rows["bayes_factor"].to_numpy(dtype=float)
    else:
        p = np.clip(rows["prob_de"].to_numpy(dtype=float), 1e-12, 1 - 1e-12)
        values = np.log10(p / (1 - p))
    return np.clip(np.nan_to_num(values, nan=0.0, posinf=BAYES_FACTOR_CLIP, neginf=-BAYES_FACTOR_CLIP),
                   -BAYES_FACTOR_CLIP, BAYES_FACTOR_CLIP)


def _natural(value: str):
    return (0, int(value)) if value.isdigit() else (1, value)
