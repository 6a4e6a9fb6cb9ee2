"""Shared fixtures: small simulated screens, prepared once per test session."""

from __future__ import annotations

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
def tiny_model(tiny_prepared):
    """A model trained for a few epochs (enough for shapes and round trips, not quality)."""
    from pertcontrast.model import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=32)
    model.train(max_epochs=3, batch_size=128, progress=False)
    return model


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
