"""A trained model paired with the cells it analyses: encode blocks of cells and decode
expression for chosen latents. Every array is one block of cells at most."""

from __future__ import annotations

import math

import numpy as np
import torch

from pertcontrast.data.loader import CountRows, csr_tensor
from pertcontrast.module.contrastive import NORMALISED_TOTAL

LOG2 = math.log(2.0)


class ModelCells:
    """The model's view of an AnnData: counts aligned to the model's genes (by name),
    encoded covariates, and the module in evaluation mode on ``device``."""

    def __init__(self, model, adata, device: str = "auto", source: str = "input"):
        from pertcontrast.train.trainer import resolve_device

        self.model = model
        self.adata = adata
        self.rows = CountRows(adata.X, model.gene_index(adata.var_names, source))
        encoded = model.encoding.encode_obs(adata.obs, require_labels=False)
        self.covariates = encoded["covariates"]
        self.device = resolve_device(device)
        self.module = model.module.to(self.device).eval()
        self.gene_names = list(model.encoding.gene_names)

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        return self.rows.dense(rows)

    def covariate_tensor(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.covariates[rows]).to(self.device)

    def encode(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Posterior locs and scales of the given cells (one block; on ``device``)."""
        counts = csr_tensor(self.rows.csr_rows(rows)).to(self.device)
        return self.module.posterior(counts, self.covariate_tensor(rows))

    @torch.inference_mode()
    def log_proportions(self, background, salient, covariates) -> torch.Tensor:
        """Decoded log expression proportions (natural log; each row sums to 1)."""
        return self.module.log_proportions(background, salient, covariates)

    def release(self) -> None:
        """Move the module back to the CPU (frees GPU memory)."""
        self.module.cpu()


def per_10k(log_proportions: torch.Tensor) -> torch.Tensor:
    """Normalised expression per 10k counts from log proportions."""
    return torch.exp(log_proportions) * NORMALISED_TOTAL


def sample_normal(loc: torch.Tensor, scale: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + noise * scale
