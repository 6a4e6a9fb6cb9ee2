"""A two-component Gaussian mixture on one-dimensional scores with one component fixed.

The fixed component is the null (the scores of control cells); the free component is
the responders. EM updates only the weight, mean and sd of the free component (the
null's sd may be widened from the lower half of the scores, see ``fit_null_mixture``).
Cells get a posterior probability of the free component, kept non-decreasing in the
score, and 0 when the free component is not separated from the null (its mean within the
null's 95% point): then the perturbation has no responder population.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

NULL_QUANTILE_95 = float(norm.ppf(0.95))
MIN_LOWER_HALF = 10  # scores below the null mean needed to estimate the empirical null


@dataclass(frozen=True)
class MixtureFit:
    weight: float  # fraction of cells in the free (responder) component
    mean: float
    sd: float
    null_mean: float
    null_sd: float
    log_likelihood: float
    iterations: int

    @property
    def separated(self) -> bool:
        """Whether the free component is a shifted population: its mean lies beyond the
        null's one-sided 95% point (a free component on top of the null only models a
        spread wider than the controls', not responders)."""
        return self.weight > 0.0 and self.mean > self.null_mean + NULL_QUANTILE_95 * self.null_sd

    def posterior(self, scores) -> np.ndarray:
        """P(free component | score) for each score, made non-decreasing in the score;
        0 when the free component is not separated from the null.

        The log odds of the two Gaussians is a quadratic in the score: with a wider free
        component it rises again in the null's lower tail, with a narrower one it falls
        beyond the free mean. Scores past the quadratic's vertex on that side get the
        vertex's value, so a higher score never means a lower probability.
        """
        scores = np.asarray(scores, dtype=float)
        if not self.separated:
            return np.zeros(scores.shape)
        a = 0.5 / self.null_sd**2 - 0.5 / self.sd**2
        b = self.mean / self.sd**2 - self.null_mean / self.null_sd**2
        if a > 0:
            scores = np.maximum(scores, -b / (2 * a))
        elif a < 0:
            scores = np.minimum(scores, -b / (2 * a))
        log_free = np.log(self.weight) + norm.logpdf(scores, self.mean, self.sd)
        log_null = np.log1p(-self.weight) + norm.logpdf(scores, self.null_mean, self.null_sd)
        return np.exp(log_free - np.logaddexp(log_free, log_null))


def fit_null_mixture(
    scores,
    null_mean: float,
    null_sd: float,
    max_iter: int = 200,
    tol: float = 1e-6,
    min_sd_ratio: float = 0.25,
    empirical_null: bool = True,
) -> MixtureFit:
    """EM for ``pi * N(mean, sd) + (1 - pi) * N(null_mean, null_sd)`` on ``scores``.

    The free component starts on the scores above the null's 95th percentile (the upper
    half of the scores when there are none). Its mean is kept at or above the null mean
    (responders move along the perturbation's direction) and its sd at or above
    ``min_sd_ratio * null_sd``, so it cannot collapse onto a single cell.

    With ``empirical_null`` the null's sd is widened to the spread of the scores below
    the null mean when that is larger: responders only add mass above the null, so a
    wider lower half means the perturbed cells vary more than the controls (e.g. an
    encoder fitted closely to the training controls), not that they respond.
    """
    x = np.asarray(scores, dtype=float)
    x = x[np.isfinite(x)]
    null_sd = max(float(null_sd), 1e-8)
    lower = x[x < null_mean]
    if empirical_null and len(lower) >= MIN_LOWER_HALF:
        null_sd = max(null_sd, float(np.sqrt(np.mean((lower - null_mean) ** 2))))
    min_sd = min_sd_ratio * null_sd
    if len(x) == 0:
        return MixtureFit(0.0, null_mean, null_sd, null_mean, null_sd, 0.0, 0)
    high = x[x > null_mean + 1.645 * null_sd]
    if len(high) < 2:
        high = x[x >= np.median(x)]
    weight = float(np.clip(len(high) / len(x), 0.05, 0.95))
    mean = max(float(high.mean()), null_mean)
    sd = max(float(high.std()), min_sd)
    log_null = norm.logpdf(x, null_mean, null_sd)
    previous = -np.inf
    iteration = 0
    for iteration in range(1, max_iter + 1):
        log_a = np.log(weight) + norm.logpdf(x, mean, sd)
        log_b = np.log1p(-weight) + log_null
        total = np.logaddexp(log_a, log_b)
        log_likelihood = float(total.sum())
        r = np.exp(log_a - total)
        r_sum = r.sum()
        if r_sum < 1e-8:
            weight = 0.0
            break
        weight = float(np.clip(r_sum / len(x), 1e-6, 1.0 - 1e-6))
        mean = max(float((r * x).sum() / r_sum), null_mean)
        sd = max(float(np.sqrt((r * (x - mean) ** 2).sum() / r_sum)), min_sd)
        if log_likelihood - previous < tol * max(1.0, abs(log_likelihood)):
            break
        previous = log_likelihood
    fit = MixtureFit(weight, mean, sd, float(null_mean), null_sd, 0.0, iteration)
    log_likelihood = _log_likelihood(fit, x)
    return MixtureFit(weight, mean, sd, float(null_mean), null_sd, log_likelihood, iteration)


def _log_likelihood(fit: MixtureFit, x: np.ndarray) -> float:
    log_null = norm.logpdf(x, fit.null_mean, fit.null_sd)
    if fit.weight <= 0.0:
        return float(log_null.sum())
    log_a = np.log(fit.weight) + norm.logpdf(x, fit.mean, fit.sd)
    return float(np.logaddexp(log_a, np.log1p(-fit.weight) + log_null).sum())
