"""The contrastive VAE as one Pyro model/guide pair.

Generative story, for a minibatch of cells that belong to a screen of ``n_cells``:

    background_n ~ Normal(0, I)                       every cell
    salient_n    ~ Normal(0, I)  if perturbed,  = 0   if control
    library_n    = observed total counts  (or ~ LogNormal(batch prior))
    log_mean_n   = log library_n + log softmax(decoder([background_n, salient_n, s_n]))
    counts_n     ~ ZINB(exp(log_mean_n), dispersion_g, dropout(decoder(...)))

``s_n`` are the cell's covariates (one-hot categorical and standardised continuous).
The guide encodes log-normalised counts plus covariates into q(background | x, s),
q(salient | x, s) and, with a latent library, q(library | x, s).

Minibatches hold controls and perturbed cells in a fixed proportion, so each cell carries
a ``stratum_weight``: together with the plate's own ``n_cells / batch_size`` scale it makes
every term an unbiased estimate over the full screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule

from pertcontrast.module.likelihoods import LIKELIHOODS, count_distribution
from pertcontrast.module.networks import CountDecoder, GaussianEncoder

LIBRARY_MODES = ("observed", "latent")
NORMALISED_TOTAL = 1e4


@dataclass(frozen=True)
class Architecture:
    """Everything that defines the shapes of the networks (saved in the model config)."""

    n_genes: int
    n_covariates: int
    n_labels: int
    n_library_groups: int = 1
    n_background: int = 16
    n_salient: int = 10
    n_hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.0  # encoders only; the program's weak signal does not survive 0.1
    likelihood: str = "zinb"
    library: str = "observed"
    salient_linear: bool = True  # direct linear path salient -> expression logits

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.library not in LIBRARY_MODES:
            raise ValueError(f"library must be one of {LIBRARY_MODES}, got {self.library!r}")


def encoder_features(counts: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
    """What the encoders see: log1p of counts normalised to 10k per cell, plus covariates.

    The likelihood stays on raw counts; normalising only the encoder input keeps depth out
    of the latents while the decoder still explains depth through the library size.
    """
    totals = counts.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return torch.cat([torch.log1p(counts * (NORMALISED_TOTAL / totals)), covariates], dim=-1)


def cell_plate(batch: dict[str, torch.Tensor], n_cells: int):
    return pyro.plate("cells", size=n_cells, subsample=batch["index"], dim=-1)


class ContrastiveGenerative(PyroModule):
    """p(counts, background, salient, library | covariates): the model."""

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None):
        super().__init__()
        self.arch = arch
        n_decoder_input = arch.n_background + arch.n_salient + arch.n_covariates
        # decoder input is [background, salient, covariates]
        salient_columns = (arch.n_background, arch.n_background + arch.n_salient) if arch.salient_linear else None
        self.decoder = CountDecoder(
            n_decoder_input, arch.n_genes, arch.n_hidden, arch.n_layers, 0.0, salient_columns
        )
        groups = arch.n_library_groups
        loc = torch.zeros(groups) if library_log_loc is None else torch.as_tensor(library_log_loc, dtype=torch.float32)
        scale = torch.ones(groups) if library_log_scale is None else torch.as_tensor(library_log_scale, dtype=torch.float32)
        self.register_buffer("library_log_loc", loc.reshape(groups))
        self.register_buffer("library_log_scale", scale.reshape(groups))

    def forward(self, batch: dict[str, torch.Tensor], n_cells: int) -> None:
        arch = self.arch
        counts, covariates, is_control = batch["counts"], batch["covariates"], batch["is_control"]
        n = counts.shape[0]
        with cell_plate(batch, n_cells), poutine.scale(scale=batch["stratum_weight"]):
            background = pyro.sample(
                "background",
                dist.Normal(counts.new_zeros(n, arch.n_background), 1.0).to_event(1),
            )
            with poutine.mask(mask=~is_control):
                salient = pyro.sample(
                    "salient", dist.Normal(counts.new_zeros(n, arch.n_salient), 1.0).to_event(1)
                )
            # Controls have no salient latent: whatever was sampled for them is replaced by 0.
            salient = torch.where(is_control.unsqueeze(-1), torch.zeros_like(salient), salient)
            if arch.library == "latent":
                group = batch["library_group"]
                library = pyro.sample(
                    "library",
                    dist.LogNormal(
                        self.library_log_loc[group].unsqueeze(-1),
                        self.library_log_scale[group].unsqueeze(-1),
                    ).to_event(1),
                )
                log_library = torch.log(library)
            else:
                log_library = torch.log(counts.sum(dim=-1, keepdim=True).clamp_min(1.0))
            log_proportions, dropout_logits = self.decoder(
                torch.cat([background, salient, covariates], dim=-1)
            )
            pyro.sample(
                "counts",
                count_distribution(
                    log_library + log_proportions, self.decoder.dispersion(), dropout_logits, arch.likelihood
                ),
                obs=counts,
            )

    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        """Decoded log expression proportions (sum to 1 over genes) for given latents."""
        log_proportions, _ = self.decoder(torch.cat([background, salient, covariates], dim=-1))
        return log_proportions


class ContrastiveInference(PyroModule):
    """q(background, salient, library | counts, covariates): the guide.

    Returns the encoders' outputs for every cell (controls included), which the training
    loss needs for the controls' Wasserstein penalty and the classifier.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        n_input = arch.n_genes + arch.n_covariates
        args = (arch.n_hidden, arch.n_layers, arch.dropout)
        self.background_encoder = GaussianEncoder(n_input, arch.n_background, *args)
        self.salient_encoder = GaussianEncoder(n_input, arch.n_salient, *args)
        if arch.library == "latent":
            self.library_encoder = GaussianEncoder(n_input, 1, *args)

    def encode(self, counts: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        features = encoder_features(counts, covariates)
        background_loc, background_scale = self.background_encoder(features)
        salient_loc, salient_scale = self.salient_encoder(features)
        encoded = {
            "background_loc": background_loc,
            "background_scale": background_scale,
            "salient_loc": salient_loc,
            "salient_scale": salient_scale,
        }
        if self.arch.library == "latent":
            encoded["library_log_loc"], encoded["library_log_scale"] = self.library_encoder(features)
        return encoded

    def forward(self, batch: dict[str, torch.Tensor], n_cells: int) -> dict[str, torch.Tensor]:
        encoded = self.encode(batch["counts"], batch["covariates"])
        with cell_plate(batch, n_cells), poutine.scale(scale=batch["stratum_weight"]):
            pyro.sample(
                "background",
                dist.Normal(encoded["background_loc"], encoded["background_scale"]).to_event(1),
            )
            with poutine.mask(mask=~batch["is_control"]):
                pyro.sample(
                    "salient",
                    dist.Normal(encoded["salient_loc"], encoded["salient_scale"]).to_event(1),
                )
            if self.arch.library == "latent":
                pyro.sample(
                    "library",
                    dist.LogNormal(encoded["library_log_loc"], encoded["library_log_scale"]).to_event(1),
                )
        return encoded
