"""Which cells pass QC: outliers by median absolute deviations within each batch (the
scverse best-practice rule) and, when given, fixed thresholds.

Within each batch (``--batch-key``; the whole screen without one), among the cells with
any count, a cell is an outlier when

- log1p(total counts) or log1p(genes detected) lies more than ``--qc-mads`` (5) MADs
  below or above the batch's median (too shallow, or doublet-like);
- its percent of mitochondrial counts lies more than ``--qc-mads`` MADs above the median.

MAD is the median of absolute deviations from the median (unscaled). A metric whose MAD is
0 in a batch (e.g. no mitochondrial gene) is not used there. ``--min-counts``,
``--min-genes`` and ``--max-pct-mito`` add fixed thresholds; ``--qc-mads 0`` leaves only
those. When QC would drop more than ``--max-qc-drop`` (half) of the cells or of the
controls, preprocessing stops and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")
# (metric, log1p-transformed, lower bound too, how the report names it)
MAD_METRICS = (
    ("total_counts", True, True, "counts"),
    ("n_genes_by_counts", True, True, "genes"),
    ("pct_counts_mt", False, False, "% mito"),
)
REASONS = {
    "low_total_counts": "low counts", "high_total_counts": "high counts",
    "low_n_genes_by_counts": "few genes", "high_n_genes_by_counts": "many genes",
    "high_pct_counts_mt": "high % mito", "low_pct_counts_mt": "low % mito",
    "min_counts": "below min counts", "min_genes": "below min genes", "max_pct_mito": "above max % mito",
}


@dataclass
class QualityControl:
    passed: np.ndarray  # every input cell; all-zero cells fail
    failed: dict[str, int] = field(default_factory=dict)  # reason -> cells (a cell can count twice)
    thresholds: dict = field(default_factory=dict)  # per batch: batch, cells, <metric>_min/_max
    rule: str = ""

    def record(self, summary: str) -> dict:
        """What the prepared file records (plain types, no '/' in keys)."""
        return {"summary": summary, "rule": self.rule, "failed": dict(self.failed), "thresholds": self.thresholds}


def _median_and_mad(values: np.ndarray) -> tuple[float, float]:
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median)))


def _mad_outliers(metrics, members: np.ndarray, n_mads: float, flags: dict, row: dict, batch: str) -> None:
    for metric, logged, two_sided, _ in MAD_METRICS:
        values = getattr(metrics, metric).astype(np.float64)
        values = np.log1p(values) if logged else values
        median, mad = _median_and_mad(values[members])
        natural = np.expm1 if logged else (lambda v: v)
        if two_sided:
            row[f"{metric}_min"] = float(natural(median - n_mads * mad)) if mad > 0 else float("nan")
        row[f"{metric}_max"] = float(natural(median + n_mads * mad)) if mad > 0 else float("nan")
        if mad == 0:
            log.info("QC: %s has no spread in batch %s (MAD 0); not used there", metric, batch)
            continue
        if two_sided:
            flags[f"low_{metric}"] |= members & (values < median - n_mads * mad)
        flags[f"high_{metric}"] |= members & (values > median + n_mads * mad)


def quality_control(metrics, nonempty: np.ndarray, batches: np.ndarray | None, settings) -> QualityControl:
    """The cells that pass QC, why the others fail, and the thresholds used."""
    n = len(nonempty)
    flags = {}
    if settings.qc_mads > 0:
        flags = {f"{side}_{metric}": np.zeros(n, dtype=bool) for metric, *_ in MAD_METRICS for side in ("low", "high")}
    groups = ["all"] if batches is None else sorted(set(batches.tolist()))
    rows = []
    for batch in groups:
        members = nonempty & (True if batches is None else batches == batch)
        row = {"batch": str(batch), "cells": int(members.sum())}
        if settings.qc_mads > 0 and members.any():
            _mad_outliers(metrics, members, settings.qc_mads, flags, row, batch)
        rows.append(row)
    for name, fails in _fixed_rules(metrics, settings):
        flags[name] = fails
    failing = np.zeros(n, dtype=bool)
    for fails in flags.values():
        failing |= fails
    keys = dict.fromkeys(key for row in rows for key in row)
    thresholds = {key: [row.get(key, float("nan")) for row in rows] for key in keys}
    failed = {name: int((fails & nonempty).sum()) for name, fails in flags.items()}
    return QualityControl(nonempty & ~failing, failed, thresholds, describe(thresholds, settings))


def _fixed_rules(metrics, settings):
    if settings.min_counts is not None:
        yield "min_counts", metrics.total_counts < settings.min_counts
    if settings.min_genes is not None:
        yield "min_genes", metrics.n_genes_by_counts < settings.min_genes
    if settings.max_pct_mito is not None:
        yield "max_pct_mito", metrics.pct_counts_mt > settings.max_pct_mito


def _span(values, digits: int) -> str:
    """``low..high`` over the batches (one number when they agree; '-' when none is used)."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "-"
    low, high = (f"{v:,.{digits}f}" for v in (min(finite), max(finite)))
    return low if low == high else f"{low}..{high}"


def describe(thresholds: dict, settings) -> str:
    """The thresholds in one phrase, e.g. for the stop message."""
    parts = []
    fixed = (("min counts", settings.min_counts), ("min genes", settings.min_genes),
             ("max % mito", settings.max_pct_mito))
    parts += [f"{name} {value:g}" for name, value in fixed if value is not None]
    if settings.qc_mads > 0:
        where = f"each '{settings.batch_key}'" if settings.batch_key else "the screen"
        bounds = []
        for metric, logged, two_sided, label in MAD_METRICS:
            digits = 0 if logged else 1
            low = _span(thresholds.get(f"{metric}_min", []), digits)
            high = _span(thresholds.get(f"{metric}_max", []), digits)
            bounds.append(f"{label} {low} to {high}" if two_sided else f"{label} up to {high}")
        parts.append(f"{settings.qc_mads:g} MADs from the median of {where} ({', '.join(bounds)})")
    return "; ".join(parts) or "none"


def summary(qc: QualityControl, nonempty: np.ndarray) -> str:
    n_failed = int((nonempty & ~qc.passed).sum())
    reasons = ", ".join(f"{REASONS[name]} {count}" for name, count in qc.failed.items() if count)
    return f"{n_failed} cells failed ({reasons or 'none'}); thresholds: {qc.rule}"


def check_drop(qc: QualityControl, nonempty: np.ndarray, is_control: np.ndarray, settings, source: str) -> None:
    """Stop when QC would drop more than ``max_qc_drop`` of the cells or of the controls."""
    dropped = nonempty & ~qc.passed
    parts, too_many = [], False
    for what, members in (("cells", nonempty), ("controls", nonempty & is_control)):
        n, n_dropped = int(members.sum()), int((dropped & members).sum())
        if n == 0:
            return  # nothing left to judge: the checks after QC say what is wrong
        too_many |= n_dropped / n > settings.max_qc_drop
        parts.append(f"{100 * n_dropped / n:.1f}% of the {what} ({n_dropped:,} of {n:,})")
    if too_many:
        raise InputDataError(
            f"{source}: QC would drop {' and '.join(parts)}, more than {{param}} {settings.max_qc_drop:g}; "
            f"thresholds: {qc.rule}. Loosen them ({{param:qc_mads}}, {{param:min_counts}}, {{param:min_genes}}, "
            "{param:max_pct_mito}) or pass {param:max_qc_drop=1} to go on.", param="max_qc_drop"
        )
