"""Per-guide UMI thresholds from a two-component Gaussian mixture on log UMI counts.

The model, for one guide: take the cells with at least one UMI of it and ``x = log1p(UMIs)``.
Cells that do not carry the guide still show a few of its UMIs (ambient guide transcripts,
index hopping, PCR chimeras); cells that carry it show many more. So

    x ~ (1 - w) N(mu_0, s_0^2) + w N(mu_1, s_1^2),   mu_0 < mu_1,

fitted by EM (means started at the 10th and 90th percentiles; counts are whole numbers, so
the values are grouped and weighted, and each variance has a floor: a background made of
ones and twos would otherwise collapse to a point). The threshold is the smallest whole UMI
count above the background mean whose posterior of the upper component is at least 1/2,
i.e. where the two weighted densities cross.

No mixture is trusted, and the caller falls back to its minimum UMI count, when fewer than
``min_cells`` cells have a UMI of the guide, or when the two components are not separated
(Ashman's D = sqrt(2) |mu_1 - mu_0| / sqrt(s_0^2 + s_1^2) below 2) and the lower one is not a
background (its mean above 3 x the minimum UMI count): then every cell with a UMI carries
the guide and the mixture would only split the carriers. An abundant guide (background
UMIs in most cells, some of them many) overlaps its carriers without being separated;
its crossing point is still the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARIANCE_FLOOR = 0.25**2  # in log1p units; 1 and 2 UMIs are 0.41 apart
MIN_SEPARATION = 2.0
BACKGROUND_LIMIT = 3.0  # a lower component above 3 x the minimum UMIs is not a background
MAX_ITERATIONS = 300
TOLERANCE = 1e-8


@dataclass(frozen=True)
class GuideMixture:
    """A fitted two-component mixture; component 0 is the background (lower mean)."""

    weight: float  # w: fraction of the cells with a UMI that are in the upper component
    means: tuple[float, float]
    sds: tuple[float, float]
    iterations: int

    @property
    def separation(self) -> float:
        """Ashman's D."""
        return float(np.sqrt(2.0) * abs(self.means[1] - self.means[0]) / np.hypot(*self.sds))

    def posterior(self, umis) -> np.ndarray:
        """P(upper component | UMIs) for each UMI count."""
        x = np.log1p(np.asarray(umis, dtype=float))
        log_upper = np.log(self.weight) + _log_normal(x, self.means[1], self.sds[1])
        log_lower = np.log1p(-self.weight) + _log_normal(x, self.means[0], self.sds[0])
        return np.exp(log_upper - np.logaddexp(log_upper, log_lower))

    def threshold(self, max_umis: int) -> int | None:
        """The smallest count in 1..max_umis above the background mean with posterior >= 1/2."""
        counts = np.arange(1, max(int(max_umis), 1) + 1)
        above = np.log1p(counts) > self.means[0]
        passing = counts[above & (self.posterior(counts) >= 0.5)]
        return int(passing[0]) if passing.size else None


@dataclass(frozen=True)
class GuideThreshold:
    umis: int  # a cell carries the guide from this many UMIs on
    method: str  # "mixture", or why the minimum was used instead
    mixture: GuideMixture | None = None


def guide_threshold(umis: np.ndarray, min_umis: int, min_cells: int,
                    min_separation: float = MIN_SEPARATION) -> GuideThreshold:
    """The UMI threshold of one guide from its non-zero UMI counts across cells."""
    umis = np.asarray(umis)
    umis = umis[umis > 0]
    if umis.size < min_cells:
        return GuideThreshold(min_umis, f"minimum (fewer than {min_cells} cells with a UMI)")
    fit = fit_mixture(umis)
    if fit is None or (fit.separation < min_separation and np.expm1(fit.means[0]) > BACKGROUND_LIMIT * min_umis):
        return GuideThreshold(min_umis, "minimum (no background component)", fit)
    threshold = fit.threshold(int(umis.max()))
    if threshold is None:
        return GuideThreshold(min_umis, "minimum (no count reaches the upper component)", fit)
    return GuideThreshold(max(threshold, min_umis), "mixture", fit)


def fit_mixture(umis: np.ndarray) -> GuideMixture | None:
    """EM for two Gaussians on log1p(umis); ``None`` when the values cannot be split."""
    values, counts = np.unique(np.asarray(umis), return_counts=True)
    x = np.log1p(values.astype(float))
    w = counts.astype(float)
    total = w.sum()
    means = np.array([_weighted_quantile(x, w, 0.1), _weighted_quantile(x, w, 0.9)])
    if means[1] <= means[0]:
        return None
    spread = max(np.average((x - np.average(x, weights=w)) ** 2, weights=w), VARIANCE_FLOOR)
    variances = np.full(2, spread)
    weights = np.array([0.5, 0.5])
    previous = -np.inf
    for iteration in range(1, MAX_ITERATIONS + 1):
        log_joint = np.log(weights) + _log_normal(x[:, None], means, np.sqrt(variances))
        log_total = np.logaddexp(log_joint[:, 0], log_joint[:, 1])
        responsibility = np.exp(log_joint - log_total[:, None]) * w[:, None]
        mass = responsibility.sum(axis=0)
        if (mass <= 0).any():
            return None
        weights = mass / total
        means = (responsibility * x[:, None]).sum(axis=0) / mass
        variances = np.maximum((responsibility * (x[:, None] - means) ** 2).sum(axis=0) / mass, VARIANCE_FLOOR)
        likelihood = float((log_total * w).sum())
        if likelihood - previous < TOLERANCE * abs(likelihood):
            break
        previous = likelihood
    order = np.argsort(means)
    return GuideMixture(weight=float(weights[order[1]]), means=tuple(float(m) for m in means[order]),
                        sds=tuple(float(s) for s in np.sqrt(variances[order])), iterations=iteration)


def _log_normal(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    cumulative = np.cumsum(w) / w.sum()
    return float(x[min(np.searchsorted(cumulative, q), len(x) - 1)])
