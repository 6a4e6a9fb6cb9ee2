"""docs/tutorial.md runs as written: its python blocks, in order, on the screen its first
command makes (with 1,200 cells instead of 2,000, to stay cheap)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # trains a model and runs DE on every perturbation: about a minute
TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_tutorial_runs_from_a_raw_h5ad_to_de_and_a_umap(tmp_path, monkeypatch):
    import matplotlib

    from pertcontrast.data.simulate import simulate

    matplotlib.use("Agg")
    text = TUTORIAL.read_text()
    assert "pertcontrast simulate --preset tiny --seed 0 --output screen.h5ad" in text
    simulate("tiny", seed=0, n_cells=1200).write_h5ad(tmp_path / "screen.h5ad")
    blocks = python_blocks(text)
    assert len(blocks) == 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(TUTORIAL), "exec"), namespace)

    adata, model, de = namespace["adata"], namespace["model"], namespace["de"]
    assert model.is_trained and model.layer == "counts"
    assert adata.obsm["X_salient"].shape == (adata.n_obs, model.architecture.n_salient)
    assert {"X_umap_salient", "X_umap_background"} <= set(adata.obsm)
    assert (tmp_path / "salient_umap.png").read_bytes()[:4] == b"\x89PNG"
    assert {"responder_call", "responder_score"} <= set(adata.obs)
    perturbations = set(adata.obs["perturbation"]) - {"control"}
    assert set(de["perturbation"]) == perturbations and len(de) == len(perturbations) * adata.n_vars
    np.testing.assert_allclose(de["lnbayes_factor"], de["bayes_factor_log10"] * np.log(10))
    # what the tutorial says it shows: the programs' perturbations have called genes, the null has none
    truth = pd.DataFrame(adata.uns["truth"]["perturbations"]).set_index("perturbation")["has_effect"].astype(bool)
    called = de[de["is_de"]].groupby("perturbation", observed=True).size().reindex(sorted(perturbations), fill_value=0)
    assert (called[truth[called.index].to_numpy()] > 0).sum() >= 4  # of 6 (the weakest program may go unseen)
    assert (called[~truth[called.index].to_numpy()] == 0).all()
    assert (tmp_path / "model" / "config.json").exists()
