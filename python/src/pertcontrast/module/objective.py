"""The training objective: Pyro's mean-field ELBO of the model/guide pair, with each
named term reported for logging."""

from __future__ import annotations

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import torch_item
from pyro.util import warn_if_nan
from torch.distributions import kl_divergence

# how each site of the model/guide pair enters the loss, by name
OBSERVED_TERM = {"counts": "reconstruction"}
LATENT_TERM = {"background": "kl_background", "salient": "kl_salient", "library": "kl_library"}
TERM_NAMES = ("reconstruction", "kl_background", "kl_salient", "kl_library", "wasserstein", "classification",
              "independence", "nuisance")


class NamedTermsELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` (analytic KL for the Normal latents, reparameterised
    draws) that also returns each site's contribution to the loss, as it enters it
    (weights and scales applied): observed sites give their negative log-likelihood,
    latent sites their KL, the guide's factor sites their value."""

    def loss_and_terms(self, model, guide, *args, **kwargs):
        """(differentiable loss, {term name: float}, the guide's return value)."""
        loss, terms, returned = 0.0, {}, None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            _, surrogate = self._differentiable_loss_particle(model_trace, guide_trace)
            loss = loss + surrogate / self.num_particles
            for name, value in site_terms(model_trace, guide_trace).items():
                terms[name] = terms.get(name, 0.0) + value / self.num_particles
            returned = guide_trace.nodes["_RETURN"]["value"]
        warn_if_nan(loss, "loss")
        return loss, terms, returned


@torch.no_grad()
def site_terms(model_trace, guide_trace) -> dict[str, float]:
    """Each sample site's contribution to the loss of one particle (see NamedTermsELBO)."""
    terms = {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            terms[OBSERVED_TERM.get(name, name)] = -torch_item(site["log_prob_sum"])
        else:
            guide_site = guide_trace.nodes[name]
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:  # a mixture prior: the one-draw estimate, as the loss takes it
                kl = guide_site["fn"].log_prob(site["value"]) - site["fn"].log_prob(site["value"])
            kl = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
            terms[LATENT_TERM.get(name, f"kl_{name}")] = torch_item(kl.sum())
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and name not in model_trace.nodes:  # auxiliary: factors
            terms[name] = torch_item(site["score_parts"].entropy_term.sum())
    return terms
