"""Perturbations of one program lend each other strength in the DE calls: weighted
Benjamini-Hochberg and the weights from alike perturbations (pure functions)."""

import numpy as np
import pytest

from pertcontrast.analysis.differential import SharingSettings, program_weights
from pertcontrast.analysis.multiple_testing import benjamini_hochberg, weighted_benjamini_hochberg


def test_weighted_bh_is_bh_of_p_over_weights_of_mean_one(rng):
    p = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(weighted_benjamini_hochberg(p, np.full(50, 7.0)), benjamini_hochberg(p))
    weights = rng.uniform(0.5, 2.0, size=50)
    expected = benjamini_hochberg(np.minimum(p / (weights / weights.mean()), 1.0))
    np.testing.assert_allclose(weighted_benjamini_hochberg(p, 3 * weights), expected)
    p[3] = np.nan  # NaN stays NaN and the mean of the weights is over the finite ones
    out = weighted_benjamini_hochberg(p, weights)
    assert np.isnan(out[3])
    finite = np.isfinite(p)
    kept = weights[finite] / weights[finite].mean()
    np.testing.assert_allclose(out[finite], benjamini_hochberg(np.minimum(p[finite] / kept, 1.0)))
    with pytest.raises(ValueError, match="positive"):
        weighted_benjamini_hochberg(p, np.where(np.arange(50) == 0, 0.0, 1.0))


def test_a_heavier_gene_is_called_where_plain_bh_misses_it():
    p = np.array([1e-4, 0.004, *np.full(98, 0.5)])
    assert (benjamini_hochberg(p) < 0.05).sum() == 1
    weights = np.ones(100)
    weights[1] = 20.0
    assert (weighted_benjamini_hochberg(p, weights) < 0.05)[:2].all()


def screen(rng):
    """Four perturbations over 200 genes: A and B share a program (genes 0-19), C has its
    own (100-119), D none; A's target is gene 150 and B's 151 (knocked down, nothing else)."""
    n_genes = 200
    p = np.full((4, n_genes), 0.5)
    lfc = np.zeros((4, n_genes))
    p[0, :20], lfc[0, :20] = 1e-8, 1.0  # A: the program, strongly
    p[1, :20], lfc[1, :20] = 1e-8, 1.0  # B: the same program
    p[1, 20:30], lfc[1, 20:30] = 1e-3, 0.3  # B: genes of the program only B reached
    p[2, 100:120], lfc[2, 100:120] = 1e-8, -1.0  # C: another program
    p[0, 150], lfc[0, 150] = 1e-12, -2.0
    p[1, 151], lfc[1, 151] = 1e-12, -2.0
    return p, lfc, np.array([150, 151, -1, -1])


def test_alike_perturbations_raise_each_others_genes_and_no_others(rng):
    p, lfc, targets = screen(rng)
    weights = program_weights(p, lfc, targets)
    np.testing.assert_allclose(weights.mean(axis=1), 1.0)
    floor = weights[0].min()
    # A's weights: up on the genes B changed (its program, and those only B reached)
    assert floor < 1 and (weights[0, :30] > 5 * floor).all()
    # not on C's program, nor on B's knocked-down target: a knockdown is no program
    np.testing.assert_allclose(weights[0, 100:120], floor)
    assert weights[0, 151] == pytest.approx(floor)
    # a perturbation like no other, and one without a change, keep plain BH
    np.testing.assert_allclose(weights[2], 1.0)
    np.testing.assert_allclose(weights[3], 1.0)
    # gain 0 is plain BH everywhere
    np.testing.assert_allclose(program_weights(p, lfc, targets, SharingSettings(gain=0.0)), 1.0)


def test_a_genes_own_noise_cannot_raise_its_weight(rng):
    """A's only strong genes (noise, in A) are two of B's program: through both A looks
    like B, but the likeness that weighs one of them leaves that one out, and through the
    other alone A is not alike."""
    p, lfc, targets = screen(rng)
    p[1, 20:30], lfc[1, 20:30] = 0.5, 0.0
    p[0], lfc[0] = 0.5, 0.0
    p[0, [5, 6]], lfc[0, [5, 6]] = 1e-6, 1.0
    weights = program_weights(p, lfc, targets)
    floor = weights[0].min()
    np.testing.assert_allclose(weights[0, [5, 6]], floor)
    # B's other genes (A's p-values there do not depend on A's genes 5 and 6) do weigh more
    assert (np.delete(weights[0, :20], [5, 6]) > 1.3 * floor).all()
