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

from pertcontrast.module.likelihoods import LIKELIHOODS, NonzeroEntries, count_distribution_from_logits
from pertcontrast.module.native import build_count_kernel
from pertcontrast.module.networks import CountDecoder, GaussianEncoder, encode_together

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


def encoder_features(
    counts: torch.Tensor, covariates: torch.Tensor, nonzero: NonzeroEntries | None = None
) -> torch.Tensor:
    """What the encoders see: log1p of counts normalised to 10k per cell, plus covariates.

    The likelihood stays on raw counts; normalising only the encoder input keeps depth out
    of the latents while the decoder still explains depth through the library size.
    With the counts' ``nonzero`` entries, only those are transformed (log1p(0) = 0), a
    third of a typical UMI block, and written into a zero block.
    """
    scale = NORMALISED_TOTAL / library_size(counts)
    if nonzero is None:
        return torch.cat([torch.log1p(counts * scale), covariates], dim=-1)
    n_cells, n_genes = counts.shape
    features = counts.new_zeros(n_cells, n_genes + covariates.shape[-1])
    values = torch.log1p(nonzero.counts * scale.squeeze(-1).index_select(0, nonzero.rows))
    # row-major positions in the wider (genes + covariates) block
    features.view(-1).index_copy_(0, nonzero.flat + nonzero.rows * covariates.shape[-1], values)
    features[:, n_genes:] = covariates
    return features


def networks(module: PyroModule, *names: str):
    """The plain torch submodules ``names`` of a PyroModule, bypassing its attribute hook.

    Reading a plain ``nn.Module`` attribute of a PyroModule inside a Pyro context runs
    ``pyro.module`` on it: one param site per weight through the whole effect-handler
    stack, about 2 ms of a 30 ms CPU step. This model keeps no Pyro param store (the
    optimizer is torch's, over ``module.parameters()``), so those sites are never used.
    """
    found = [module._modules[name] for name in names]
    return found[0] if len(found) == 1 else found


def library_size(counts: torch.Tensor) -> torch.Tensor:
    """Total counts per cell (cells x 1), at least 1 so that empty cells stay finite."""
    return counts.sum(dim=-1, keepdim=True).clamp_min(1.0)


def observed_log_library(counts: torch.Tensor) -> torch.Tensor:
    return torch.log(library_size(counts))


def cell_plate(batch: dict[str, torch.Tensor], n_cells: int):
    return pyro.plate("cells", size=n_cells, subsample=batch["index"], dim=-1)


class ContrastiveGenerative(PyroModule):
    """p(counts, background, salient, library | covariates): the model."""

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None, native: bool = True):
        super().__init__()
        self.arch = arch
        # the C count-likelihood kernel (CPU only); None: torch evaluates the likelihood
        self.count_kernel = build_count_kernel() if native else None
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
        counts, is_control = batch["counts"], batch["is_control"]
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
            if arch.library == "latent":
                loc, scale = self.library_prior(batch["library_group"])
                log_library = torch.log(pyro.sample("library", dist.LogNormal(loc, scale).to_event(1)))
            else:
                log_library = observed_log_library(counts)
            pyro.sample("counts", self.observation(batch, background, salient, log_library), obs=counts)

    def library_prior(self, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loc and scale of log library size for cells of the given library groups."""
        return self.library_log_loc[group].unsqueeze(-1), self.library_log_scale[group].unsqueeze(-1)

    def observation(self, batch, background, salient, log_library):
        """p(counts | latents): the count distribution of each cell of ``batch``."""
        # Controls have no salient latent: whatever was sampled for them is replaced by 0.
        salient = torch.where(batch["is_control"].unsqueeze(-1), torch.zeros_like(salient), salient)
        decoder = networks(self, "decoder")
        logits, dropout_logits = decoder.expression_logits(torch.cat([background, salient, batch["covariates"]], dim=-1))
        return count_distribution_from_logits(
            logits, log_library, decoder.dispersion(), dropout_logits, self.arch.likelihood,
            NonzeroEntries.from_batch(batch), self.count_kernel,
        )

    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        """Decoded log expression proportions (sum to 1 over genes) for given latents."""
        log_proportions, _ = networks(self, "decoder")(torch.cat([background, salient, covariates], dim=-1))
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

    def encode(
        self, counts: torch.Tensor, covariates: torch.Tensor, nonzero: NonzeroEntries | None = None
    ) -> dict[str, torch.Tensor]:
        features = encoder_features(counts, covariates, nonzero)
        names = ["background_encoder", "salient_encoder"] + (["library_encoder"] if self.arch.library == "latent" else [])
        outputs = encode_together(features, networks(self, *names))
        encoded = {}
        for name, (loc, scale) in zip(("background", "salient", "library_log"), outputs):
            encoded[f"{name}_loc"], encoded[f"{name}_scale"] = loc, scale
        return encoded

    def forward(self, batch: dict[str, torch.Tensor], n_cells: int) -> dict[str, torch.Tensor]:
        encoded = self.encode(batch["counts"], batch["covariates"], NonzeroEntries.from_batch(batch))
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
