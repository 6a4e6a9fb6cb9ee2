"""Stratified minibatches: fixed control proportion, no skipped batches, unbiased weights;
row access and the nonzero entries the loader hands the likelihood."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pertcontrast.data.loader import CountRows, StratifiedBatches, csr_tensor
from pertcontrast.errors import ParameterError
from pertcontrast.train.host_memory import reuse_freed_host_memory


def test_every_batch_has_the_fixed_control_proportion_and_covers_all_cells():
    controls, perturbed = np.arange(0, 37), np.arange(37, 500)
    batches = StratifiedBatches(controls, perturbed, 64, 0.25, np.random.default_rng(0))
    seen = []
    for _ in range(batches.steps_per_epoch):
        rows, weights = batches.next_batch()
        assert len(rows) == 64
        assert np.isin(rows, controls).sum() == 16
        seen.append(rows)
    seen = np.concatenate(seen)
    # the larger group is covered exactly once per epoch; the smaller one cycles
    assert set(perturbed) <= set(seen)
    assert set(controls) <= set(seen)


def test_stratum_weights_make_the_estimate_unbiased():
    """plate scale (n / batch) x stratum weight == n_group / batch_group for every cell."""
    controls, perturbed = np.arange(100), np.arange(100, 1000)
    batches = StratifiedBatches(controls, perturbed, 50, 0.4, np.random.default_rng(1))
    rows, weights = batches.next_batch()
    plate_scale = 1000 / 50
    is_control = rows < 100
    np.testing.assert_allclose(plate_scale * weights[is_control], 100 / 20)
    np.testing.assert_allclose(plate_scale * weights[~is_control], 900 / 30)


def test_refuses_data_without_controls():
    with pytest.raises(ParameterError, match="both control and perturbed"):
        StratifiedBatches(np.array([], dtype=int), np.arange(10), 4, 0.5, np.random.default_rng(0))


def test_dense_rows_keep_the_requested_order_and_genes():
    matrix = sp.random(50, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    rows = np.array([7, 3, 41, 3 + 1])
    gene_index = np.array([5, 0, 19])
    dense = CountRows(matrix, gene_index).dense(rows)
    np.testing.assert_array_equal(dense, matrix.toarray()[rows][:, gene_index])
    contiguous = np.arange(10, 20)
    np.testing.assert_array_equal(CountRows(matrix).dense(contiguous), matrix.toarray()[10:20])


def test_minibatch_counts_are_the_rows_as_sparse_csr():
    """The loader hands the model the rows asked for, as a canonical sparse CSR tensor."""
    matrix = sp.random(40, 25, density=0.3, format="csr", random_state=1, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 90)
    rows = np.array([31, 2, 2, 17, 0, 39])
    tensor = csr_tensor(CountRows(matrix).csr_rows(rows))
    assert tensor.layout == torch.sparse_csr and tensor.shape == (6, 25)
    np.testing.assert_array_equal(tensor.to_dense().numpy(), matrix.toarray()[rows])
    assert (tensor.values() > 0).all()


def test_rows_with_stored_zeros_or_duplicates_are_made_canonical():
    """Direct row gathers are only for clean in-memory CSR; other matrices are cleaned so
    every nonzero entry is listed once."""
    clean = sp.random(30, 12, density=0.4, format="csr", random_state=2, dtype=np.float32)
    clean.data = np.ceil(clean.data * 5)
    assert CountRows(clean).direct
    messy = clean.copy()
    messy.data[::4] = 0.0  # stored zeros
    assert not CountRows(messy).direct
    rows = np.array([9, 4, 27])
    block = CountRows(messy).csr_rows(rows)
    assert block.data.all() and block.has_canonical_format
    np.testing.assert_array_equal(block.toarray(), messy.toarray()[rows])
    np.testing.assert_array_equal(CountRows(clean).csr_rows(rows).toarray(), clean.toarray()[rows])


def test_host_memory_tuning_applies_on_linux():
    assert reuse_freed_host_memory() is sys.platform.startswith("linux")
