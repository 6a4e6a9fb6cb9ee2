"""How dependent two latents are within a minibatch: normalised HSIC with Gaussian kernels.

The salient latent should hold what the perturbation changed and nothing the background
already holds (cell-cycle phase, clone, batch). The KL and the decoder alone do not keep
it out: where a little phase in the salient latent helps the reconstruction, it stays
there, and on new cells it shows up as phase "effects". A kernel dependence measure sees
non-linear dependence too (phase is a cycle; a linear decorrelation would miss it).

The estimator is the unbiased one (Song et al. 2012, JMLR 13: 1393): the usual biased
estimate of independent latents is positive and grows with how much structure each has,
so as a penalty it erases the salient latent's structure, programs included.
"""

from __future__ import annotations

import torch


def _gaussian_gram(x: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel matrix with a zero diagonal; bandwidth: the median squared pairwise
    distance (held fixed in the gradient, so a latent cannot change the measure by scaling)."""
    squared = torch.cdist(x, x).pow(2)
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    bandwidth = squared[off_diagonal].detach().median().clamp_min(1e-6)
    return torch.exp(-squared / bandwidth) * off_diagonal


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimate from two kernel matrices with zero diagonals (n >= 4)."""
    n = len(k)
    ones_k, ones_l = k.sum(1), l.sum(1)
    trace = (k * l).sum()
    return (trace + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ones_k @ ones_l)) / (
        n * (n - 3))


def normalised_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)) over the rows (cells), unbiased: about 0
    (either sign) when independent, 1 when each determines the other; 0 for fewer than 5
    rows or a constant latent."""
    if len(x) < 5:
        return x.new_zeros(())
    k, l = _gaussian_gram(x), _gaussian_gram(y)
    scale = (unbiased_hsic(k, k).clamp_min(0) * unbiased_hsic(l, l).clamp_min(0)).sqrt()
    return torch.where(scale > 1e-12, unbiased_hsic(k, l) / scale.clamp_min(1e-12), x.new_zeros(()))
