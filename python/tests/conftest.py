"""Shared fixtures: small simulated screens, prepared once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_screen():
    """A tiny simulated screen (raw counts, truth in obs)."""
    from pertcontrast.data.simulate import simulate

    return simulate("tiny", seed=0, n_cells=1200, n_genes=500)


@pytest.fixture(scope="session")
def tiny_prepared(tiny_screen):
    from pertcontrast.data.preprocess import PreprocessSettings, preprocess

    prepared, _ = preprocess(
        tiny_screen.copy(),
        PreprocessSettings("perturbation", "control", batch_key="batch", n_top_genes=300),
    )
    return prepared


@pytest.fixture(scope="session")
def tiny_prepared_file(tiny_prepared, tmp_path_factory):
    """``tiny_prepared`` written to an .h5ad, for tests that run commands on a file."""
    path = tmp_path_factory.mktemp("tiny_prepared") / "prepared.h5ad"
    tiny_prepared.write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_prepared):
    """A model trained for a few epochs (enough for shapes and round trips, not quality)."""
    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=32)
    model.train(max_epochs=3, batch_size=128, progress=False)
    return model


PAPALEXI = Path("data") / "papalexi2021" / "papalexi2021_thp1_sceptre299.h5ad"


def papalexi_path() -> Path:
    """The real screen of the tests (Papalexi et al. 2021): $PERTCONTRAST_PAPALEXI, else
    the project's shared data beside the checkout (../shared), else /work/shared."""
    candidates = [os.environ.get("PERTCONTRAST_PAPALEXI"), Path(__file__).resolve().parents[3] / "shared" / PAPALEXI,
                  Path("/work/shared") / PAPALEXI]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("the Papalexi 2021 screen is not at $PERTCONTRAST_PAPALEXI, ../shared/data/papalexi2021 or "
                "/work/shared/data/papalexi2021; point PERTCONTRAST_PAPALEXI at its .h5ad")


@pytest.fixture(scope="session")
def papalexi():
    import anndata as ad

    return ad.read_h5ad(papalexi_path())


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
