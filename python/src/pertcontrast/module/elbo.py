"""The training objective: a real minibatch ELBO plus named, weighted extra terms.

The ELBO is the one Pyro's ``TraceMeanField_ELBO`` computes for the model/guide pair
(analytic KL for the Normal latents, one reparameterised draw), written out as tensor
operations: tracing both programs through Pyro's effect handlers costs a few ms of
Python per step, as much as the likelihood itself on CPU. The value and its gradients
equal Pyro's on the same random draws (tested), and each term is kept cell by cell so it
can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TermWeights:
    """Multipliers of the objective's terms; the warm-up changes them step by step."""

    kl: float = 1.0
    wasserstein: float = 1.0
    classification: float = 1.0
    # multiplies the salient latent where the decoder reads it; below 1 only early in
    # training, so the background latent first learns what all cells share
    salient: float = 1.0


@dataclass
class ObjectiveTerms:
    """Full-screen estimates (sums over all cells) and the minibatch's own values."""

    objective: torch.Tensor  # what the optimizer minimises
    elbo: torch.Tensor  # the ELBO estimate with kl weight 1, no extra terms
    totals: dict[str, torch.Tensor]  # each term summed over the full screen (estimate)
    classifier_correct: torch.Tensor  # number of perturbed cells classified right
    classifier_total: torch.Tensor


def cell_scale(batch: dict[str, torch.Tensor], n_cells: int) -> torch.Tensor:
    """How many cells of the screen each minibatch cell stands for: the subsampled
    plate's ``n_cells / batch_size`` times the cell's stratum weight."""
    return batch["stratum_weight"] * (n_cells / batch["index"].shape[0])


def normal_kl(loc: torch.Tensor, scale: torch.Tensor, prior_loc=None, prior_scale=None) -> torch.Tensor:
    """KL(N(loc, scale) || N(prior_loc, prior_scale)) summed over the last dimension;
    without a prior, against N(0, 1).

    The operations of ``torch.distributions.kl`` for two Normals, on tensors: building
    four distribution objects per step cost more than the arithmetic. Against N(0, 1)
    the division by 1 and subtraction of 0 are left out, which changes no bit.
    """
    if prior_loc is None:
        var_ratio, t1 = scale.pow(2), loc.pow(2)
    else:
        var_ratio = (scale / prior_scale).pow(2)
        t1 = ((loc - prior_loc) / prior_scale).pow(2)
    return (0.5 * (var_ratio + t1 - 1 - var_ratio.log())).sum(-1)


def normal_rsample(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """One reparameterised draw from N(loc, scale): the same random numbers and operations
    as ``Normal(loc, scale).rsample()`` (and so as Pyro's guide), without the object."""
    return loc + torch.empty_like(loc).normal_() * scale


def salient_wasserstein(salient_loc: torch.Tensor, salient_scale: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance of N(loc, diag(scale^2)) to a point mass at 0."""
    return (salient_loc.pow(2) + salient_scale.pow(2)).sum(dim=-1)
