"""Responder calls: which perturbed cells show their perturbation's effect.

The null is ``null_controls``: decoy controls (trained as if perturbed) and controls the
model never saw (see ``analysis.cells.null_controls``). The controls trained as controls
are no null: the Wasserstein term pulled their salient latents to 0, so they look more
"unperturbed" than any perturbed cell and a null of them finds effects everywhere.

A perturbation has responders only when its cells differ from the null at all: an
energy test of its salient latents against the null controls, Benjamini-Hochberg over
perturbations at ``fdr``. Within those, a cell's score is the projection of its salient
mean onto the perturbation's mean salient direction, the null controls projected onto the
same direction are the null, and a two-component mixture (null fixed to the controls'
scores, responders free) gives each cell a posterior probability of responding. A
responder has a posterior above ``threshold`` and a score above the ``null_quantile``
of the null's: at most 1 - ``null_quantile`` of the cells that do not respond (escapers)
are called, even where the two components overlap.

The direction is the mean of the perturbation's cells whose salient norm exceeds the
controls' median norm (escapers sit near 0 and barely move it). It is cross-fitted: the
cells are split in two halves and each half is scored on the direction of the other, so
a cell's own noise does not pull the direction towards it (otherwise perturbations with
no effect would show a spurious shift away from the null).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pertcontrast.analysis.energy import energy_test
from pertcontrast.analysis.mixture import fit_null_mixture
from pertcontrast.analysis.multiple_testing import benjamini_hochberg

CONTROL, RESPONDER, NON_RESPONDER = "control", "responder", "non-responder"
CALLS = (CONTROL, RESPONDER, NON_RESPONDER)


@dataclass
class ResponderResult:
    score: np.ndarray  # per cell, NaN for controls
    probability: np.ndarray  # per cell, NaN for controls
    call: pd.Categorical
    table: pd.DataFrame  # one row per perturbation


def mean_direction(salient: np.ndarray, norm_cutoff: float) -> np.ndarray:
    """Unit vector of the mean of the rows whose norm exceeds ``norm_cutoff`` (all rows
    when none do); zeros when that mean is 0."""
    if len(salient) == 0:
        return np.zeros(salient.shape[1])
    large = np.linalg.norm(salient, axis=1) > norm_cutoff
    mean = salient[large].mean(axis=0) if large.any() else salient.mean(axis=0)
    length = np.linalg.norm(mean)
    return mean / length if length > 0 else np.zeros_like(mean)


def responder_scores(
    salient: np.ndarray, controls: np.ndarray, rng: np.random.Generator, null_quantile: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted projection scores of one perturbation's cells, the controls' null
    scores (projected on each half's direction) and each cell's ``null_quantile`` of the
    null scores on its own direction."""
    cutoff = float(np.median(np.linalg.norm(controls, axis=1)))
    n = len(salient)
    halves = np.zeros(n, dtype=bool)
    halves[rng.permutation(n)[: n // 2]] = True
    scores, bar = np.empty(n), np.empty(n)
    null = []
    for held_out in (halves, ~halves):
        fit_rows = ~held_out if (~held_out).any() else held_out
        direction = mean_direction(salient[fit_rows], cutoff)
        scores[held_out] = salient[held_out] @ direction
        null.append(controls @ direction)
        bar[held_out] = np.quantile(null[-1], null_quantile) if len(controls) else np.inf
    return scores, np.concatenate(null), bar


def call_responders(
    salient: np.ndarray,
    labels,
    control_label: str,
    null_controls: np.ndarray | None = None,
    threshold: float = 0.5,
    fdr: float = 0.05,
    n_permutations: int = 1000,
    seed: int = 0,
    null_quantile: float = 0.875,
) -> ResponderResult:
    """Scores, responder probabilities and calls for every cell (see module docstring).

    ``null_controls``: boolean per cell, the controls the model did not train on (default:
    every control, for latents of data the model never saw)."""
    salient = np.asarray(salient, dtype=np.float64)
    labels = pd.Series(np.asarray(labels, dtype=object)).astype(str).to_numpy()
    is_control = labels == control_label
    null_mask = is_control if null_controls is None else (np.asarray(null_controls, bool) & is_control)
    controls = salient[null_mask]
    n = len(labels)
    score = np.full(n, np.nan)
    probability = np.full(n, np.nan)
    responding = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    perturbations = sorted(set(labels[~is_control]))
    tests = [energy_test(salient[labels == p], controls, n_permutations, seed=[seed, i])
             for i, p in enumerate(perturbations)]
    padj = benjamini_hochberg([pvalue for _, pvalue in tests])
    rows = []
    for perturbation, (distance, pvalue), adjusted in zip(perturbations, tests, padj):
        cells = np.flatnonzero(labels == perturbation)
        scores, null, bar = responder_scores(salient[cells], controls, rng, null_quantile)
        score[cells] = scores
        fit = fit_null_mixture(scores, float(null.mean()), float(null.std()))
        detected = bool(adjusted < fdr)
        probability[cells] = fit.posterior(scores) if detected else 0.0
        responding[cells] = (probability[cells] > threshold) & (scores > bar)
        n_responders = int(responding[cells].sum())
        rows.append({
            "perturbation": perturbation,
            "n_cells": len(cells),
            "n_responders": n_responders,
            "responder_fraction": n_responders / len(cells),
            "energy_distance": distance,
            "energy_pvalue": pvalue,
            "energy_padj": float(adjusted),
            "effect_detected": detected,
            "null_threshold": float(np.quantile(null, null_quantile)),
            "mixture_weight": fit.weight,
            "mixture_separated": fit.separated,
            "responder_mean": fit.mean,
            "null_mean": fit.null_mean,
            "null_sd": fit.null_sd,
        })
    call = np.where(is_control, CONTROL, np.where(responding, RESPONDER, NON_RESPONDER))
    table = pd.DataFrame(rows, columns=[
        "perturbation", "n_cells", "n_responders", "responder_fraction", "energy_distance", "energy_pvalue",
        "energy_padj", "effect_detected", "null_threshold", "mixture_weight", "mixture_separated",
        "responder_mean", "null_mean", "null_sd",
    ])
    table.attrs["n_null_controls"] = int(null_mask.sum())
    return ResponderResult(score, probability, pd.Categorical(call, categories=list(CALLS)), table)
