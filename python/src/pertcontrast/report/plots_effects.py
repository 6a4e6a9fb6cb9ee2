"""Perturbation-level figures: the similarity heatmap (leaf order), volcano plots of the
strongest perturbations and their top genes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pertcontrast.report.figures import category_colours, new_figure, short_label

MAX_TICK_LABELS = 80
PANELS_PER_ROW = 3
GENE_LABELS = 4
UP, DOWN, NOT_CALLED = "#d62728", "#1f77b4", "#bdbdbd"


def heatmap_figure(similarity: pd.DataFrame, clusters: pd.DataFrame | None):
    """Correlation of the perturbations' mean effect profiles, rows and columns in leaf
    order; a strip on the left shows the clusters (legend below the colour bar)."""
    n = len(similarity)
    with_labels = n <= MAX_TICK_LABELS
    font = _label_size(n)
    side = min(11.0, 3.5 + 0.16 * n) if with_labels else 8.0
    figure = new_figure(side + 2.6, side)
    strip_axis, axis = figure.subplots(1, 2, width_ratios=[0.04, 1])
    image = axis.imshow(similarity.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest", aspect="auto")
    labels = [short_label(p) for p in similarity.index]
    if with_labels:
        axis.set_xticks(range(n), labels, rotation=90, fontsize=font)
    else:
        axis.set_xticks([])
        axis.set_xlabel(f"{n} perturbations (labels in perturbation_similarity.csv)")
    axis.set_yticks([])
    figure.colorbar(image, ax=axis, shrink=0.5, label="correlation of mean effects")
    if clusters is None:
        strip_axis.set_visible(False)
        if with_labels:
            axis.set_yticks(range(n), labels, fontsize=font)
    else:
        colours = _cluster_strip(strip_axis, similarity.index, clusters, labels if with_labels else [], font)
        _cluster_legend(figure, colours)
    return figure


def _label_size(n: int) -> float:
    """Tick labels as large as the rows allow: 9 pt for a few perturbations, 6 pt at 80."""
    return float(np.clip(9.0 - 3.0 * (n - 20) / 60, 6.0, 9.0))


def _cluster_strip(axis, perturbations, clusters: pd.DataFrame, labels: list[str], font: float) -> dict[str, str]:
    from matplotlib.colors import ListedColormap

    cluster_of = dict(zip(clusters["perturbation"].astype(str), clusters["cluster"].astype(str)))
    ids = [cluster_of.get(str(p), "none") for p in perturbations]
    order = sorted(set(ids), key=_natural)
    colours = category_colours(order)
    axis.imshow(np.array([[order.index(i)] for i in ids]), cmap=ListedColormap([colours[c] for c in order]),
                aspect="auto", interpolation="nearest", vmin=0, vmax=max(1, len(order) - 1))
    axis.set_xticks([])
    axis.set_yticks(range(len(labels)), labels, fontsize=font)
    axis.set_title("cluster", fontsize=8)
    return {c: colours[c] for c in order}


def _cluster_legend(figure, colours: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colour, label=f"cluster {name}") for name, colour in colours.items()]
    figure.legend(handles=handles, loc="outside right lower", title="cluster strip", fontsize=8,
                  ncols=1 if len(handles) <= 14 else 2)


def volcano_figure(de: pd.DataFrame, perturbations: list[str], delta: float | None):
    """Log2 fold change against the evidence for a DE effect, one panel per perturbation;
    called genes coloured, the strongest named (labels pushed apart). With the residual
    test's columns (``de_padj``), the evidence the calls were made on: the residual LFC
    (Wilcoxon's for genes outside the model) against -log10 ``de_padj``; otherwise the
    posterior LFC against its Bayes factor."""
    residual = "de_padj" in de
    n_rows = max(1, math.ceil(len(perturbations) / PANELS_PER_ROW))
    figure = new_figure(3.8 * PANELS_PER_ROW, 3.2 * n_rows)
    axes = figure.subplots(n_rows, PANELS_PER_ROW, squeeze=False).ravel()
    for axis, perturbation in zip(axes, perturbations):
        rows = de[de["perturbation"] == perturbation]
        x = np.nan_to_num(observed_lfc(rows))
        y = adjusted_evidence(rows) if residual else evidence(rows, delta)
        called = rows["is_de"].fillna(False).astype(bool).to_numpy()
        colour = np.where(~called, NOT_CALLED, np.where(x > 0, UP, DOWN))
        axis.scatter(x, y, c=colour, s=6, linewidths=0, rasterized=True)
        if delta and not residual:
            for edge in (-delta, delta):
                axis.axvline(edge, color="#999999", linewidth=0.7, linestyle="--")
        named = np.argsort(-np.where(called, y * np.abs(x), -np.inf))[: min(GENE_LABELS, int(called.sum()))]
        _name_points(axis, x[named], y[named], [short_label(g) for g in rows["gene"].iloc[named]])
        axis.set_title(f"{short_label(perturbation)} ({int(called.sum())} called)")
        axis.set_xlabel(lfc_label(de), fontsize=8)
        axis.set_ylabel(ADJUSTED_LABEL if residual else EVIDENCE_LABEL, fontsize=8)
    for axis in axes[len(perturbations):]:
        axis.set_visible(False)
    return figure


def observed_lfc(rows: pd.DataFrame) -> np.ndarray:
    """The change the calls were made on: the residual LFC of model genes, Wilcoxon's
    pseudobulk LFC for the others; the posterior LFC for tables without them."""
    if "residual_lfc" not in rows:
        return rows["lfc_mean"].to_numpy(dtype=float)
    return rows["residual_lfc"].fillna(rows["wilcoxon_lfc"]).to_numpy(dtype=float)


def lfc_label(de: pd.DataFrame) -> str:
    return "log2 fold change (residuals vs null)" if "residual_lfc" in de else "log2 fold change (posterior mean)"


ADJUSTED_LABEL = "-log10 adjusted p (BH)"
ADJUSTED_CAP = 30.0  # drawn at the edge beyond this


def adjusted_evidence(rows: pd.DataFrame) -> np.ndarray:
    padj = np.clip(rows["de_padj"].to_numpy(dtype=float), 1e-300, 1.0)
    return np.minimum(np.nan_to_num(-np.log10(padj), nan=0.0), ADJUSTED_CAP)


EVIDENCE_LABEL = "log10 Bayes factor, |LFC| > delta"
VOLCANO_CAP = 12.0  # log10 Bayes factors beyond this are drawn at the edge


def evidence(rows: pd.DataFrame, delta: float | None) -> np.ndarray:
    """log10 Bayes factor of |LFC| > delta under a normal posterior with the DE table's
    ``lfc_mean`` and ``lfc_sd``. The table's own ``bayes_factor`` counts posterior samples,
    so with a few samples every called gene has the same, capped value; this one keeps
    ordering them. Without ``lfc_sd``: the table's Bayes factor (or one from ``prob_de``)."""
    from scipy.stats import norm

    if "lfc_sd" in rows and delta is not None:
        mean = np.abs(rows["lfc_mean"].to_numpy(dtype=float))
        sd = np.maximum(rows["lfc_sd"].to_numpy(dtype=float), 1e-6)
        log_p = np.logaddexp(norm.logsf(delta, mean, sd), norm.logcdf(-delta, mean, sd))
        log_q = np.log(-np.expm1(np.minimum(log_p, -1e-300)))  # log(1 - p), exact near p = 1
        values = (log_p - log_q) / np.log(10)
    elif "bayes_factor" in rows:
        values = rows["bayes_factor"].to_numpy(dtype=float)
    else:
        p = np.clip(rows["prob_de"].to_numpy(dtype=float), 1e-12, 1 - 1e-12)
        values = np.log10(p / (1 - p))
    return np.clip(np.nan_to_num(values, nan=0.0, posinf=VOLCANO_CAP, neginf=-VOLCANO_CAP), -VOLCANO_CAP, VOLCANO_CAP)


def _name_points(axis, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Labels in a column at the panel's right edge, spaced so none overlaps, each joined
    to its point by a thin line."""
    if not len(labels):
        return
    low, high = axis.get_ylim() if axis.has_data() else (0.0, 1.0)
    low, high = min(low, float(np.min(y))), max(high, float(np.max(y)))
    gap = (high - low) * 0.09
    order = np.argsort(-y)
    slots = np.empty(len(y))
    level = high
    for i in order:
        level = min(level, y[i])
        slots[i] = level
        level -= gap
    for i in range(len(labels)):
        axis.annotate(labels[i], (x[i], y[i]), xytext=(1.02, slots[i]), textcoords=("axes fraction", "data"),
                      fontsize=7, va="center", annotation_clip=False,
                      arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 2})


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


def _natural(value: str):
    return (0, int(value)) if value.isdigit() else (1, value)


MAX_HEATMAP_GENES = 60
GENES_PER_PERTURBATION = 8


def called_genes(de: pd.DataFrame, perturbations: list[str]) -> list[str]:
    """The genes of the DE heatmap: each perturbation's strongest called genes (by
    ``de_score`` when present, else |LFC|), in turn, up to ``MAX_HEATMAP_GENES``."""
    called = de[de["is_de"].fillna(False).astype(bool)]
    score = called["de_score"] if "de_score" in called else called["lfc_mean"].abs()
    ranked = called.assign(_score=score.to_numpy()).sort_values("_score", ascending=False, kind="stable")
    per = {p: list(ranked.loc[ranked["perturbation"] == p, "gene"]) for p in perturbations}
    chosen: list[str] = []
    for depth in range(GENES_PER_PERTURBATION):
        for perturbation in perturbations:
            genes = per[perturbation]
            if depth < len(genes) and genes[depth] not in chosen and len(chosen) < MAX_HEATMAP_GENES:
                chosen.append(genes[depth])
    return chosen


def de_heatmap_figure(de: pd.DataFrame, perturbations: list[str]):
    """Genes called DE (rows) x perturbations (columns, in the order given): the log2 fold
    change the calls were made on (``observed_lfc``), a dot where the gene is called for
    that perturbation. None when no gene is called."""
    genes = called_genes(de, perturbations)
    if not genes:
        return None
    rows = de[de["gene"].isin(genes) & de["perturbation"].isin(perturbations)]
    lfc = rows.assign(_lfc=observed_lfc(rows)).pivot_table(index="gene", columns="perturbation", values="_lfc",
                                                          aggfunc="first")
    lfc = lfc.reindex(index=genes, columns=perturbations).fillna(0.0)
    calls = rows.assign(is_de=rows["is_de"].fillna(False).astype(bool)).pivot_table(
        index="gene", columns="perturbation", values="is_de", aggfunc="first")
    calls = calls.reindex(index=genes, columns=perturbations).fillna(False).astype(bool)
    order = _gene_order(lfc)
    lfc, calls = lfc.iloc[order], calls.iloc[order]
    limit = float(np.nanpercentile(np.abs(lfc.to_numpy()), 98)) or 1.0
    figure = new_figure(2.8 + 0.32 * len(perturbations), 1.6 + 0.15 * len(genes))
    axis = figure.subplots()
    image = axis.imshow(lfc.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    gene_rows, perturbation_columns = np.nonzero(calls.to_numpy())
    axis.scatter(perturbation_columns, gene_rows, s=4, c="black", linewidths=0)
    axis.set_xticks(range(len(perturbations)), [short_label(p) for p in perturbations], rotation=90, fontsize=8)
    axis.set_yticks(range(len(lfc)), [short_label(g) for g in lfc.index], fontsize=7)
    axis.set_xlabel("perturbation")
    figure.colorbar(image, ax=axis, shrink=0.4, label=lfc_label(de))
    return figure


def _gene_order(lfc: pd.DataFrame) -> np.ndarray:
    """Genes grouped by hierarchical clustering of their profiles (leaf order)."""
    if len(lfc) < 3:
        return np.arange(len(lfc))
    from scipy.cluster.hierarchy import leaves_list, linkage

    return leaves_list(linkage(lfc.to_numpy(), method="average", metric="euclidean"))
