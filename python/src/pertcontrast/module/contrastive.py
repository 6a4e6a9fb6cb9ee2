"""The contrastive VAE as one Pyro model/guide pair; training runs exactly these.

Generative story (``ContrastiveGenerative``), for a minibatch of a screen of ``n_cells``:

    background_n ~ Normal(0, I)                       every cell
    salient_n    ~ 1/2 Normal(0, I) + 1/2 Normal(c_p, I)  if perturbed (by p),  = 0  if control
    log library_n = log observed total counts   (or ~ Normal(prior of its library group))
    counts_n     ~ CountDistribution(decoder([background_n, salient_n, s_n]), library_n)

``s_n`` are the cell's covariates (one-hot categorical, standardised continuous). ``c_p``
is a centre learned per perturbation (one more for the decoy controls) with
``salient_prior="perturbation"``; ``"standard"`` is Normal(0, I) for every perturbed cell.
The guide (``ContrastiveInference``) encodes log-normalised counts and covariates into
q(background | x, s), q(salient | x, s) and, with a latent library, q(log library | x, s);
with ``salient_input="residual"`` the salient encoder reads the log-normalised counts minus
the expression decoded from the background mean (salient at 0).
It also holds the extra terms of the objective as named ``pyro.factor`` sites, each with
its weight (a factor of value f in the guide adds f to the loss, since the ELBO holds
-log q): ``wasserstein``, the squared 2-Wasserstein distance of the controls' q(salient)
to a point mass at 0; ``classification``, cross-entropy of a classifier of the
perturbation from the salient mean (off unless weighted); ``independence``, the
normalised (unbiased) HSIC of the salient and the (fixed) background means of the minibatch's cells
that have a salient latent, times the screen's cell number (a per-cell weight like the
others: what the background holds stays out of the salient latent); ``nuisance``, the same
of the salient means and the cells' known nuisance columns (by default the cell-cycle
scores): only what is named as nuisance is pushed out, so an effect that lies along a
background axis (a response that also varies among controls) stays.

Minibatches hold controls and perturbed cells in a fixed proportion, so each cell carries
a ``stratum_weight``: with the plate's ``n_cells / batch_size`` it makes every term an
unbiased estimate over the full screen. A minibatch is a dict of tensors: ``counts``
(sparse CSR, cells x genes), ``covariates``, ``is_control``, ``label`` (perturbation
index, -1 for controls), ``index`` (positions in the screen), ``stratum_weight``,
``library_group``, ``nuisance`` (standardised nuisance columns, cells x 0 when none).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch.nn import functional as F

from pertcontrast.module.architecture import Architecture
from pertcontrast.module.independence import normalised_hsic
from pertcontrast.module.likelihood import CountDistribution, csr_entries
from pertcontrast.module.networks import CountDecoder, GaussianEncoder, PerturbationClassifier, encode_together

NORMALISED_TOTAL = 1e4


@dataclass(frozen=True)
class TermWeights:
    """Multipliers of the objective's terms; the warm-up changes them step by step."""

    kl: float = 1.0  # must be > 0 (Pyro's scale)
    wasserstein: float = 1.0
    classification: float = 0.0
    independence: float = 0.0
    nuisance: float = 0.0


def _entries_and_library(counts: torch.Tensor):
    """Rows, columns and values of the nonzero counts, and each cell's total (>= 1)."""
    crow, cols, values = csr_entries(counts)
    rows = torch.repeat_interleave(torch.arange(counts.shape[0], device=crow.device), crow.diff())
    return rows, cols, values, values.new_zeros(counts.shape[0]).index_add_(0, rows, values).clamp_min(1.0)


def observed_log_library(counts: torch.Tensor) -> torch.Tensor:
    """Log total counts per cell (cells x 1), of dense or sparse CSR counts."""
    return _entries_and_library(counts)[3].log().unsqueeze(-1)


def encoder_features(counts: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
    """What the encoders see: log1p of the counts normalised to 10k per cell, then the
    covariates; only the nonzero entries are transformed. The likelihood stays on raw
    counts: the normalised input keeps depth out of the latents, the library explains it."""
    rows, cols, values, library = _entries_and_library(counts)
    n_genes, width = counts.shape[1], counts.shape[1] + covariates.shape[-1]
    features = values.new_zeros(counts.shape[0], width)
    normalised = torch.log1p(values * (NORMALISED_TOTAL / library).index_select(0, rows))
    features.view(-1).index_copy_(0, rows * width + cols, normalised)
    features[:, n_genes:] = covariates
    return features


def cell_plate(batch: dict[str, torch.Tensor], n_cells: int):
    return pyro.plate("cells", size=n_cells, subsample=batch["index"], dim=-1)


class ContrastiveGenerative(PyroModule):
    """p(counts, background, salient, library | covariates): the model."""

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None):
        super().__init__()
        self.arch = arch
        salient_columns = (arch.n_background, arch.n_background + arch.n_salient) if arch.salient_linear else None
        self.decoder = CountDecoder(arch.n_background + arch.n_salient + arch.n_covariates, arch.n_genes,
                                    arch.n_hidden, arch.n_layers, salient_columns)
        groups = arch.n_library_groups
        loc = torch.zeros(groups) if library_log_loc is None else torch.as_tensor(library_log_loc, dtype=torch.float32)
        scale = torch.ones(groups) if library_log_scale is None else torch.as_tensor(library_log_scale, dtype=torch.float32)
        self.register_buffer("library_log_loc", loc.reshape(groups))
        self.register_buffer("library_log_scale", scale.reshape(groups))
        if arch.salient_prior == "perturbation":
            # one responder centre per perturbation, and one for the decoy controls (last row)
            self.salient_centres = torch.nn.Parameter(0.01 * torch.randn(arch.n_labels + 1, arch.n_salient))

    def salient_prior(self, batch) -> dist.Distribution:
        """p(salient | perturbation) of the minibatch's cells."""
        n_cells, arch = len(batch["index"]), self.arch
        zeros = batch["covariates"].new_zeros(n_cells, arch.n_salient)
        if arch.salient_prior == "standard":
            return dist.Normal(zeros, 1.0).to_event(1)
        label = torch.where(batch["label"] >= 0, batch["label"], torch.full_like(batch["label"], arch.n_labels))
        centres = torch.stack([zeros, self.salient_centres[label]], dim=-2)  # cells x 2 x n_salient
        weights = dist.Categorical(probs=zeros.new_full((n_cells, 2), 0.5))
        return dist.MixtureSameFamily(weights, dist.Normal(centres, 1.0).to_event(1))

    def forward(self, batch, n_cells: int, weights: TermWeights = TermWeights()) -> None:
        arch, counts = self.arch, batch["counts"]
        perturbed = ~batch["is_control"]
        zeros = batch["covariates"].new_zeros(len(batch["index"]), arch.n_background + arch.n_salient)
        with cell_plate(batch, n_cells), poutine.scale(scale=batch["stratum_weight"]):
            with poutine.scale(scale=weights.kl):
                background = pyro.sample("background", dist.Normal(zeros[:, : arch.n_background], 1.0).to_event(1))
                with poutine.mask(mask=perturbed):
                    salient = pyro.sample("salient", self.salient_prior(batch))
                if arch.library == "latent":
                    group = batch["library_group"]
                    prior = dist.Normal(self.library_log_loc[group].unsqueeze(-1), self.library_log_scale[group].unsqueeze(-1))
                    log_library = pyro.sample("library", prior.to_event(1))
            if arch.library == "observed":
                log_library = observed_log_library(counts)
            # controls have no salient latent: whatever the guide drew for them is not used
            salient = salient * perturbed.unsqueeze(-1)
            pyro.sample("counts", self.count_distribution(background, salient, batch["covariates"], log_library),
                        obs=counts)

    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        """Decoded log expression proportions (each cell sums to 1 over genes)."""
        log_library = background.new_zeros(len(background), 1)
        return self.count_distribution(background, salient, covariates, log_library).log_proportions

    def background_log_proportions(self, background, covariates) -> torch.Tensor:
        """Decoded log expression proportions with the salient latent at 0."""
        return self.log_proportions(background, background.new_zeros(len(background), self.arch.n_salient), covariates)

    def count_distribution(self, background, salient, covariates, log_library) -> CountDistribution:
        """p(counts | latents, covariates) of each cell."""
        logits, gate_logits = self.decoder(torch.cat([background, salient, covariates], dim=-1))
        gate_logits = gate_logits if self.arch.likelihood == "zinb" else None  # "nb": no structural zeros
        return CountDistribution(logits, log_library, self.decoder.dispersion(), gate_logits)


class ContrastiveInference(PyroModule):
    """q(background, salient, library | counts, covariates) and the extra terms: the guide."""

    def __init__(self, arch: Architecture, background_log_proportions=None):
        super().__init__()
        self.arch = arch
        # salient_input "residual": the salient encoder sees what the decoded background
        # leaves (the generative side's decoder, read here, trained only by the model)
        self.background_log_proportions = background_log_proportions
        n_input = arch.n_genes + arch.n_covariates
        args = (arch.n_hidden, arch.n_layers, arch.dropout)
        self.background_encoder = GaussianEncoder(n_input, arch.n_background, *args)
        self.salient_encoder = GaussianEncoder(n_input, arch.n_salient, *args)
        if arch.library == "latent":
            self.library_encoder = GaussianEncoder(n_input, 1, *args)
        if arch.classifier:
            self.classifier = PerturbationClassifier(arch.n_salient + arch.n_covariates, max(arch.n_labels, 1),
                                                     arch.n_hidden)

    def encode(self, counts: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior locs and scales (``background_loc``, ``salient_scale``, ...) of a block."""
        features = encoder_features(counts, covariates)
        residual = self.arch.salient_input == "residual"
        names = ["background"] + ([] if residual else ["salient"]) + (["library"] if self.arch.library == "latent" else [])
        outputs = encode_together(features, [getattr(self, f"{name}_encoder") for name in names])
        encoded = {}
        for name, (loc, scale) in zip(names, outputs):
            encoded[f"{name}_loc"], encoded[f"{name}_scale"] = loc, scale
        if residual:
            with torch.no_grad():
                expected = torch.log1p(self.background_log_proportions(encoded["background_loc"], covariates).exp()
                                       * NORMALISED_TOTAL)
            salient_features = torch.cat([features[:, : self.arch.n_genes] - expected, covariates], dim=-1)
            encoded["salient_loc"], encoded["salient_scale"] = self.salient_encoder(salient_features)
        return encoded

    def forward(self, batch, n_cells: int, weights: TermWeights = TermWeights()) -> dict[str, torch.Tensor]:
        encoded = self.encode(batch["counts"], batch["covariates"])
        is_control = batch["is_control"]
        with cell_plate(batch, n_cells), poutine.scale(scale=batch["stratum_weight"]):
            with poutine.scale(scale=weights.kl):
                for name in ("background", "salient", "library"):
                    if f"{name}_loc" not in encoded:
                        continue
                    with poutine.mask(mask=~is_control if name == "salient" else True):
                        pyro.sample(name, dist.Normal(encoded[f"{name}_loc"], encoded[f"{name}_scale"]).to_event(1))
            with poutine.mask(mask=is_control):
                w2 = encoded["salient_loc"].pow(2).sum(-1) + encoded["salient_scale"].pow(2).sum(-1)
                pyro.factor("wasserstein", weights.wasserstein * w2, has_rsample=True)
            if self.arch.classifier:
                logits = self.classifier(torch.cat([encoded["salient_loc"], batch["covariates"]], dim=-1))
                encoded["classifier_logits"] = logits
                with poutine.mask(mask=~is_control & (batch["label"] >= 0)):
                    # -log q(label | salient): pulls the salient means of different perturbations apart
                    cross_entropy = F.cross_entropy(logits, batch["label"].clamp_min(0), reduction="none")
                    pyro.factor("classification", weights.classification * cross_entropy, has_rsample=True)
        if weights.independence > 0:
            # only the salient side moves: the background keeps what it explains in every cell
            _dependence_factor("independence", weights.independence * n_cells, encoded["salient_loc"],
                               encoded["background_loc"].detach(), ~is_control)
        nuisance = batch.get("nuisance")
        if weights.nuisance > 0 and nuisance is not None and nuisance.shape[-1] > 0:
            _dependence_factor("nuisance", weights.nuisance * n_cells, encoded["salient_loc"], nuisance, ~is_control)
        return encoded


def _dependence_factor(name: str, weight: float, salient: torch.Tensor, other: torch.Tensor, rows) -> None:
    """``weight`` x the normalised HSIC of ``salient`` and ``other`` over ``rows`` as a factor.
    The estimate is unbiased, so about half of an independent pair's is below 0: no pull there."""
    dependence = normalised_hsic(salient[rows], other[rows])
    pyro.factor(name, weight * dependence.clamp_min(0), has_rsample=True)


class ContrastiveModule(PyroModule):
    """The model/guide pair. Their parameters stay in this module (Pyro's
    ``module_local_params``): nothing goes to Pyro's global parameter store."""

    def __init__(self, arch: Architecture, library_log_loc=None, library_log_scale=None):
        with pyro.settings.context(module_local_params=True):  # PyroModules keep it from birth
            super().__init__()
            self.arch = arch
            self.generative = ContrastiveGenerative(arch, library_log_loc, library_log_scale)
            self.inference = ContrastiveInference(arch, self.generative.background_log_proportions)

    def model(self, *args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            return self.generative(*args, **kwargs)

    def guide(self, *args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            return self.inference(*args, **kwargs)

    @torch.inference_mode()
    def posterior(self, counts: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder outputs (posterior locs and scales) for a block of cells."""
        return self.inference.encode(counts, covariates)

    @torch.inference_mode()
    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        """Decoded log expression proportions (each cell sums to 1 over genes)."""
        return self.generative.log_proportions(background, salient, covariates)
