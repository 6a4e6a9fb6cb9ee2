"""Count likelihoods, parameterised by the log mean so no epsilon is ever needed.

The log-densities are the same numbers as Pyro's ``NegativeBinomial`` and
``ZeroInflatedNegativeBinomial`` (tested against scipy), computed with fewer
transcendental calls: ``lgamma(dispersion)`` once per gene instead of once per entry,
the count terms only where x > 0, and ``lgamma(x + 1)``, which has no parameters,
without a backward pass. These functions dominate a training step on CPU.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.nn import functional as F

LIKELIHOODS = ("zinb", "nb")


def _log_prob_per_cell(value, log_mean, dispersion, dropout_logits=None):
    """Sum over genes of log (ZI)NB(x | mu, theta), one number per cell.

    Every entry pays for the x == 0 terms; the count terms (the lgamma calls and their
    digamma gradients, the costliest part of a CPU training step) are evaluated only on
    the nonzero entries and added per cell, which is the same sum.
    """
    shape = torch.broadcast_shapes(value.shape, log_mean.shape)
    n_genes = shape[-1]
    value = value.expand(shape).reshape(-1, n_genes)
    log_mean = log_mean.expand(shape).reshape(-1, n_genes)
    log_theta = torch.log(dispersion)
    log_theta_mu = torch.logaddexp(log_theta, log_mean)
    zero_part = dispersion * (log_theta - log_theta_mu)  # log NB(0 | mu, theta)
    # flat positions and 1-D index_select: much cheaper on CPU than 2-D advanced
    # indexing, and its gradient is a plain index_add
    flat = value.reshape(-1).nonzero().squeeze(1)
    rows, cols = flat // n_genes, flat % n_genes
    counts = value.reshape(-1).index_select(0, flat)

    def at_nonzero(matrix):
        return matrix.reshape(-1).index_select(0, flat)

    count_part = (
        counts * (at_nonzero(log_mean) - at_nonzero(log_theta_mu))
        + torch.lgamma(counts + dispersion.index_select(0, cols))
        - torch.lgamma(dispersion).index_select(0, cols)
        - torch.lgamma(counts + 1.0).detach()
    )
    if dropout_logits is None:
        per_cell = zero_part.sum(-1)
        nonzero_terms = count_part
    else:
        gate = dropout_logits.expand(shape).reshape(-1, n_genes)
        # log(pi + (1 - pi) NB(0)) with pi = sigmoid(gate), written in log space:
        # logaddexp(gate, log NB(0)) - softplus(gate); for x > 0: log(1 - pi) + log NB(x).
        log_zero = torch.logaddexp(gate, zero_part)
        per_cell = log_zero.sum(-1) - F.softplus(gate).sum(-1)
        nonzero_terms = at_nonzero(zero_part) + count_part - at_nonzero(log_zero)
    per_cell = per_cell.index_add(0, rows, nonzero_terms.to(per_cell.dtype))
    return per_cell.reshape(shape[:-1])


class CountLikelihood(TorchDistribution):
    """(Zero-inflated) negative binomial over genes, one event per cell.

    ``log_mean`` is (cells, genes), ``dispersion`` (genes,) is the inverse dispersion
    (variance = mu + mu^2 / dispersion), ``dropout_logits`` (cells, genes) the logits of a
    structural zero; ``zero_inflated=False`` ignores them.
    """

    arg_constraints = {"log_mean": constraints.real, "dispersion": constraints.positive}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, log_mean, dispersion, dropout_logits, zero_inflated: bool, validate_args=None):
        self.log_mean = log_mean
        self.dispersion = dispersion
        self.dropout_logits = dropout_logits
        self.zero_inflated = zero_inflated
        super().__init__(log_mean.shape[:-1], log_mean.shape[-1:], validate_args=validate_args)

    def _pyro_equivalent(self) -> TorchDistribution:
        dispersion = self.dispersion.expand_as(self.log_mean)
        logits = self.log_mean - torch.log(dispersion)
        if self.zero_inflated:
            base = dist.ZeroInflatedNegativeBinomial(
                total_count=dispersion, logits=logits, gate_logits=self.dropout_logits
            )
        else:
            base = dist.NegativeBinomial(total_count=dispersion, logits=logits)
        return base.to_event(1)

    @property
    def mean(self):
        return self._pyro_equivalent().mean

    def sample(self, sample_shape=torch.Size()):
        return self._pyro_equivalent().sample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.event_shape
        return CountLikelihood(
            self.log_mean.expand(shape), self.dispersion,
            self.dropout_logits.expand(shape), self.zero_inflated,
        )

    def log_prob(self, value):
        return _log_prob_per_cell(
            value, self.log_mean, self.dispersion, self.dropout_logits if self.zero_inflated else None
        )


def count_distribution(
    log_mean: torch.Tensor,
    dispersion: torch.Tensor,
    dropout_logits: torch.Tensor,
    likelihood: str,
) -> TorchDistribution:
    """Per-gene (Zero-Inflated) Negative Binomial with mean exp(log_mean) and inverse
    dispersion ``dispersion``, one event per cell."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return CountLikelihood(log_mean, dispersion, dropout_logits, zero_inflated=likelihood == "zinb")
