"""Count likelihoods, parameterised by the log mean so no epsilon is ever needed."""

from __future__ import annotations

import pyro.distributions as dist
import torch

LIKELIHOODS = ("zinb", "nb")


def count_distribution(
    log_mean: torch.Tensor,
    dispersion: torch.Tensor,
    dropout_logits: torch.Tensor,
    likelihood: str,
) -> dist.TorchDistribution:
    """Per-gene (Zero-Inflated) Negative Binomial with mean exp(log_mean) and inverse
    dispersion ``dispersion`` (variance = mu + mu^2 / dispersion), one event per cell.

    Pyro's NB uses ``logits = log(p / (1 - p))`` with ``p = mu / (mu + dispersion)``,
    i.e. ``logits = log(mu) - log(dispersion)``.
    """
    dispersion = dispersion.expand_as(log_mean)
    logits = log_mean - torch.log(dispersion)
    if likelihood == "zinb":
        base = dist.ZeroInflatedNegativeBinomial(
            total_count=dispersion, logits=logits, gate_logits=dropout_logits
        )
    elif likelihood == "nb":
        base = dist.NegativeBinomial(total_count=dispersion, logits=logits)
    else:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return base.to_event(1)
