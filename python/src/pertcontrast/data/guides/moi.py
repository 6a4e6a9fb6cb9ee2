"""From guide calls to one perturbation per cell (the multiplicity of infection, MOI).

Guides of the same target count as that target, so a cell with two guides of STAT1 is a
STAT1 cell. A cell whose guides name different perturbations (two targets, or a target and
a control) is excluded by default; ``combine`` keeps it under the sorted labels joined
with '+', e.g. ``IRF1+STAT1``. Controls are labelled by their class (``non-targeting``,
``safe-targeting``), so each kind of control stays its own group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.guides.assignment import GuideCalls
from pertcontrast.data.guides.guide_table import GuideTable

COMBINATION = "combination"
ASSIGNED, COMBINED, NO_GUIDE, EXCLUDED = "assigned", "combined", "no guide", "multiple targets"
STATUSES = (ASSIGNED, COMBINED, NO_GUIDE, EXCLUDED)
KEPT = (ASSIGNED, COMBINED)


def label_cells(calls: GuideCalls, table: GuideTable, multiple_targets: str = "exclude") -> pd.DataFrame:
    """Per cell: ``perturbation`` ('' when excluded), ``guide_class``, ``n_targets``, ``status``."""
    guide_labels = table.labels().reindex(calls.guides).to_numpy()
    names, codes = np.unique(guide_labels.astype(str), return_inverse=True)
    indicator = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(names)))
    hits = (calls.called.astype(np.float64) @ indicator).tocsr()
    hits.eliminate_zeros()
    hits.sort_indices()
    n_targets = np.diff(hits.indptr)
    labels = np.array(["+".join(names[hits.indices[a:b]]) for a, b in zip(hits.indptr[:-1], hits.indptr[1:])],
                      dtype=object)
    status = np.select([n_targets == 0, n_targets == 1], [NO_GUIDE, ASSIGNED],
                       COMBINED if multiple_targets == "combine" else EXCLUDED)
    labels[status == EXCLUDED] = ""
    class_of = table.class_of_label()
    classes = np.array([class_of.get(label, COMBINATION) if label else "" for label in labels], dtype=object)
    return pd.DataFrame({"perturbation": labels, "guide_class": classes, "n_targets": n_targets.astype(np.int64),
                         "status": pd.Categorical(status, categories=STATUSES)}, index=calls.cells)
