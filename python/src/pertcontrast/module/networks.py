"""The neural networks of the model: plain torch modules, sizes passed in, no state."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_SCALE = 1e-4


def mlp(n_input: int, n_hidden: int, n_layers: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Dropout, ``n_layers`` times.

    LayerNorm rather than BatchNorm: a cell's latent must not depend on which other cells
    share its minibatch (controls and perturbed cells are mixed in fixed proportions, and
    export streams cells in arbitrary batches).
    """
    layers: list[nn.Module] = []
    width = n_input
    for _ in range(n_layers):
        layers += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = n_hidden
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """x (log-normalised counts) and covariates -> loc and scale of a diagonal Normal."""

    def __init__(self, n_input: int, n_output: int, n_hidden: int, n_layers: int, dropout: float):
        super().__init__()
        self.body = mlp(n_input, n_hidden, n_layers, dropout)
        self.loc = nn.Linear(n_hidden, n_output)
        self.raw_scale = nn.Linear(n_hidden, n_output)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_first_layer(self.body[0](features))

    def from_first_layer(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of the encoder, given the output of its first Linear layer."""
        for layer in self.body[1:]:
            hidden = layer(hidden)
        # float32 even under mixed precision: these parameterise distributions and KLs
        return self.loc(hidden).float(), F.softplus(self.raw_scale(hidden).float()) + MIN_SCALE


def encode_together(features: torch.Tensor, encoders) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Several encoders of the same input, their first (genes-wide) layers as one matrix
    product: one large GEMM runs closer to the CPU's peak than one per encoder."""
    firsts = [encoder.body[0] for encoder in encoders]
    hidden = F.linear(features, torch.cat([f.weight for f in firsts]), torch.cat([f.bias for f in firsts]))
    parts = hidden.split([f.out_features for f in firsts], dim=-1)
    return [encoder.from_first_layer(part) for encoder, part in zip(encoders, parts)]


class CountDecoder(nn.Module):
    """[background, salient, covariates] -> expression logits and gate logits per gene."""

    def __init__(self, n_input: int, n_genes: int, n_hidden: int, n_layers: int,
                 salient_columns: tuple[int, int] | None = None):
        super().__init__()
        self.body = mlp(n_input, n_hidden, n_layers)
        self.proportion_logits = nn.Linear(n_hidden, n_genes)
        self.dropout_logits = nn.Linear(n_hidden, n_genes)
        # A perturbation program is an additive shift of log expression on a few dozen
        # genes, small next to cycle and clone. Through the shared hidden layer alone the
        # decoder tends to ignore it; a direct linear path from the salient latent to the
        # expression logits (as in linearly decoded VAEs) makes it cheap to express.
        self.salient_columns = salient_columns
        if salient_columns is not None:
            start, stop = salient_columns
            self.salient_loadings = nn.Linear(stop - start, n_genes, bias=False)
        self.log_dispersion = nn.Parameter(torch.full((n_genes,), 0.7))  # per-gene log theta

    def dispersion(self) -> torch.Tensor:
        return self.log_dispersion.exp()

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expression logits (log proportions up to a per-cell constant) and gate logits."""
        hidden = self.body(latent)
        logits = self.proportion_logits(hidden)
        if self.salient_columns is not None:
            start, stop = self.salient_columns
            logits = logits + self.salient_loadings(latent[..., start:stop])
        return logits.float(), self.dropout_logits(hidden).float()


class PerturbationClassifier(nn.Module):
    """Salient mean (and covariates) -> logits over the perturbation labels."""

    def __init__(self, n_input: int, n_labels: int, n_hidden: int):
        super().__init__()
        self.body = mlp(n_input, n_hidden, 1)
        self.logits = nn.Linear(n_hidden, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(self.body(features))
