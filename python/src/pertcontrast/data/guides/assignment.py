"""Which guides each cell carries: from a guide x cell UMI matrix (per-guide thresholds),
or from calls made elsewhere (Cell Ranger's protospacer calls, a cell,guide table).

A guide is called in a cell when its UMIs reach the guide's threshold (a two-component
mixture on log UMIs, see ``mixture``; never below ``min_umis``) and are at least
``min_fraction`` of all the cell's guide UMIs (ambient UMIs of one guide are a small
share of a cell that carries another).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.guides.mixture import GuideThreshold, guide_threshold
from pertcontrast.data.guides.settings import AssignmentSettings

ASSIGNMENTS = ("single", "multiple", "none")


@dataclass
class GuideCalls:
    """Calls for every cell of ``cells``: ``called`` and ``umis`` are cells x guides (CSR)."""

    cells: pd.Index
    guides: pd.Index
    umis: sp.csr_matrix
    called: sp.csr_matrix  # bool
    thresholds: list[GuideThreshold] | None = None  # None: the calls came from a table

    def per_cell(self) -> pd.DataFrame:
        """``guide`` ('|'-joined when several, '' when none), ``guide_umis`` (of the called
        guides), ``guide_umis_total`` (all the cell's guide UMIs), ``n_guides``, ``assignment``."""
        called = self.called.tocsr()
        called_umis = self.umis.multiply(called).tocsr()
        n_guides = np.diff(called.indptr)
        names = np.asarray(self.guides, dtype=object)
        labels = ["|".join(names[called.indices[a:b]]) for a, b in zip(called.indptr[:-1], called.indptr[1:])]
        assignment = np.where(n_guides == 0, "none", np.where(n_guides == 1, "single", "multiple"))
        return pd.DataFrame({
            "guide": labels,
            "guide_umis": np.asarray(called_umis.sum(axis=1)).ravel().astype(np.int64),
            "guide_umis_total": np.asarray(self.umis.sum(axis=1)).ravel().astype(np.int64),
            "n_guides": n_guides.astype(np.int64),
            "assignment": pd.Categorical(assignment, categories=ASSIGNMENTS),
        }, index=self.cells)


def call_from_umis(umis, cells, guides, settings: AssignmentSettings) -> GuideCalls:
    """Per-guide thresholds from the UMI matrix (cells x guides), then the calls."""
    umis = sp.csr_matrix(umis, dtype=np.int64, copy=True)
    umis.eliminate_zeros()
    umis.sort_indices()
    by_guide = umis.tocsc()
    thresholds = [
        guide_threshold(by_guide.data[by_guide.indptr[j]:by_guide.indptr[j + 1]], settings.min_umis,
                        settings.min_cells_for_mixture)
        for j in range(umis.shape[1])
    ]
    needed = np.array([t.umis for t in thresholds])
    totals = np.asarray(umis.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(umis.shape[0]), np.diff(umis.indptr))
    keep = (umis.data >= needed[umis.indices]) & (umis.data >= settings.min_fraction * totals[rows])
    # copies: eliminate_zeros() rewrites indices and indptr in place
    called = sp.csr_matrix((keep, umis.indices.copy(), umis.indptr.copy()), shape=umis.shape, dtype=bool)
    called.eliminate_zeros()
    return GuideCalls(pd.Index(cells), pd.Index(guides), umis, called, thresholds)


def calls_from_table(table: pd.DataFrame, cells, guides) -> GuideCalls:
    """Calls listed in a table with columns ``cell``, ``guide`` and ``umis`` (0 when not
    known), one row per call; cells absent from ``cells`` are left out."""
    cells, guides = pd.Index(cells), pd.Index(guides)
    rows, columns = cells.get_indexer(table["cell"]), guides.get_indexer(table["guide"])
    present = (rows >= 0) & (columns >= 0)
    shape = (len(cells), len(guides))
    umis = sp.csr_matrix((table["umis"].to_numpy(np.int64)[present], (rows[present], columns[present])), shape=shape)
    called = sp.csr_matrix((np.ones(present.sum(), dtype=bool), (rows[present], columns[present])), shape=shape)
    return GuideCalls(cells, guides, umis, called.astype(bool), None)
