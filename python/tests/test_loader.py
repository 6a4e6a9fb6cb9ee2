"""Stratified minibatches: fixed control proportion, no skipped batches, unbiased weights;
row access and the nonzero entries the loader hands the likelihood."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pertcontrast.data.loader import CountRows, StratifiedBatches, csr_nonzero_entries
from pertcontrast.errors import ParameterError
from pertcontrast.module.likelihoods import nonzero_entries
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


def test_loader_nonzero_entries_equal_those_found_in_the_dense_block():
    """What the loader computes from sparse rows is what the likelihood would find itself."""
    matrix = sp.random(40, 25, density=0.3, format="csr", random_state=1, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 90)  # counts 1..90: some beyond the count tables
    rows = np.array([31, 2, 2, 17, 0, 39])
    block = CountRows(matrix).csr_rows(rows)
    ours = csr_nonzero_entries(block)
    reference = nonzero_entries(torch.from_numpy(block.toarray())).to_batch()
    assert set(ours) == set(reference)
    assert len(ours["nonzero_large"]) > 0
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-6 if name.endswith("factorial") else 0, atol=0)


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


@pytest.mark.parametrize("whole", [True, False])
def test_precomputed_cell_log_factorials_give_the_same_entries(whole):
    """Direct rows take per-cell log-factorials worked out once for the matrix (in row
    chunks); the minibatch's entries are exactly those computed from its rows alone."""
    matrix = sp.random(9000, 40, density=0.2, format="csr", random_state=3, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 90) if whole else matrix.data * 90 + 0.5
    counts = CountRows(matrix)
    assert counts.direct
    rows = np.array([8999, 3, 8192, 8191, 3, 100])
    block = counts.csr_rows(rows)
    ours, reference = counts.nonzero_entries(rows, block), csr_nonzero_entries(block)
    assert counts._integral == whole
    assert len(ours["nonzero_large"]) > 0
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], rtol=0, atol=0)
