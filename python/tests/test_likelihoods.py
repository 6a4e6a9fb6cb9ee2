"""The count likelihoods against direct reference computations (scipy)."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from pertcontrast.module.likelihoods import count_distribution


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
