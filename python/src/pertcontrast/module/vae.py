"""The module: model, guide, classifier and the objective, as pure tensor functions."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pertcontrast.module.contrastive import (
    Architecture,
    ContrastiveGenerative,
    ContrastiveInference,
)
from pertcontrast.module.elbo import (
    ObjectiveTerms,
    TermWeights,
    elbo_sites,
    elbo_traces,
    salient_wasserstein,
)
from pertcontrast.module.networks import PerturbationClassifier

SITE_TERMS = {"counts": "reconstruction", "background": "kl_background", "salient": "kl_salient", "library": "kl_library"}
TERM_NAMES = ("reconstruction", "kl_background", "kl_salient", "kl_library", "wasserstein", "classification")


class ContrastiveVAE(nn.Module):
    """Holds the model/guide pair and the auxiliary classifier.

    A minibatch is a dict of tensors: ``counts`` (cells x genes), ``covariates``,
    ``is_control`` (bool), ``label`` (perturbation index, -1 for controls), ``index``
    (positions in the screen), ``stratum_weight`` and, with a latent library,
    ``library_group``.
    """

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None):
        super().__init__()
        self.arch = arch
        self.generative = ContrastiveGenerative(arch, library_log_loc, library_log_scale)
        self.inference = ContrastiveInference(arch)
        self.classifier = PerturbationClassifier(
            arch.n_salient + arch.n_covariates, max(arch.n_labels, 1), arch.n_hidden, 0.0
        )

    def model(self, batch, n_cells):
        return self.generative(batch, n_cells)

    def guide(self, batch, n_cells):
        return self.inference(batch, n_cells)

    def objective(self, batch: dict[str, torch.Tensor], n_cells: int, weights: TermWeights) -> ObjectiveTerms:
        model_trace, guide_trace = elbo_traces(self.model, self.guide, batch, n_cells)
        encoded = guide_trace.nodes["_RETURN"]["value"]
        sites = elbo_sites(model_trace, guide_trace)
        totals = {SITE_TERMS[name]: value.sum() for name, value in sites.items()}
        # Each cell stands for n_cells / batch_size * stratum_weight cells of the screen.
        cell_scale = guide_trace.nodes["background"]["scale"]
        is_control = batch["is_control"]

        w2 = salient_wasserstein(encoded["salient_loc"], encoded["salient_scale"])
        totals["wasserstein"] = (cell_scale * w2 * is_control).sum()

        perturbed = ~is_control
        logits = self.classifier(torch.cat([encoded["salient_loc"], batch["covariates"]], dim=-1))
        labels = batch["label"].clamp_min(0)
        cross_entropy = F.cross_entropy(logits, labels, reduction="none")
        # Cross-entropy is -log q(label | salient): adding it (a positive number) to the
        # loss pulls the salient means of different perturbations apart.
        totals["classification"] = (cell_scale * cross_entropy * perturbed).sum()
        correct = ((logits.argmax(dim=-1) == labels) & perturbed).sum()

        kl_total = sum(totals[name] for name in ("kl_background", "kl_salient", "kl_library") if name in totals)
        elbo = -(totals["reconstruction"] + kl_total)
        objective = (
            totals["reconstruction"]
            + weights.kl * kl_total
            + weights.wasserstein * totals["wasserstein"]
            + weights.classification * totals["classification"]
        )
        return ObjectiveTerms(
            objective=objective,
            elbo=elbo,
            totals=totals,
            classifier_correct=correct,
            classifier_total=perturbed.sum(),
        )

    @torch.inference_mode()
    def posterior(self, counts: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder outputs (posterior locs and scales) for a block of cells."""
        return self.inference.encode(counts, covariates)

    @torch.inference_mode()
    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        return self.generative.log_proportions(background, salient, covariates)
