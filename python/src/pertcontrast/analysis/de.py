"""Model-based differential expression of each perturbation against its counterfactual.

For every perturbed cell and posterior sample, a background and a salient latent are
drawn from the cell's posterior; the cell is decoded twice with the same background and
covariates, once with the sampled salient and once with the salient set to 0 (the cell
unperturbed). The per-gene log2 ratio of the two (expression per 10k, plus a pseudocount
that keeps the decoder's poorly determined changes of barely expressed genes from being
called) is one draw of a cell's log2 fold change.

Reported per gene: the mean, median and sd of the draws pooled over cells and samples
(how the effect is spread over cells), and ``prob_de`` = P(|population LFC| > delta),
where each posterior sample's population LFC is a Bayesian-bootstrap weighted mean over
the perturbation's cells (so the uncertainty of a mean over a finite number of cells is
kept). A perturbation's effect is judged on its cells on average: escapers (cells whose
knockdown failed) lower the average but, unlike a per-cell probability, do not cap it at
the responder fraction. Also its log10 Bayes factor and calls at a target posterior
expected FDR.

Calibrated against controls the model did not train on: their salient latents are not
exactly 0, so "decoded with their salient vs with 0" gives the LFC the model reports for
cells without an effect. With a ``null`` summary of those controls, every number above is
the perturbation's minus the null's (the population LFCs sample by sample), so what an
unperturbed cell would show is not called.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pertcontrast.analysis.decode import LOG2, ModelCells, sample_normal
from pertcontrast.module.contrastive import NORMALISED_TOTAL
from pertcontrast.errors import ParameterError


@dataclass(frozen=True)
class SharingSettings:
    """How perturbations of one program lend each other strength (``analysis.differential.program_weights``)."""

    min_z: float = 3.0  # genes with |z| above this make up a perturbation's profile
    min_similarity: float = 0.3  # cosine of two profiles below which they share nothing
    level: float = 0.05  # a gene counts as changed by a perturbation at this unadjusted p-value
    gain: float = 19.0  # weight of a gene a perfectly alike perturbation changed, before scaling to mean 1


@dataclass(frozen=True)
class DESettings:
    # log2 fold change that counts as an effect; the model's population LFCs are averages
    # of single cells' posterior means, which shrink towards 0 (about 0.4x the pseudobulk
    # LFC on the simulated screens), so this is below scVI's 0.25
    delta: float = 0.15
    pseudocount: float = 0.5  # added to expression per 10k before the log ratio (model and Wilcoxon)
    fdr: float = 0.05  # target posterior expected FDR (and BH level for Wilcoxon)
    n_samples: int = 25  # posterior samples per cell
    max_cells_per_perturbation: int = 500  # for the posterior samples (the tests use every cell)
    max_control_cells: int = 10000  # null controls for the Wilcoxon test
    # weighted BH: the weight of a gene an alike perturbation changed, before scaling to
    # mean 1 (0: plain BH per perturbation)
    share_gain: float = SharingSettings.gain
    responders_only: bool = False
    min_cells: int = 3  # perturbations with fewer cells get no statistics
    batch_size: int = 512
    median_pool: int = 2000  # draws per gene kept for the median
    top_n: int = 20
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.delta > 0, "delta", f"must be positive (got {self.delta})"),
            (0 < self.fdr < 1, "fdr", f"must be between 0 and 1 (got {self.fdr})"),
            (self.pseudocount >= 0, "pseudocount", f"must be 0 or more (got {self.pseudocount})"),
            (self.n_samples >= 1, "n_samples", f"must be at least 1 (got {self.n_samples})"),
            (self.max_cells_per_perturbation >= 1, "max_cells_per_perturbation",
             f"must be at least 1 (got {self.max_cells_per_perturbation})"),
            (self.max_control_cells >= 2, "max_control_cells", f"must be at least 2 (got {self.max_control_cells})"),
            (self.share_gain >= 0, "share_gain", f"must be 0 or more (got {self.share_gain})"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1 (got {self.batch_size})"),
            (self.top_n >= 1, "top_n", f"must be at least 1 (got {self.top_n})"),
        ]
        for ok, param, message in checks:
            if not ok:
                raise ParameterError(f"{message}.", param=param)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LFCSummary:
    """Per-gene summaries of the pooled log2 fold change draws of one perturbation."""

    mean: np.ndarray
    median: np.ndarray
    sd: np.ndarray
    prob_de: np.ndarray
    n_draws: int
    population: np.ndarray  # (samples, genes): each posterior sample's population LFC


def log_expression(log_proportions: torch.Tensor, pseudocount: float) -> torch.Tensor:
    """log(expression per 10k + pseudocount), computed stably from log proportions."""
    log_per_10k = log_proportions + math.log(NORMALISED_TOTAL)
    if pseudocount <= 0:
        return log_per_10k
    return torch.logaddexp(log_per_10k, torch.tensor(math.log(pseudocount), device=log_per_10k.device))


def counterfactual_lfc(
    cells: ModelCells,
    rows: np.ndarray,
    n_samples: int,
    delta: float,
    generator: torch.Generator,
    batch_size: int = 512,
    median_pool: int = 2000,
    pseudocount: float = 0.0,
    null: LFCSummary | None = None,
) -> LFCSummary:
    """Pooled paired-sample log2 fold changes (perturbed vs salient = 0) over ``rows``,
    of expression per 10k plus ``pseudocount``, and P(|population LFC| > delta); with
    ``null`` (the same summary of null controls, as many samples), relative to it.

    Sums, sums of squares and the weighted population sums are accumulated block by
    block; the first ``ceil(median_pool / len(rows))`` samples of every cell are kept for
    the median.
    """
    n_genes = cells.n_genes
    device = cells.device
    total = torch.zeros(n_genes, dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    population = torch.zeros(n_samples, n_genes, dtype=torch.float64, device=device)
    # Bayesian bootstrap: per posterior sample, Dirichlet(1, ..., 1) weights over the cells.
    weights = torch.empty(n_samples, len(rows), dtype=torch.float64, device=device)
    weights.exponential_(generator=generator)
    weights /= weights.sum(dim=1, keepdim=True)
    kept_samples = min(n_samples, max(1, math.ceil(median_pool / max(len(rows), 1))))
    pool = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            block = rows[start : start + batch_size]
            encoded = cells.encode(block)
            covariates = cells.covariate_tensor(block)
            for sample in range(n_samples):
                background = sample_normal(encoded["background_loc"], encoded["background_scale"], generator)
                salient = sample_normal(encoded["salient_loc"], encoded["salient_scale"], generator)
                perturbed = cells.log_proportions(background, salient, covariates)
                unperturbed = cells.log_proportions(background, torch.zeros_like(salient), covariates)
                lfc = (log_expression(perturbed, pseudocount) - log_expression(unperturbed, pseudocount)) / LOG2
                total += lfc.sum(dim=0, dtype=torch.float64)
                total_sq += lfc.double().pow(2).sum(dim=0)
                population[sample] += weights[sample, start : start + len(block)] @ lfc.double()
                if sample < kept_samples:
                    pool.append(lfc.cpu().numpy())
    n_draws = len(rows) * n_samples
    mean = (total / n_draws).cpu().numpy()
    variance = (total_sq / n_draws).cpu().numpy() - mean**2
    sd = np.sqrt(np.maximum(variance, 0.0) * n_draws / max(n_draws - 1, 1))
    median = np.median(np.concatenate(pool), axis=0)
    population = population.cpu().numpy()
    if null is not None:
        mean, median, population = mean - null.mean, median - null.median, population - null.population
    prob_de = (np.abs(population) > delta).mean(axis=0)
    return LFCSummary(mean, median, sd, prob_de, n_draws, population)
