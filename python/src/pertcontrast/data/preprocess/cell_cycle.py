"""Cell-cycle scores and phases from the shipped S and G2/M markers (Tirosh et al. 2016).

As scanpy's ``score_genes_cell_cycle(random_state=0)`` (the test oracle): a cell's score
is its mean log-normalised expression of the phase's markers minus that of control genes,
drawn per expression bin of the markers (25 bins of the gene means, as many control genes
per bin as the shorter marker list, numpy's RandomState seeded with 0 for each phase);
the phase is S, or G2M when that score is higher, or G1 when both are negative.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}")
PHASES = ["G1", "S", "G2M"]
N_BINS, SEED, MIN_MARKERS = 25, 0, 5


def marker_phases(symbols: pd.Series) -> pd.Series:
    """'S' or 'G2M' for each shipped marker gene (previous symbols included), else NaN."""
    from pertcontrast.data.resources import cell_cycle_gene_table

    lookup = {}
    for row in cell_cycle_gene_table().itertuples():
        lookup[row.gene.upper()] = row.phase
        if row.previous_symbol:
            lookup[row.previous_symbol.upper()] = row.phase
    return symbols.str.upper().map(lookup)


def why_not_scored(symbols: pd.Series, phases: pd.Series) -> str | None:
    """Why the cycle cannot be scored from these genes (None when it can)."""
    n_s, n_g2m = int((phases == "S").sum()), int((phases == "G2M").sum())
    if n_s >= MIN_MARKERS and n_g2m >= MIN_MARKERS:
        return None
    looks_like_ids = symbols.str.match(ENSEMBL_PATTERN).mean() > 0.5
    hint = (
        "gene names look like Ensembl IDs; name the var column of symbols (gene_symbol_key)"
        if looks_like_ids
        else "too few marker genes found"
    )
    return f"{hint}; {n_s} S and {n_g2m} G2M markers"


def _control_genes(gene_list: pd.Index, means: pd.Series, ctrl_size: int) -> pd.Index:
    """The reference set: ``ctrl_size`` genes drawn from each expression bin of the list."""
    rng = np.random.RandomState(SEED)
    means = means[np.isfinite(means)]
    n_items = int(np.round(len(means) / (N_BINS - 1)))
    cut = means.rank(method="min") // n_items
    control = pd.Index([], dtype="string")
    for value in np.unique(cut.loc[gene_list]):
        candidates = cut[cut == value].index
        if ctrl_size < len(candidates):
            candidates = candidates.to_series().sample(ctrl_size, random_state=rng).index
        control = control.union(candidates.difference(gene_list))
    if len(control) == 0:
        raise InputDataError("cell-cycle scoring: no control genes found in any expression bin.")
    return control


@dataclass
class CellCyclePlan:
    """Column indices (among the kept genes) of each phase's markers and control genes,
    and the scores of the kept cells (S, G2M), filled by the score pass."""

    s_genes: np.ndarray
    g2m_genes: np.ndarray
    s_control: np.ndarray
    g2m_control: np.ndarray
    scores: np.ndarray


def plan(symbols: pd.Series, phases: pd.Series, log_means: np.ndarray, n_cells: int) -> CellCyclePlan:
    """Markers and control genes from the gene means of the log-normalised counts."""
    from anndata.utils import make_index_unique

    names = make_index_unique(pd.Index(symbols.to_numpy()).astype(str))
    s_genes = pd.Index(names[(phases == "S").to_numpy()].tolist())
    g2m_genes = pd.Index(names[(phases == "G2M").to_numpy()].tolist())
    ctrl_size = min(len(s_genes), len(g2m_genes))
    pool = pd.Series(log_means, index=names.astype("string"))
    lists = [genes.intersection(names) for genes in (s_genes, g2m_genes)]
    controls = [_control_genes(genes, pool, ctrl_size) for genes in lists]
    return CellCyclePlan(
        *(names.get_indexer(genes) for genes in lists),
        *(names.get_indexer(genes) for genes in controls),
        np.zeros((n_cells, 2)),
    )


def phase_calls(scores: np.ndarray) -> pd.Categorical:
    """S unless G2M scores higher; G1 when both scores are negative."""
    phase = np.where(scores[:, 1] > scores[:, 0], "G2M", "S").astype(object)
    phase[np.all(scores < 0, axis=1)] = "G1"
    return pd.Categorical(phase, categories=PHASES)
