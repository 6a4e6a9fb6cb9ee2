"""The DE table of a screen: model-based DE and Wilcoxon for every perturbation vs the
controls, one long table (perturbation x gene) plus top lists."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pertcontrast.analysis import cells as cell_sets
from pertcontrast.analysis.de import DESettings, counterfactual_lfc
from pertcontrast.analysis.decode import ModelCells
from pertcontrast.analysis.multiple_testing import log10_bayes_factor, posterior_fdr_calls
from pertcontrast.analysis.wilcoxon import log_normalise, normalise_rows, wilcoxon_against_controls
from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")

COLUMNS = [
    "perturbation", "gene", "lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor", "is_de",
    "wilcoxon_lfc", "wilcoxon_pvalue", "wilcoxon_padj", "wilcoxon_is_de", "mean_expression",
]


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
) -> DEResult:
    """Model-based DE and Wilcoxon tests for every perturbation in ``adata`` (raw counts
    in ``X``, in memory or backed), or only those named in ``perturbations``, against
    its controls."""
    from tqdm.auto import tqdm

    registry = model.registry
    labels = cell_sets.perturbation_labels(adata.obs, registry.perturbation_key, source)
    is_control = labels == registry.control_label
    if is_control.sum() < 2:
        raise InputDataError(f"{source}: fewer than 2 control cells ('{registry.control_label}'); DE needs controls.")
    keep = cell_sets.responder_mask(adata.obs, source) if settings.responders_only else None
    groups = cell_sets.perturbation_groups(labels, registry.control_label, keep)
    if perturbations is not None:
        unknown = sorted(set(perturbations) - set(groups))
        if unknown:
            raise InputDataError(f"{source}: no perturbation named {', '.join(unknown[:5])} in "
                                 f"'{registry.perturbation_key}'.")
        groups = {name: rows for name, rows in groups.items() if name in set(perturbations)}
    if not groups:
        raise InputDataError(f"{source}: no perturbed cells.")
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    cells = ModelCells(model, adata, device, source)
    if cells.device.type != "cpu":
        generator = torch.Generator(device=cells.device).manual_seed(settings.seed)
    control_rows = cell_sets.subsample(np.flatnonzero(is_control), settings.max_control_cells, rng)
    control_counts = cell_sets.sparse_rows(adata.X, control_rows, cells.rows.gene_index)
    control_mean = np.asarray(normalise_rows(control_counts).mean(axis=0)).ravel()
    control_lognorm = log_normalise(control_counts)
    genes = np.asarray(cells.gene_names, dtype=object)
    parts, used = [], {}
    for perturbation, rows in tqdm(groups.items(), desc="de", unit="perturbation", disable=not progress):
        rows = cell_sets.subsample(rows, settings.max_cells_per_perturbation, rng)
        used[perturbation] = int(len(rows))
        part = {"perturbation": np.full(len(genes), perturbation, dtype=object), "gene": genes,
                "mean_expression": control_mean}
        if len(rows) < settings.min_cells:
            log.warning("%s: %d cells (fewer than %d); no DE statistics", perturbation, len(rows), settings.min_cells)
            parts.append(_empty_statistics(part))
            continue
        summary = counterfactual_lfc(cells, rows, settings.n_samples, settings.delta, generator,
                                     settings.batch_size, settings.median_pool, settings.pseudocount)
        part.update(lfc_mean=summary.mean, lfc_median=summary.median, lfc_sd=summary.sd, prob_de=summary.prob_de,
                    bayes_factor=log10_bayes_factor(summary.prob_de),
                    is_de=posterior_fdr_calls(summary.prob_de, settings.fdr))
        counts = cell_sets.sparse_rows(adata.X, rows, cells.rows.gene_index)
        lfc, pvalue, padj = wilcoxon_against_controls(counts, control_lognorm, control_mean, settings.pseudocount)
        part.update(wilcoxon_lfc=lfc, wilcoxon_pvalue=pvalue, wilcoxon_padj=padj, wilcoxon_is_de=padj < settings.fdr)
        parts.append(part)
    cells.release()
    table = pd.DataFrame({column: np.concatenate([part[column] for part in parts]) for column in COLUMNS})
    table["perturbation"] = pd.Categorical(table["perturbation"], categories=list(groups))
    for column in ("lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor", "wilcoxon_lfc",
                   "wilcoxon_pvalue", "wilcoxon_padj", "mean_expression"):
        table[column] = table[column].astype(np.float64)
    return DEResult(table, top_genes(table, settings.top_n), used, int(len(control_rows)))


def _empty_statistics(part: dict) -> dict:
    n = len(part["gene"])
    for column in ("lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor",
                   "wilcoxon_lfc", "wilcoxon_pvalue", "wilcoxon_padj"):
        part[column] = np.full(n, np.nan)
    part["is_de"] = np.zeros(n, dtype=bool)
    part["wilcoxon_is_de"] = np.zeros(n, dtype=bool)
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
