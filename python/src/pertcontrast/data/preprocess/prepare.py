"""From a row source to what the prepared file holds: the cells and genes kept, the obs
and var columns added and the recorded settings (the passes are in :mod:`.passes`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pertcontrast.data import validate
from pertcontrast.data.preprocess import cell_cycle, hvg
from pertcontrast.data.preprocess.checks import (
    check_obs,
    check_shape_and_names,
    gene_symbols,
    label_codes,
    mito_mask,
    target_genes,
    validated_obs_keys,
)
from pertcontrast.data.preprocess.output import strings_to_categoricals
from pertcontrast.data.preprocess.passes import detection_pass, moments_pass, quality_pass, score_pass
from pertcontrast.data.preprocess.qc import check_drop, quality_control, summary
from pertcontrast.data.preprocess.settings import (
    CONTROL_KIND_COLUMN,
    PreprocessReport,
    PreprocessSettings,
    recorded_settings,
)

log = logging.getLogger("pertcontrast")


@dataclass
class Preparation:
    cells: np.ndarray  # kept cells (bool, every input cell)
    genes: np.ndarray  # kept genes (bool, every input gene)
    var: pd.DataFrame  # var of the kept genes, with the added columns
    obs: dict  # obs columns added or replaced, values of the kept cells, in order
    uns: dict  # uns["pertcontrast"]
    report: PreprocessReport


def prepare(rows, settings: PreprocessSettings, source: str, chunk_size: int) -> Preparation:
    """Check the screen, then QC, cell-cycle scores and gene selection in passes over ``rows``."""
    report = PreprocessReport(n_cells_in=rows.n_obs, n_genes_in=rows.n_vars)
    check_shape_and_names(pd.Index(rows.obs_names()), rows.var.index, source)
    check_obs(rows.obs_frame(validated_obs_keys(settings)), settings, source)
    symbols = gene_symbols(rows.var, settings)
    log.info("pass 1/5: QC metrics of %d cells x %d genes", rows.n_obs, rows.n_vars)
    metrics = quality_pass(rows, mito_mask(symbols, settings), source, chunk_size)
    codes, names = label_codes(rows.obs_column(settings.perturbation_key))
    passed = _quality_control(rows, metrics, codes, names, settings, report, source)
    log.info("pass 2/5: detection of %d genes in the %d cells that passed QC", rows.n_vars, int(passed.sum()))
    genes = _common_genes(metrics.detected, detection_pass(rows, passed, chunk_size), settings, report)
    cells = _drop_small_perturbations(codes, names, passed, settings, report)
    labels = _model_labels(names, settings)[codes[cells]]
    validate.check_perturbations(
        pd.DataFrame({settings.perturbation_key: labels}), settings.perturbation_key, settings.control_label,
        f"{source} (after QC)", settings.min_control_cells,
    )
    ranks, scores = _selection_and_cycle(rows, cells, genes, symbols[genes].reset_index(drop=True),
                                         settings, report, chunk_size)
    gene_names = rows.var.index[genes]
    targets = set()
    if settings.keep_target_genes:
        keys = [settings.perturbation_key, settings.target_gene_key]
        targets = target_genes(rows.obs_frame(keys, np.flatnonzero(cells)), gene_names, settings)
    is_target = gene_names.isin(list(targets))
    report.target_genes_kept = int(is_target.sum())
    var, selected = _output_var(rows.var, genes, ranks, is_target)
    final_genes = np.zeros(rows.n_vars, dtype=bool)
    final_genes[np.flatnonzero(genes)[selected]] = True
    obs = _added_obs(metrics, cells, scores, labels, names[codes[cells]], settings)
    report.n_cells_out, report.n_genes_out = int(cells.sum()), int(final_genes.sum())
    report.n_controls = int(obs["is_control"].sum())
    report.n_perturbations = int(len(np.unique(labels[~obs["is_control"]])))
    return Preparation(cells, final_genes, var, obs, recorded_settings(settings, report), report)


def _quality_control(rows, metrics, codes, names, settings, report, source) -> np.ndarray:
    nonempty = metrics.total_counts > 0
    report.dropped_empty_cells = int((~nonempty).sum())
    if report.dropped_empty_cells:
        log.warning("dropped %d all-zero cells", report.dropped_empty_cells)
    batches = None
    if settings.batch_key:
        batch_codes, batch_names = label_codes(rows.obs_column(settings.batch_key))
        batches = batch_names[batch_codes]
    qc = quality_control(metrics, nonempty, batches, settings)
    is_control = np.isin(names, settings.control_labels)[codes]
    check_drop(qc, nonempty, is_control, settings, source)
    report.dropped_qc_cells = int((nonempty & ~qc.passed).sum())
    report.qc = qc.record(summary(qc, nonempty))
    log.info("QC: %s", report.qc["summary"])
    return qc.passed


def _common_genes(detected, detected_qc, settings, report) -> np.ndarray:
    nonempty = detected > 0
    report.dropped_empty_genes = int((~nonempty).sum())
    if report.dropped_empty_genes:
        log.warning("dropped %d all-zero genes", report.dropped_empty_genes)
    common = nonempty & (detected_qc >= settings.min_cells_per_gene)
    report.dropped_rare_genes = int((nonempty & ~common).sum())
    return common


def _drop_small_perturbations(codes, names, cells, settings, report) -> np.ndarray:
    counts = np.bincount(codes[cells], minlength=len(names))
    present = np.flatnonzero(counts)
    sizes = pd.Series(counts[present], index=names[present]).sort_values(ascending=False, kind="stable")
    small = sizes[(sizes < settings.min_cells_per_perturbation) & ~sizes.index.isin(settings.control_labels)]
    if not len(small):
        return cells
    report.dropped_perturbations = {str(k): int(v) for k, v in small.items()}
    log.warning(
        "dropped %d perturbations with fewer than %d cells: %s",
        len(small), settings.min_cells_per_perturbation, ", ".join(map(str, small.index[:10])),
    )
    return cells & ~np.isin(codes, np.flatnonzero(np.isin(names, small.index)))


def _model_labels(names: np.ndarray, settings) -> np.ndarray:
    """The label of each code as the prepared file holds it: every kind of control under
    the one control label."""
    return np.where(np.isin(names, settings.control_labels), settings.control_label, names).astype(object)


def _selection_and_cycle(rows, cells, genes, symbols, settings, report, chunk_size):
    """Passes 3 and 4: highly variable ranks of the kept genes, and the cycle scores."""
    n_cells, n_genes = int(cells.sum()), int(genes.sum())
    phases = cell_cycle.marker_phases(symbols) if settings.score_cell_cycle else None
    reason = cell_cycle.why_not_scored(symbols, phases) if phases is not None else "not asked"
    if phases is not None and reason:
        report.cell_cycle = f"skipped ({reason})"
        log.warning("cell-cycle scoring skipped: %s", reason)
    scored = phases is not None and reason is None
    log.info("pass 3/5: gene moments over %d cells x %d genes", n_cells, n_genes)
    moments = moments_pass(rows, cells, genes, chunk_size, scored)
    fit = hvg.fit_variance(moments.sums, moments.squares, n_cells)
    plan = cell_cycle.plan(symbols, phases, moments.log_sums / n_cells, n_cells) if scored else None
    if scored:
        report.cell_cycle = f"scored with {len(plan.s_genes)} S and {len(plan.g2m_genes)} G2M markers"
    log.info("pass 4/5: highly variable genes%s", " and cell-cycle scores" if scored else "")
    sums, squares = score_pass(rows, cells, genes, chunk_size, fit.clip_val, plan)
    if n_genes <= settings.n_top_genes:
        report.all_genes_kept = True
        log.info("keeping all %d genes: fewer than the %d highly variable genes asked for", n_genes,
                 settings.n_top_genes)
    ranks = hvg.ranks(fit, sums, squares, n_cells, min(settings.n_top_genes, n_genes))
    return ranks, (plan.scores if plan is not None else None)


def _output_var(var: pd.DataFrame, genes, ranks, is_target) -> tuple[pd.DataFrame, np.ndarray]:
    """var of the selected genes, and which of the kept genes are selected."""
    var = var.iloc[np.flatnonzero(genes)].copy()
    var["highly_variable"] = ~np.isnan(ranks)
    var["highly_variable_rank"] = ranks
    var["is_perturbation_target"] = is_target
    keep = var["highly_variable"].to_numpy() | is_target
    var = var.iloc[np.flatnonzero(keep)].copy()
    for key in var.columns:
        if isinstance(var[key].dtype, pd.CategoricalDtype):
            var[key] = var[key].cat.remove_unused_categories()
    return strings_to_categoricals(var), keep


def _added_obs(metrics, cells, scores, labels, kinds, settings) -> dict:
    obs = {
        "total_counts": metrics.total_counts[cells],
        "n_genes_by_counts": metrics.n_genes_by_counts[cells],
        "pct_counts_mt": metrics.pct_counts_mt[cells],
    }
    if scores is not None:
        obs.update(S_score=scores[:, 0], G2M_score=scores[:, 1], phase=cell_cycle.phase_calls(scores))
    is_control = np.isin(kinds, settings.control_labels)
    obs[settings.perturbation_key] = pd.Categorical(labels)
    obs["is_control"] = is_control
    if len(settings.control_labels) > 1:
        obs[CONTROL_KIND_COLUMN] = pd.Categorical(np.where(is_control, kinds, None),
                                                  categories=list(settings.control_labels))
    return obs
