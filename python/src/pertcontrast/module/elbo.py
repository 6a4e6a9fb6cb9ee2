"""The training objective: a real minibatch ELBO plus named, weighted extra terms.

The ELBO is read off Pyro traces of the guide and the replayed model, the way Pyro's
``TraceMeanField_ELBO`` does it (analytic KL for the Normal latents), but kept term by
term and cell by cell so each can be logged. With ``kl_weight=1`` the ``elbo`` field
equals ``-TraceMeanField_ELBO().differentiable_loss(model, guide, ...)`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence


@dataclass(frozen=True)
class TermWeights:
    """Multipliers of the objective's terms; the warm-up changes them step by step."""

    kl: float = 1.0
    wasserstein: float = 1.0
    classification: float = 1.0


@dataclass
class ObjectiveTerms:
    """Full-screen estimates (sums over all cells) and the minibatch's own values."""

    objective: torch.Tensor  # what the optimizer minimises
    elbo: torch.Tensor  # the ELBO estimate with kl weight 1, no extra terms
    totals: dict[str, torch.Tensor]  # each term summed over the full screen (estimate)
    classifier_correct: torch.Tensor  # number of perturbed cells classified right
    classifier_total: torch.Tensor


def elbo_traces(model, guide, *args):
    """Trace the guide, then replay the model on the guide's samples."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    # The plate's own subsample site carries no density; Pyro's ELBOs drop it the same way.
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def elbo_sites(model_trace, guide_trace) -> dict[str, torch.Tensor]:
    """Scaled per-cell contributions of each sample site to ``-ELBO``.

    Observed sites give ``-log p(x | z)``; latent sites the analytic KL(q || p), both
    multiplied by the site's scale and mask, as Pyro's TraceMeanField_ELBO does.
    """
    contributions = {}
    for name, model_site in model_trace.nodes.items():
        if model_site["type"] != "sample":
            continue
        if model_site["is_observed"]:
            log_p = model_site["fn"].log_prob(model_site["value"])
            contributions[name] = -scale_and_mask(log_p, model_site["scale"], model_site["mask"])
        else:
            guide_site = guide_trace.nodes[name]
            kl = kl_divergence(guide_site["fn"], model_site["fn"])
            contributions[name] = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
    return contributions


def salient_wasserstein(salient_loc: torch.Tensor, salient_scale: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance of N(loc, diag(scale^2)) to a point mass at 0."""
    return (salient_loc.pow(2) + salient_scale.pow(2)).sum(dim=-1)
