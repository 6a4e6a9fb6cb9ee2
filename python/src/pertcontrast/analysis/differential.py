"""The DE table of a screen: model-based DE and Wilcoxon for every perturbation vs the
null controls (controls the model did not train on), one long table (perturbation x gene)
plus top lists.

Every gene of the data is in the table, not only the model's: genes the model was not
trained on (outside the HVGs) get the Wilcoxon statistics, marked ``de_source =
"wilcoxon"``, so DE recall is not capped by the HVG choice.

The calls (``is_de``) of model genes come from the model's residuals: each cell's log
expression minus the model's fit of the same cell unperturbed (its background: cycle,
clone, batch, depth), a t-test (pooled variance) of the perturbation's cells against the null
controls, gene by gene. The background that makes raw expression vary from cell to cell
is gone from the residuals, so the same change is seen with less noise than by a test on
raw expression, and, unlike the decoded counterfactual (``prob_de``, a shrunk posterior
mean: a real but small change has ``prob_de`` 0), its p-values are calibrated against
cells without an effect. Genes outside the model are called by Wilcoxon, on every cell of
the perturbation and up to ``max_control_cells`` null controls.

Perturbations that share a program lend each other strength: one weighted
Benjamini-Hochberg over all genes of a perturbation gives ``de_padj``, with a gene's weight
(``de_weight``, mean 1 over the perturbation's genes) raised where perturbations that look
alike (``program_weights``) changed it too. The weights come from the other perturbations'
cells, so they do not depend on the p-values they weigh and the FDR holds as for plain BH;
a perturbation like no other gets weight 1 everywhere (plain BH). ``de_score`` ranks all
genes on one scale, 1 - ``de_padj`` scaled into [0, 0.99] with the last 0.01 given by
tanh(|LFC|), so genes tied on the first are ranked by the size of their change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pertcontrast.analysis import cells as cell_sets
from pertcontrast.analysis.de import DESettings, SharingSettings, counterfactual_lfc
from pertcontrast.analysis.decode import LOG2, ExpressionResiduals
from pertcontrast.analysis.multiple_testing import (
    log10_bayes_factor,
    posterior_fdr_calls,
    weighted_benjamini_hochberg,
)
from pertcontrast.analysis.wilcoxon import log_normalise, normalise_rows, wilcoxon_against_controls
from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")

COLUMNS = [
    "perturbation", "gene", "de_source", "lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor",
    "posterior_is_de", "residual_lfc", "residual_pvalue", "de_padj", "is_de", "de_score", "wilcoxon_lfc",
    "wilcoxon_pvalue", "wilcoxon_padj", "wilcoxon_is_de", "de_weight", "mean_expression",
]
MODEL_COLUMNS = ("lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor", "residual_lfc", "residual_pvalue")
FLOAT_COLUMNS = (*MODEL_COLUMNS, "de_padj", "de_score", "wilcoxon_lfc", "wilcoxon_pvalue", "wilcoxon_padj",
                 "de_weight", "mean_expression")


@dataclass(frozen=True)
class ResidualMoments:
    """Per-gene mean and variance (ddof 1) of the residuals of ``n`` cells."""

    n: int
    mean: np.ndarray
    variance: np.ndarray


def residual_moments(residuals: ExpressionResiduals, rows: np.ndarray) -> ResidualMoments:
    """The residuals' moments over ``rows``, block by block (no cells x genes array)."""
    total = np.zeros(residuals.n_genes)
    total_sq = np.zeros(residuals.n_genes)
    for _, block in residuals(rows):
        total += block.residual.sum(axis=0)
        total_sq += np.square(block.residual).sum(axis=0)
    n = len(rows)
    mean = total / max(n, 1)
    variance = np.maximum(total_sq - n * mean**2, 0.0) / max(n - 1, 1)
    return ResidualMoments(n, mean, variance)


def pooled_t_test(cells: ResidualMoments, null: ResidualMoments) -> tuple[np.ndarray, np.ndarray]:
    """(mean difference, two-sided p-value of the pooled-variance t-test) per gene; p = 1
    where neither side varies.

    Pooled, not Welch: without an effect a perturbation's cells and the null controls are
    draws of the same residuals, so one variance, which the (many) null controls pin down,
    is what the test needs. Welch's variance of a small group of skewed residuals (barely
    expressed genes: mostly zeros, a few counts) is small exactly when its mean is, so its
    t overshoots downwards and calls genes that did not change."""
    from scipy.stats import t as t_distribution

    df = cells.n + null.n - 2
    pooled = ((cells.n - 1) * cells.variance + (null.n - 1) * null.variance) / max(df, 1)
    se2 = pooled * (1.0 / max(cells.n, 1) + 1.0 / max(null.n, 1))
    difference = cells.mean - null.mean
    with np.errstate(divide="ignore", invalid="ignore"):
        t = difference / np.sqrt(se2)
        pvalue = np.where(se2 > 0, 2.0 * t_distribution.sf(np.abs(t), max(df, 1)), 1.0)
    return difference, np.clip(np.nan_to_num(pvalue, nan=1.0), 0.0, 1.0)


def program_weights(pvalues: np.ndarray, lfc: np.ndarray, targets: np.ndarray,
                    settings: SharingSettings = SharingSettings()) -> np.ndarray:
    """Per perturbation (row) and gene (column), the weight of its test in a weighted BH.

    A perturbation's profile is its signed z-scores (from ``pvalues`` and the sign of
    ``lfc``) on the genes with |z| > ``min_z``, its own target (``targets``: the target's
    column, -1 for none) left out: the knockdown is its own, not a program's. Two
    perturbations are alike by the cosine of their profiles, mapped to a closeness
    ``(cosine - min_similarity) / (1 - min_similarity)`` in [0, 1]. A gene's raw weight is
    ``1 + gain x`` the largest closeness of another perturbation whose p-value of that gene
    is below ``level``, scaled to mean 1 over the genes. The cosine that weighs gene g of
    perturbation A leaves A's value at g out, so A's own noise at g cannot raise g's weight;
    the rest comes from other perturbations' cells (they share the null controls only).
    benchmarks/README.md has what the settings measured."""
    from scipy.stats import norm

    p = np.nan_to_num(np.asarray(pvalues, dtype=float), nan=1.0)
    n_perturbations, n_genes = p.shape
    z = np.sign(np.nan_to_num(np.asarray(lfc, dtype=float))) * norm.isf(np.clip(p, 1e-300, 1.0) / 2)
    profile = np.where(np.abs(z) > settings.min_z, z, 0.0)
    changed = p < settings.level
    has_target = np.flatnonzero(np.asarray(targets) >= 0)
    profile[has_target, targets[has_target]] = 0.0
    changed[has_target, targets[has_target]] = False
    norms = np.linalg.norm(profile, axis=1)

    def closeness(dots, norm_a, norm_b):
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = np.where((norm_a > 0) & (norm_b > 0), dots / (norm_a * norm_b), 0.0)
        return np.clip((cosine - settings.min_similarity) / (1.0 - settings.min_similarity), 0.0, 1.0)

    weights = np.ones((n_perturbations, n_genes))
    for a in range(n_perturbations):
        support = np.flatnonzero(profile[a])
        others = np.delete(np.arange(n_perturbations), a)
        others = others[norms[others] > 0]
        if not len(support) or not len(others):
            continue
        dots = profile[others] @ profile[a]
        plain = closeness(dots, norms[a], norms[others])
        # leave-one-out where A's profile is not 0 (elsewhere it is the plain cosine)
        left_out = closeness(dots[:, None] - profile[others][:, support] * profile[a, support],
                             np.sqrt(np.maximum(norms[a] ** 2 - profile[a, support] ** 2, 0.0))[None, :],
                             norms[others][:, None])
        partners = (plain > 0) | (left_out > 0).any(axis=1)
        if not partners.any():
            continue
        partner_changed = changed[others[partners]]
        evidence = (plain[partners, None] * partner_changed).max(axis=0)
        evidence[support] = (left_out[partners] * partner_changed[:, support]).max(axis=0)
        raw = 1.0 + settings.gain * evidence
        weights[a] = raw / raw.mean()
    return weights


@dataclass
class DEResult:
    table: pd.DataFrame  # one row per (perturbation, gene), COLUMNS
    top: pd.DataFrame  # top genes per perturbation and direction
    cells_used: dict[str, int] = field(default_factory=dict)
    n_controls: int = 0


def differential_expression(
    model,
    adata,
    settings: DESettings = DESettings(),
    device: str = "auto",
    progress: bool = False,
    source: str = "input",
    perturbations=None,
    null_controls: np.ndarray | None = None,
) -> DEResult:
    """Model-based DE and Wilcoxon tests for every perturbation in ``adata`` (raw counts
    in ``X``, in memory or backed; any genes, the model's among them), or only those
    named in ``perturbations``, against the null controls (``null_controls``: boolean
    per cell; default every control, for data the model never saw)."""
    from pertcontrast.progress import track

    encoding = model.encoding
    labels = cell_sets.perturbation_labels(adata.obs, encoding.perturbation_key, source)
    is_control = labels == encoding.control_label
    null = is_control if null_controls is None else is_control & np.asarray(null_controls, bool)
    if null.sum() < 2:
        raise InputDataError(f"{source}: fewer than 2 control cells the model did not train on "
                             f"('{encoding.control_label}'); DE needs them as its null.")
    keep = cell_sets.responder_mask(adata.obs, source) if settings.responders_only else None
    groups = cell_sets.perturbation_groups(labels, encoding.control_label, keep)
    if perturbations is not None:
        unknown = sorted(set(perturbations) - set(groups))
        if unknown:
            raise InputDataError(f"{source}: no perturbation named {', '.join(unknown[:5])} in "
                                 f"'{encoding.perturbation_key}'.")
        groups = {name: rows for name, rows in groups.items() if name in set(perturbations)}
    if not groups:
        raise InputDataError(f"{source}: no perturbed cells.")
    rng = np.random.default_rng(settings.seed)
    residuals = ExpressionResiduals(model, adata, device, source, settings.batch_size)
    cells = residuals.cells
    generator = torch.Generator(device=cells.device).manual_seed(settings.seed)
    control_rows = cell_sets.subsample(np.flatnonzero(null), settings.max_control_cells, rng)
    control_counts = cell_sets.sparse_rows(adata.X, control_rows)
    control_mean = np.asarray(normalise_rows(control_counts).mean(axis=0)).ravel()
    control_lognorm = log_normalise(control_counts)
    genes = np.asarray(adata.var_names.astype(str), dtype=object)
    in_model = np.isin(genes, cells.gene_names)
    model_columns = pd.Index(genes).get_indexer(cells.gene_names)  # model gene -> data column
    null_summary = counterfactual_lfc(
        cells, cell_sets.subsample(np.flatnonzero(null), settings.max_cells_per_perturbation, rng),
        settings.n_samples, settings.delta, generator, settings.batch_size, settings.median_pool,
        settings.pseudocount)
    # the residual test is one decoding per cell: every null control and every cell of a
    # perturbation, not the subsamples the posterior sampling and Wilcoxon need
    null_moments = residual_moments(residuals, np.flatnonzero(null))
    parts, used = [], {}
    for perturbation, all_rows in track(groups.items(), "de", "perturbation", enabled=progress, total=len(groups)):
        rows = cell_sets.subsample(all_rows, settings.max_cells_per_perturbation, rng)
        used[perturbation] = int(len(rows))
        part = {"perturbation": np.full(len(genes), perturbation, dtype=object), "gene": genes,
                "de_source": np.where(in_model, "model", "wilcoxon"), "mean_expression": control_mean}
        if len(rows) < settings.min_cells:
            log.warning("%s: %d cells (fewer than %d); no DE statistics", perturbation, len(rows), settings.min_cells)
            parts.append(_empty_statistics(part))
            continue
        summary = counterfactual_lfc(cells, rows, settings.n_samples, settings.delta, generator,
                                     settings.batch_size, settings.median_pool, settings.pseudocount, null_summary)
        difference, residual_pvalue = pooled_t_test(residual_moments(residuals, all_rows), null_moments)
        model_values = {"lfc_mean": summary.mean, "lfc_median": summary.median, "lfc_sd": summary.sd,
                        "prob_de": summary.prob_de, "bayes_factor": log10_bayes_factor(summary.prob_de),
                        "residual_lfc": difference / LOG2, "residual_pvalue": residual_pvalue}
        for column, values in model_values.items():
            part[column] = np.full(len(genes), np.nan)
            part[column][model_columns] = values
        # Wilcoxon on every cell: the rank test is cheap next to the decoding, and genes
        # outside the model have no other test
        counts = cell_sets.sparse_rows(adata.X, all_rows)
        lfc, pvalue, padj = wilcoxon_against_controls(counts, control_lognorm, control_mean, settings.pseudocount)
        part.update(wilcoxon_lfc=lfc, wilcoxon_pvalue=pvalue, wilcoxon_padj=padj, wilcoxon_is_de=padj < settings.fdr)
        posterior_calls = np.zeros(len(genes), dtype=bool)
        posterior_calls[model_columns] = posterior_fdr_calls(summary.prob_de, settings.fdr)
        part["posterior_is_de"] = posterior_calls
        part["de_pvalue"] = np.where(in_model, part["residual_pvalue"], pvalue)
        part["de_lfc"] = np.where(in_model, part["residual_lfc"], lfc)
        parts.append(part)
    residuals.release()
    _call_genes(parts, genes, settings)
    table = pd.DataFrame({column: np.concatenate([part[column] for part in parts]) for column in COLUMNS})
    table["perturbation"] = pd.Categorical(table["perturbation"], categories=list(groups))
    table["de_source"] = pd.Categorical(table["de_source"], categories=["model", "wilcoxon"])
    for column in FLOAT_COLUMNS:
        table[column] = table[column].astype(np.float64)
    return DEResult(table, top_genes(table, settings.top_n), used, int(len(control_rows)))


def _call_genes(parts: list[dict], genes: np.ndarray, settings: DESettings) -> None:
    """``de_weight``, ``de_padj``, ``is_de`` and ``de_score`` of every part with statistics,
    from their ``de_pvalue`` and ``de_lfc`` (removed): one weighted BH per perturbation,
    the weights shared between alike perturbations (``program_weights``)."""
    tested = [part for part in parts if "de_pvalue" in part]
    if not tested:
        return
    targets = cell_sets.target_columns([part["perturbation"][0] for part in tested], genes)
    pvalues = np.vstack([part.pop("de_pvalue") for part in tested])
    lfc = np.vstack([part.pop("de_lfc") for part in tested])
    weights = program_weights(pvalues, lfc, targets, SharingSettings(gain=settings.share_gain))
    for part, pvalue, weight, change in zip(tested, pvalues, weights, lfc):
        part["de_weight"] = weight
        part["de_padj"] = weighted_benjamini_hochberg(pvalue, weight)
        part["is_de"] = part["de_padj"] < settings.fdr
        part["de_score"] = 0.99 * (1.0 - part["de_padj"]) + 0.01 * np.nan_to_num(np.tanh(np.abs(change)))


def _empty_statistics(part: dict) -> dict:
    n = len(part["gene"])
    for column in (*MODEL_COLUMNS, "de_padj", "de_score", "wilcoxon_lfc", "wilcoxon_pvalue", "wilcoxon_padj",
                   "de_weight"):
        part[column] = np.full(n, np.nan)
    for column in ("posterior_is_de", "is_de", "wilcoxon_is_de"):
        part[column] = np.zeros(n, dtype=bool)
    return part


def top_genes(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Top ``n`` genes per perturbation and direction: the called genes by |lfc_mean|,
    or, for a direction with no called gene, all genes of that sign by |lfc_mean|."""
    rows = []
    for perturbation, part in table.groupby("perturbation", observed=True, sort=False):
        for direction, sign in (("up", 1.0), ("down", -1.0)):
            same_sign = part[np.sign(part["lfc_mean"]) == sign]
            called = same_sign[same_sign["is_de"]]
            chosen = called if len(called) else same_sign
            chosen = chosen.reindex(chosen["lfc_mean"].abs().sort_values(ascending=False).index).head(n)
            for rank, (_, gene) in enumerate(chosen.iterrows(), start=1):
                rows.append({
                    "perturbation": perturbation, "direction": direction, "rank": rank,
                    "gene": gene["gene"], "lfc_mean": gene["lfc_mean"], "prob_de": gene["prob_de"],
                    "is_de": bool(gene["is_de"]),
                })
    return pd.DataFrame(rows, columns=["perturbation", "direction", "rank", "gene", "lfc_mean", "prob_de", "is_de"])
