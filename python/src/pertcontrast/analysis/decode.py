"""A trained model paired with the cells it analyses: encode blocks of cells and decode
expression for chosen latents. Every array is one block of cells at most."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

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

    def encode(self, rows: np.ndarray, block=None) -> dict[str, torch.Tensor]:
        """Posterior locs and scales of the given cells (one block; on ``device``);
        ``block``: their counts when already read (``rows.csr_rows(rows)``)."""
        counts = csr_tensor(self.rows.csr_rows(rows) if block is None else block).to(self.device)
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


@dataclass
class ExpressionBlock:
    """One block of cells over the model's genes (cells x genes, float64)."""

    residual: np.ndarray  # log1p(counts per 10k) - log1p(the fit per 10k)
    counts: np.ndarray | None = None  # the observed counts (None: a source of residuals alone)
    log_mean: np.ndarray | None = None  # log of the fit's expected counts at the cell's observed depth


class ExpressionResiduals:
    """Each cell's observed log expression minus the model's fit of the same cell
    unperturbed: ``log1p(counts per 10k) - log1p(counterfactual per 10k)`` over the
    model's genes, the counterfactual decoded from the cell's background mean with the
    salient latent at 0. What the background (cycle, clone, batch, depth) explains is gone
    from it; a perturbation's effect stays. Called with rows, it yields ``(rows of a
    block, ExpressionBlock)``: the residuals with the counts and the fit's expected counts
    beside them (the responders' count likelihood), never more than one block in memory.
    ``dispersion`` is the model's inverse dispersion per gene (its negative binomial)."""

    def __init__(self, model, adata, device: str = "auto", source: str = "input", batch_size: int = 1024):
        self.cells = ModelCells(model, adata, device, source)
        self.batch_size = batch_size
        self.positions = None  # rows of the AnnData that the caller's rows 0, 1, ... stand for

    def subset(self, rows: np.ndarray) -> "ExpressionResiduals":
        """The same residuals, where row ``i`` is the AnnData's row ``rows[i]``."""
        view = copy.copy(self)
        view.positions = np.asarray(rows) if self.positions is None else self.positions[rows]
        return view

    @property
    def n_genes(self) -> int:
        return self.cells.n_genes

    @property
    def gene_names(self) -> list[str]:
        return self.cells.gene_names

    @property
    def dispersion(self) -> np.ndarray:
        with torch.inference_mode():
            return self.cells.module.generative.decoder.dispersion().double().cpu().numpy()

    def __call__(self, rows: np.ndarray):
        rows = np.asarray(rows)
        for start in range(0, len(rows), self.batch_size):
            block = rows[start : start + self.batch_size]
            yield block, self.block(block if self.positions is None else self.positions[block])

    @torch.inference_mode()
    def block(self, rows: np.ndarray) -> ExpressionBlock:
        cells = self.cells
        block = cells.rows.csr_rows(rows)  # read once: for the observed expression and the encoder
        counts = torch.from_numpy(block.toarray()).to(cells.device, torch.float32)
        depth = counts.sum(-1, keepdim=True).clamp_min(1.0)
        observed = torch.log1p(counts * (NORMALISED_TOTAL / depth))
        encoded = cells.encode(rows, block)
        background = encoded["background_loc"]
        salient = torch.zeros_like(encoded["salient_loc"])
        log_proportions = cells.log_proportions(background, salient, cells.covariate_tensor(rows))
        fitted = torch.log1p(torch.exp(log_proportions) * NORMALISED_TOTAL)
        as_numpy = lambda values: values.double().cpu().numpy()  # noqa: E731
        return ExpressionBlock(as_numpy(observed - fitted), as_numpy(counts), as_numpy(log_proportions + depth.log()))

    def release(self) -> None:
        self.cells.release()
