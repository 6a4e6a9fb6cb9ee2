"""Model-based DE on a planted decoder: log proportions are log_softmax(base + salient @ W),
so the true log2 fold change of every cell is known."""

import math

import numpy as np
import pytest
import torch

from pertcontrast.analysis.de import counterfactual_lfc


class PlantedCells:
    """Stands in for ModelCells: every cell's posterior is N(salient, scale) on the
    salient latent; the background only shifts expression (it cancels in the LFC)."""

    def __init__(self, salient, scale, n_genes=200, seed=0):
        rng = np.random.default_rng(seed)
        self.salient = torch.as_tensor(salient, dtype=torch.float32)
        self.scale = scale
        self.base = torch.as_tensor(rng.normal(0, 1, n_genes), dtype=torch.float32)
        self.weights = torch.zeros(self.salient.shape[1], n_genes)
        self.weights[0, :5] = 2.0  # five genes up by 2 nats per unit of salient dimension 0
        self.weights[0, 5:8] = -1.0
        self.background_weights = torch.as_tensor(rng.normal(0, 1, (2, n_genes)), dtype=torch.float32)
        self.n_genes = n_genes
        self.device = torch.device("cpu")

    def encode(self, rows):
        n = len(rows)
        return {"salient_loc": self.salient[rows], "salient_scale": torch.full((n, self.salient.shape[1]), self.scale),
                "background_loc": torch.zeros(n, 2), "background_scale": torch.full((n, 2), self.scale)}

    def covariate_tensor(self, rows):
        return torch.zeros(len(rows), 0)

    def log_proportions(self, background, salient, covariates):
        return torch.log_softmax(self.base + salient @ self.weights + background @ self.background_weights, dim=-1)

    def true_lfc(self, salient_row):
        s = torch.as_tensor(salient_row, dtype=torch.float32)
        with_effect = torch.log_softmax(self.base + s @ self.weights, dim=-1)
        without = torch.log_softmax(self.base, dim=-1)
        return ((with_effect - without) / math.log(2)).numpy()


def test_lfc_of_certain_latents_is_exact():
    salient = np.zeros((40, 3))
    salient[:, 0] = 0.5
    cells = PlantedCells(salient, scale=1e-6)
    summary = counterfactual_lfc(cells, np.arange(40), n_samples=4, delta=0.25,
                                 generator=torch.Generator().manual_seed(0), batch_size=7)
    expected = cells.true_lfc(salient[0])
    np.testing.assert_allclose(summary.mean, expected, atol=1e-4)
    assert expected[:5].min() > 1.0 and expected[5:8].max() < -0.5
    np.testing.assert_allclose(summary.median, expected, atol=1e-4)
    assert summary.sd.max() < 1e-3
    np.testing.assert_array_equal(summary.prob_de, (np.abs(expected) > 0.25).astype(float))
    assert summary.n_draws == 160


def test_pooled_lfc_mixes_cells_and_posterior_noise():
    salient = np.zeros((200, 3))
    salient[:150, 0] = 0.5  # 150 responders, 50 escapers at 0
    cells = PlantedCells(salient, scale=0.02)
    summary = counterfactual_lfc(cells, np.arange(200), n_samples=20, delta=0.25,
                                 generator=torch.Generator().manual_seed(1), median_pool=500)
    # Up genes: 2 nats x 0.5 = ~1.44 log2 in responders, 0 in escapers: the population
    # LFC is ~1.08, far above delta, so escapers do not cap prob_de at 0.75.
    assert summary.prob_de[:5] == pytest.approx(np.ones(5))
    assert summary.mean[0] == pytest.approx(0.75 * cells.true_lfc(salient[0])[0], rel=0.1)
    assert summary.median[0] > 1.0  # most draws are responders'
    assert summary.prob_de[10:].max() < 0.05  # unaffected genes barely move
    # The same draws with a different batch size give the same answer (one generator stream).
    again = counterfactual_lfc(cells, np.arange(200), n_samples=20, delta=0.25,
                               generator=torch.Generator().manual_seed(1), median_pool=500, batch_size=200)
    np.testing.assert_allclose(again.mean, summary.mean, rtol=1e-5)
    np.testing.assert_array_equal(again.prob_de, summary.prob_de)


def test_prob_de_judges_the_average_effect_of_the_cells():
    salient = np.zeros((200, 3))
    salient[:14, 0] = 0.5  # 7% responders: ~1.44 log2 each, ~0.10 on average (< delta)
    cells = PlantedCells(salient, scale=0.02)
    summary = counterfactual_lfc(cells, np.arange(200), n_samples=40, delta=0.25,
                                 generator=torch.Generator().manual_seed(2))
    assert summary.prob_de[:5].max() < 0.1
    salient[:120, 0] = 0.5  # 60%: ~0.86 on average
    summary = counterfactual_lfc(PlantedCells(salient, scale=0.02), np.arange(200), n_samples=40, delta=0.25,
                                 generator=torch.Generator().manual_seed(2))
    assert summary.prob_de[:5].min() == 1.0


def test_pseudocount_damps_barely_expressed_genes():
    salient = np.zeros((10, 3))
    salient[:, 0] = 0.5
    cells = PlantedCells(salient, scale=1e-6)
    plain = counterfactual_lfc(cells, np.arange(10), 2, 0.25, torch.Generator().manual_seed(0))
    damped = counterfactual_lfc(cells, np.arange(10), 2, 0.25, torch.Generator().manual_seed(0), pseudocount=50.0)
    with torch.inference_mode():
        on = torch.softmax(cells.base + torch.as_tensor(salient[0], dtype=torch.float32) @ cells.weights, -1) * 1e4
        off = torch.softmax(cells.base, -1) * 1e4
    np.testing.assert_allclose(damped.mean, np.log2((on.numpy() + 50.0) / (off.numpy() + 50.0)), atol=1e-4)
    assert np.all(np.abs(damped.mean) <= np.abs(plain.mean) + 1e-6)
