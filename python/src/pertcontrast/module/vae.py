"""The module: model, guide, classifier and the objective, as pure tensor functions."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import LogNormal
from torch.nn import functional as F

from pertcontrast.module.contrastive import (
    Architecture,
    ContrastiveGenerative,
    ContrastiveInference,
    observed_log_library,
)
from pertcontrast.module.elbo import (
    ObjectiveTerms,
    TermWeights,
    cell_scale,
    normal_kl,
    normal_rsample,
    salient_wasserstein,
)
from pertcontrast.module.likelihoods import NonzeroEntries
from pertcontrast.module.networks import PerturbationClassifier

TERM_NAMES = ("reconstruction", "kl_background", "kl_salient", "kl_library", "wasserstein", "classification")


class ContrastiveVAE(nn.Module):
    """Holds the model/guide pair and the auxiliary classifier.

    A minibatch is a dict of tensors: ``counts`` (cells x genes), ``covariates``,
    ``is_control`` (bool), ``label`` (perturbation index, -1 for controls), ``index``
    (positions in the screen), ``stratum_weight`` and, with a latent library,
    ``library_group``.
    """

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None, native: bool = True):
        super().__init__()
        self.arch = arch
        # native: evaluate the count likelihood with the C kernel on CPU when it builds
        self.generative = ContrastiveGenerative(arch, library_log_loc, library_log_scale, native)
        self.inference = ContrastiveInference(arch)
        self.classifier = PerturbationClassifier(
            arch.n_salient + arch.n_covariates, max(arch.n_labels, 1), arch.n_hidden, 0.0
        )

    def model(self, batch, n_cells):
        return self.generative(batch, n_cells)

    def guide(self, batch, n_cells):
        return self.inference(batch, n_cells)

    def objective(self, batch: dict[str, torch.Tensor], n_cells: int, weights: TermWeights) -> ObjectiveTerms:
        """The model/guide pair's ELBO (as TraceMeanField_ELBO computes it) and the extra
        terms, each as a full-screen estimate from this minibatch."""
        arch = self.arch
        counts, is_control = batch["counts"], batch["is_control"]
        perturbed = ~is_control
        encoded = self.inference.encode(counts, batch["covariates"], NonzeroEntries.from_batch(batch))
        # The guide's draws, in the guide's order (the same random numbers Pyro would use).
        background = normal_rsample(encoded["background_loc"], encoded["background_scale"])
        salient = normal_rsample(encoded["salient_loc"], encoded["salient_scale"])
        per_cell = {
            "kl_background": normal_kl(encoded["background_loc"], encoded["background_scale"]),
            "kl_salient": normal_kl(encoded["salient_loc"], encoded["salient_scale"]) * perturbed,
        }
        if arch.library == "latent":
            library_loc, library_scale = encoded["library_log_loc"], encoded["library_log_scale"]
            log_library = torch.log(LogNormal(library_loc, library_scale).rsample())
            per_cell["kl_library"] = normal_kl(
                library_loc, library_scale, *self.generative.library_prior(batch["library_group"])
            )
        else:
            log_library = observed_log_library(counts)
        if weights.salient != 1.0:
            salient = salient * weights.salient
        observation = self.generative.observation(batch, background, salient, log_library)
        per_cell["reconstruction"] = -observation.log_prob(counts)
        scale = cell_scale(batch, n_cells)
        totals = {name: (scale * value).sum() for name, value in per_cell.items()}

        w2 = salient_wasserstein(encoded["salient_loc"], encoded["salient_scale"])
        totals["wasserstein"] = (scale * w2 * is_control).sum()

        logits = self.classifier(torch.cat([encoded["salient_loc"], batch["covariates"]], dim=-1))
        labels = batch["label"].clamp_min(0)
        cross_entropy = F.cross_entropy(logits, labels, reduction="none")
        # Cross-entropy is -log q(label | salient): adding it (a positive number) to the
        # loss pulls the salient means of different perturbations apart.
        totals["classification"] = (scale * cross_entropy * perturbed).sum()
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
