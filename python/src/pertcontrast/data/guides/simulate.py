"""Simulated guide capture with known truth, to measure guide assignment.

Every cell carries no guide, one, or two (a multiplet: a doublet or a second integration).
A carried guide gives NB(mean = ``mean_umis`` x cell capture x guide capture, size
``dispersion``) UMIs; cell and guide capture efficiencies are log-normal. On top, every cell
gets background UMIs of guides it does not carry, spread over the guides in proportion to
their abundance in the pool (how often they are carried, times their capture): a fixed
part, Poisson(``ambient_umis``) (ambient guide transcripts in the droplet), and a part that
grows with the cell's own guide UMIs, Poisson(``chimera_fraction`` x those UMIs) (PCR
chimeras and index hopping). Guide frequencies in the pool are Dirichlet(``pool_concentration``).

The defaults follow the Papalexi et al. 2021 THP-1 screen (``../shared/data/papalexi2021``,
assigned with the defaults of ``assignment``): median 96 UMIs of the top guide and quartiles
29 and 265; other guides' UMIs about 5 per cell plus 3-5% of the cell's called UMIs,
spread very unevenly over the guides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class GuideScenario:
    n_cells: int = 5000
    n_targets: int = 20
    guides_per_target: int = 3
    n_control_guides: int = 6
    no_guide_rate: float = 0.05
    multiplet_rate: float = 0.08
    mean_umis: float = 100.0
    cell_capture_sd: float = 1.2
    guide_capture_sd: float = 0.8
    dispersion: float = 3.0
    ambient_umis: float = 5.0
    chimera_fraction: float = 0.04
    pool_concentration: float = 2.0


@dataclass
class SimulatedGuides:
    umis: sp.csr_matrix  # cells x guides
    truth: sp.csr_matrix  # cells x guides, bool: the guides each cell carries
    cells: pd.Index
    guide_table: pd.DataFrame  # guide, target, class


def simulate_guides(scenario: GuideScenario = GuideScenario(), seed: int = 0) -> SimulatedGuides:
    rng = np.random.default_rng(seed)
    table = _guide_table(scenario)
    n_guides = len(table)
    frequency = rng.dirichlet(np.full(n_guides, scenario.pool_concentration))
    guide_capture = rng.lognormal(0.0, scenario.guide_capture_sd, n_guides)
    cell_capture = rng.lognormal(0.0, scenario.cell_capture_sd, scenario.n_cells)
    n_carried = rng.choice([0, 1, 2], size=scenario.n_cells, p=[
        scenario.no_guide_rate, 1 - scenario.no_guide_rate - scenario.multiplet_rate, scenario.multiplet_rate])
    rows, columns = [], []
    for cell, k in enumerate(n_carried):
        chosen = rng.choice(n_guides, size=k, replace=False, p=frequency)
        rows += [cell] * k
        columns += list(chosen)
    rows, columns = np.array(rows, dtype=int), np.array(columns, dtype=int)
    mean = scenario.mean_umis * cell_capture[rows] * guide_capture[columns]
    carried = rng.negative_binomial(scenario.dispersion, scenario.dispersion / (scenario.dispersion + mean))
    shape = (scenario.n_cells, n_guides)
    truth = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, columns)), shape=shape)
    pool = frequency * guide_capture
    own = np.bincount(rows, weights=carried, minlength=scenario.n_cells)
    background = rng.poisson(scenario.ambient_umis + scenario.chimera_fraction * own)
    ambient = rng.multinomial(background, pool / pool.sum())
    umis = sp.csr_matrix((carried, (rows, columns)), shape=shape) + sp.csr_matrix(ambient)
    umis = sp.csr_matrix(umis, dtype=np.int64)
    umis.eliminate_zeros()
    cells = pd.Index([f"cell{i}" for i in range(scenario.n_cells)])
    return SimulatedGuides(umis, truth, cells, table)


def _guide_table(scenario: GuideScenario) -> pd.DataFrame:
    rows = [(f"T{t}g{g}", f"T{t}", "targeting")
            for t in range(scenario.n_targets) for g in range(1, scenario.guides_per_target + 1)]
    rows += [(f"NTg{g}", "non-targeting", "non-targeting") for g in range(1, scenario.n_control_guides + 1)]
    return pd.DataFrame(rows, columns=["guide", "target", "class"])


def score_calls(truth: sp.csr_matrix, called: sp.csr_matrix, umis: sp.csr_matrix | None = None,
                detectable_umis: int = 3) -> dict[str, float]:
    """How calls (cells x guides, bool) match the truth: the fraction of single-guide cells
    called with exactly their guide (also among the detectable ones, whose guide has at
    least ``detectable_umis`` UMIs, when ``umis`` is given), and the detection of multiplets
    (cells with two guides or more, called with two or more): precision, recall, F1."""
    truth, called = sp.csr_matrix(truth, dtype=bool), sp.csr_matrix(called, dtype=bool)
    n_true, n_called = np.diff(truth.indptr), np.diff(called.indptr)
    wrong = np.diff((truth != called).tocsr().indptr) > 0
    single = n_true == 1
    true_multiplet, called_multiplet = n_true >= 2, n_called >= 2
    hits = int((true_multiplet & called_multiplet).sum())
    precision = hits / max(int(called_multiplet.sum()), 1)
    recall = hits / max(int(true_multiplet.sum()), 1)
    scores = {
        "single_guide_cells": int(single.sum()),
        "single_accuracy": float((~wrong[single]).mean()),
        "multiplets": int(true_multiplet.sum()),
        "multiplet_precision": precision,
        "multiplet_recall": recall,
        "multiplet_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }
    if umis is not None:
        own = np.asarray(sp.csr_matrix(umis).multiply(truth).sum(axis=1)).ravel()
        detectable = single & (own >= detectable_umis)
        scores["single_accuracy_detectable"] = float((~wrong[detectable]).mean())
    return scores


def fixed_threshold_calls(umis: sp.csr_matrix, min_umis: int = 5) -> sp.csr_matrix:
    """The baseline: a guide is called from ``min_umis`` UMIs on, whatever the guide or cell."""
    called = sp.csr_matrix(umis >= min_umis, dtype=bool)
    called.eliminate_zeros()
    return called
