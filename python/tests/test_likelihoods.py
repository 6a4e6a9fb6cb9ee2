"""The count likelihoods against direct reference computations (scipy) and Pyro's
distributions: values, hand-written gradients, the count tables and the CPU fast form."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from pertcontrast.module.likelihoods import (
    TABLE_COUNTS,
    NonzeroEntries,
    _at_counts,
    _zero_terms_direct,
    _zero_terms_stable,
    count_distribution,
    nonzero_entries,
)


def _reference_nb(x, mu, theta):
    # scipy's nbinom(n, p) counts failures before n successes with success probability p;
    # mean n (1 - p) / p = mu  =>  p = theta / (theta + mu).
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


@pytest.fixture()
def values(rng):
    x = rng.poisson(3.0, size=(6, 40)).astype(np.float64)
    x[:, :5] = 0
    mu = rng.gamma(2.0, 2.0, size=(6, 40))
    theta = rng.gamma(2.0, 1.5, size=40)
    gate = rng.normal(size=(6, 40))
    return x, mu, theta, gate


def test_negative_binomial_matches_scipy(values):
    x, mu, theta, gate = values
    dist = count_distribution(
        torch.tensor(np.log(mu)), torch.tensor(theta), torch.tensor(gate), "nb"
    )
    ours = dist.log_prob(torch.tensor(x)).numpy()
    reference = _reference_nb(x, mu, theta[None, :]).sum(axis=1)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_zero_inflated_negative_binomial_matches_direct_mixture(values):
    x, mu, theta, gate = values
    dist = count_distribution(
        torch.tensor(np.log(mu)), torch.tensor(theta), torch.tensor(gate), "zinb"
    )
    ours = dist.log_prob(torch.tensor(x)).numpy()
    pi = expit(gate)  # probability of a structural zero
    nb = np.exp(_reference_nb(x, mu, theta[None, :]))
    mixture = np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb)
    np.testing.assert_allclose(ours, np.log(mixture).sum(axis=1), rtol=1e-6)


def test_mean_of_distribution_is_the_requested_mean(values):
    _, mu, theta, gate = values
    dist = count_distribution(torch.tensor(np.log(mu)), torch.tensor(theta), torch.tensor(gate), "nb")
    np.testing.assert_allclose(dist.mean.numpy(), mu, rtol=1e-6)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        count_distribution(torch.zeros(2, 3), torch.ones(3), torch.zeros(2, 3), "poisson")


@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_same_values_and_gradients_as_pyros_distributions(values, likelihood):
    x, mu, theta, gate = values
    log_mu = torch.tensor(np.log(mu), requires_grad=True)
    theta_t = torch.tensor(theta, requires_grad=True)
    ours = count_distribution(log_mu, theta_t, torch.tensor(gate), likelihood)
    reference = ours._pyro_equivalent()
    a = ours.log_prob(torch.tensor(x))
    b = reference.log_prob(torch.tensor(x))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    grad_a = torch.autograd.grad(a.sum(), [log_mu, theta_t])
    grad_b = torch.autograd.grad(b.sum(), [log_mu, theta_t])
    for ga, gb in zip(grad_a, grad_b):
        torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-7)


def _gradients(value, log_mu, theta, gate, likelihood, nonzero=None, weights=None):
    log_mu, theta = log_mu.clone().requires_grad_(), theta.clone().requires_grad_()
    gate = gate.clone().requires_grad_()
    log_prob = count_distribution(log_mu, theta, gate, likelihood, nonzero).log_prob(value)
    weights = torch.ones_like(log_prob) if weights is None else weights
    grads = torch.autograd.grad((log_prob * weights).sum(), [log_mu, theta, gate], allow_unused=True)
    return [log_prob.detach()] + [torch.zeros(1) if g is None else g for g in grads]


@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_gate_gradients_and_per_cell_weights_match_pyro(values, likelihood):
    """The hand-written backward, with a different upstream weight per cell, as autograd
    through Pyro's distributions gives it (gate included)."""
    x, mu, theta, gate = (torch.tensor(v) for v in values)
    weights = torch.linspace(0.2, 3.0, x.shape[0], dtype=torch.float64)
    ours = _gradients(x, mu.log(), theta, gate, likelihood, weights=weights)
    log_mu, theta_r, gate_r = mu.log().requires_grad_(), theta.clone().requires_grad_(), gate.clone().requires_grad_()
    reference = count_distribution(log_mu, theta_r, gate_r, likelihood)._pyro_equivalent().log_prob(x)
    grads = torch.autograd.grad((reference * weights).sum(), [log_mu, theta_r, gate_r], allow_unused=True)
    torch.testing.assert_close(ours[0], reference.detach(), rtol=1e-9, atol=1e-9)
    for got, expected in zip(ours[1:], grads):
        torch.testing.assert_close(got, torch.zeros(1, dtype=got.dtype) if expected is None else expected,
                                   rtol=1e-7, atol=1e-9)


def test_precomputed_nonzero_entries_give_the_same_result(values):
    x, mu, theta, gate = (torch.tensor(v) for v in values)
    x[0, 7] = 250.0  # beyond the count tables: evaluated directly
    entries = nonzero_entries(x)
    assert entries.large.tolist() == [int((x.reshape(-1)[:7] > 0).sum())]  # row 0's 8th column is its entry
    for a, b in zip(_gradients(x, mu.log(), theta, gate, "zinb"), _gradients(x, mu.log(), theta, gate, "zinb", entries)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_count_tables_cover_large_and_fractional_counts_exactly():
    """lgamma(x + theta) - lgamma(theta) from the recurrence table equals the direct value;
    counts beyond the table and non-integer counts are evaluated directly."""
    theta = torch.tensor([0.3, 2.0, 40.0], dtype=torch.float64)
    counts = torch.tensor([1.0, TABLE_COUNTS, TABLE_COUNTS + 1.0, 2.5, 900.0], dtype=torch.float64)
    rows = torch.arange(len(counts))
    for col in range(3):
        entries = NonzeroEntries.from_coordinates(rows, torch.full_like(rows, col), counts, len(counts), 3)
        assert entries.large.tolist() == [2, 3, 4]
        expected = torch.lgamma(counts + theta[col]) - torch.lgamma(theta[col])
        torch.testing.assert_close(_at_counts(theta, entries, torch.log, torch.lgamma), expected, rtol=1e-12, atol=1e-12)
        expected = torch.digamma(counts + theta[col]) - torch.digamma(theta[col])
        torch.testing.assert_close(_at_counts(theta, entries, torch.reciprocal, torch.digamma), expected,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_direct_and_stable_forms_agree_and_extremes_fall_back(likelihood):
    """The CPU fast form (exp/log) equals the softplus/logaddexp form; where it would
    overflow or underflow (huge mean over dispersion, zero probability below 1e-30) the
    stable form is used, and the result stays finite and equal to Pyro's."""
    generator = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.rand(5, 12, generator=generator) * 4)
    log_mu = torch.randn(5, 12, generator=generator)
    theta = torch.rand(12, generator=generator) + 0.5
    gate = torch.randn(5, 12, generator=generator)
    d = log_mu - theta.log()
    direct = _zero_terms_direct(d, theta, gate if likelihood == "zinb" else None)
    stable = _zero_terms_stable(d, theta, gate if likelihood == "zinb" else None)
    for a, b in zip(direct, stable):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    extreme_mean = log_mu.clone()
    extreme_mean[0, 0] = 95.0  # log(mu / theta) > 80
    assert _zero_terms_direct(extreme_mean - theta.log(), theta, gate) is None
    vanishing = log_mu.clone()
    vanishing[1, :] = 75.0  # NB(0) = exp(-theta log(1 + mu/theta)) far below 1e-30 ...
    low_gate = gate.clone()
    low_gate[1, :] = -90.0  # ... and no zero inflation to make up for it
    assert _zero_terms_direct(vanishing - theta.log(), theta, low_gate) is None or likelihood == "nb"
    x[1, :] = 0.0
    for mean in (extreme_mean, vanishing):
        result = count_distribution(mean, theta, low_gate, likelihood).log_prob(x)
        assert torch.isfinite(result).all()
        # float64 reference in log space: log NB(x) from scipy, the mixture via logaddexp
        mu, th, h = mean.double().exp().numpy(), theta.double().numpy()[None, :], low_gate.double().numpy()
        log_nb = _reference_nb(x.numpy(), mu, th)
        if likelihood == "zinb":
            log_pi, log_kept = -np.logaddexp(0, -h), -np.logaddexp(0, h)
            log_nb = np.where(x.numpy() == 0, np.logaddexp(log_pi, log_kept + log_nb), log_kept + log_nb)
        np.testing.assert_allclose(result.numpy(), log_nb.sum(axis=1), rtol=1e-5)
