"""The DE scores against the simulator's truth: recall over every affected gene and over
the changes a screen can see."""

import anndata as ad
import numpy as np
import pandas as pd

from pertcontrast.analysis.truth import VISIBLE_LOG2FC, de_scores


def _screen(lfc_rows):
    genes = [f"g{i}" for i in range(len(lfc_rows[0]))]
    adata = ad.AnnData(np.zeros((1, len(genes)), dtype=np.float32), var=pd.DataFrame(index=genes))
    adata.uns["truth"] = {
        "perturbations": {"perturbation": ["A", "B"], "has_effect": [True, False], "knockdown": [True, True]},
        "perturbation_lfc": np.asarray(lfc_rows), "perturbation_lfc_genes": genes,
        "perturbation_lfc_rows": ["A", "B"],
    }
    return adata, genes


def test_recall_over_visible_changes_leaves_out_the_tiny_shifts():
    visible = 2 * VISIBLE_LOG2FC * np.log(2)
    # A: two visible changes, two tiny shifts (below VISIBLE_LOG2FC), two unaffected genes
    adata, genes = _screen([[visible, -visible, 0.01, -0.02, 0.0, 0.0], [0.0] * 6])
    called = [True, False, False, False, True, False]
    table = pd.DataFrame({"perturbation": ["A"] * 6 + ["B"] * 6, "gene": genes * 2,
                          "score": [3.0, 2.0, 1.5, 1.0, 2.5, 0.0] * 2, "called": called * 2})
    scores = de_scores(table, adata, "score", "called")
    assert scores["de_recall"] == 1 / 4  # B has no program: not scored
    assert scores["de_recall_visible"] == 1 / 2
    assert scores["de_precision"] == 1 / 2
