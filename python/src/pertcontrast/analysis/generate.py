"""Generated expression: each cell decoded without its perturbation or without its
background, streamed in blocks of cells.

- ``counterfactual``: the cell's own background and covariates, salient set to 0 ("this
  very cell, unperturbed");
- ``background_free``: the cell's salient latent on a reference background:
  ``marginal`` averages the decoded expression over the backgrounds (and covariates) of
  a sample of control cells, ``prior`` decodes the prior mean background (0) averaged
  over the controls' covariate combinations; variation shared with controls is gone;
- ``effect``: log2 fold change of the observed-model expression (own background and
  salient) over the counterfactual.

Controls have no salient latent in the model (it is 0), so their effect is 0 and their
counterfactual equals the model's fit. Latents are posterior means. Output layers are
dense cells x genes float32 (expression per 10k, effect in log2): meant for screens of
moderate size or subsets (``max_cells``); beyond the output, memory holds one block of
cells x genes per layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from pertcontrast.analysis.cells import subsample
from pertcontrast.analysis.decode import LOG2, ModelCells, per_10k
from pertcontrast.errors import InputDataError, ParameterError

MODES = ("counterfactual", "background_free", "effect")
BACKGROUNDS = ("marginal", "prior")


@dataclass(frozen=True)
class GenerateSettings:
    modes: tuple[str, ...] = MODES
    background: str = "marginal"
    n_reference: int = 100  # control cells whose backgrounds make the marginal reference
    max_cells: int | None = None
    batch_size: int = 1024
    seed: int = 0

    def __post_init__(self):
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ParameterError(
                f"{{param}} {', '.join(unknown) or '(none)'} is not a mode; choose from {', '.join(MODES)}.",
                param="modes"
            )
        if self.background not in BACKGROUNDS:
            raise ParameterError(f"must be one of {', '.join(BACKGROUNDS)} (got {self.background!r}).",
                                 param="background")
        if self.n_reference < 1:
            raise ParameterError(f"must be at least 1 (got {self.n_reference}).", param="n_reference")
        if self.max_cells is not None and self.max_cells < 1:
            raise ParameterError(f"must be at least 1 (got {self.max_cells}).", param="max_cells")
        if self.batch_size < 1:
            raise ParameterError(f"must be at least 1 (got {self.batch_size}).", param="batch_size")

    def to_dict(self) -> dict:
        return {**asdict(self), "modes": list(self.modes)}


def selected_cells(n_obs: int, settings: GenerateSettings) -> np.ndarray:
    """Rows to generate: all, or a seeded uniform subsample of ``max_cells`` (sorted)."""
    return subsample(np.arange(n_obs), settings.max_cells, np.random.default_rng(settings.seed))


def reference_background(cells: ModelCells, is_control: np.ndarray, settings: GenerateSettings):
    """(backgrounds, covariates, weights) to average the background-free decode over."""
    controls = np.flatnonzero(is_control)
    if len(controls) == 0:
        raise InputDataError("background_free needs control cells for the reference; none found.")
    rng = np.random.default_rng([settings.seed, 1])
    reference = subsample(controls, settings.n_reference, rng)
    covariates = cells.covariate_tensor(reference)
    if settings.background == "marginal":
        background = cells.encode(reference)["background_loc"]
        weights = torch.full((len(reference),), 1.0 / len(reference), device=cells.device)
        return background, covariates, weights
    unique, counts = torch.unique(covariates, dim=0, return_counts=True)
    background = torch.zeros(len(unique), cells.model.architecture.n_background, device=cells.device)
    return background, unique, counts.float() / counts.sum()


def generate_expression(model, adata, settings: GenerateSettings = GenerateSettings(), device: str = "auto",
                        progress: bool = False, source: str = "input") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows generated and a dict of layers (rows x model genes, float32), see module doc."""
    from pertcontrast.progress import track

    cells = ModelCells(model, adata, device, source)
    encoding = model.encoding
    if encoding.perturbation_key in adata.obs:
        is_control = adata.obs[encoding.perturbation_key].astype(str).to_numpy() == encoding.control_label
    else:
        is_control = np.zeros(adata.n_obs, dtype=bool)
    rows = selected_cells(adata.n_obs, settings)
    layers = {mode: np.zeros((len(rows), cells.n_genes), dtype=np.float32) for mode in settings.modes}
    reference = reference_background(cells, is_control, settings) if "background_free" in settings.modes else None
    blocks = range(0, len(rows), settings.batch_size)
    with torch.inference_mode():
        for start in track(blocks, "generate", "block", enabled=progress):
            block = rows[start : start + settings.batch_size]
            out = slice(start, start + len(block))
            encoded = cells.encode(block)
            control = torch.from_numpy(is_control[block]).to(cells.device).unsqueeze(-1)
            salient = torch.where(control, torch.zeros_like(encoded["salient_loc"]), encoded["salient_loc"])
            covariates = cells.covariate_tensor(block)
            background = encoded["background_loc"]
            if "counterfactual" in layers or "effect" in layers:
                unperturbed = cells.log_proportions(background, torch.zeros_like(salient), covariates)
                if "counterfactual" in layers:
                    layers["counterfactual"][out] = per_10k(unperturbed).cpu().numpy()
                if "effect" in layers:
                    observed = cells.log_proportions(background, salient, covariates)
                    layers["effect"][out] = ((observed - unperturbed) / LOG2).cpu().numpy()
            if reference is not None:
                layers["background_free"][out] = _background_free(cells, salient, reference).cpu().numpy()
    cells.release()
    return rows, layers


def _background_free(cells: ModelCells, salient: torch.Tensor, reference) -> torch.Tensor:
    """Decoded expression per 10k of ``salient`` averaged over the reference backgrounds,
    one reference at a time (one block x genes accumulator)."""
    backgrounds, covariates, weights = reference
    n = len(salient)
    total = torch.zeros(n, cells.n_genes, device=salient.device)
    for background, covariate, weight in zip(backgrounds, covariates, weights.tolist()):
        decoded = per_10k(cells.log_proportions(background.expand(n, -1), salient, covariate.expand(n, -1)))
        total.add_(decoded, alpha=weight)
    return total
