"""Responder calls: which perturbed cells show their perturbation's effect.

The null is ``null_controls``: decoy controls (trained as if perturbed) and controls the
model never saw (see ``analysis.cells.null_controls``). The controls trained as controls
are no null: the Wasserstein term pulled their salient latents to 0, so they look more
"unperturbed" than any perturbed cell and a null of them finds effects everywhere.

A perturbation has responders only when its cells differ from the null at all: an
energy test of its salient latents against the null controls, Benjamini-Hochberg over
perturbations at ``fdr``. Within those, a cell's score is the projection of its salient
mean onto the perturbation's mean salient direction, the null controls projected onto the
same direction are the null, and a two-component mixture (null fixed to the controls'
scores, responders free) gives each cell a posterior probability of responding (reported,
for ranking). A responder is a cell of a detected perturbation whose score is above the
``null_quantile`` of the null's on its own direction: about 1 - ``null_quantile`` of the
cells that do not respond (escapers, whose scores are the null's) are called, however
much responders and escapers overlap.

The direction is the mean of the perturbation's cells whose salient norm exceeds the
controls' median norm (escapers sit near 0 and barely move it). It is cross-fitted: the
cells are split in two halves and each half is scored on the direction of the other, so
a cell's own noise does not pull the direction towards it (otherwise perturbations with
no effect would show a spurious shift away from the null).

With the model's ``residuals`` (``analysis.decode.ExpressionResiduals``: each cell's log
expression minus the model's fit of it unperturbed) the score is taken in gene space
instead (``expression_scores``, the default of the steps): the salient latent is a
compressed, partly shrunk summary, while the residual keeps every gene of the effect with
the background removed (benchmarks/README.md, "Responder scores", has what each choice
measured on new cells). The perturbation is then detected by the cross-fitted scores
themselves (a one-sided rank test against the null controls' scores, without the target
gene) or by the energy test, Bonferroni over the two (``either``). The rank test's
direction borrows from the other perturbations' effects, so a weak effect that shares a
program with others is detected through it (benchmarks/README.md, "Detection borrows").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scipy.stats import mannwhitneyu

from pertcontrast.analysis.cells import target_columns
from pertcontrast.analysis.energy import energy_test
from pertcontrast.analysis.mixture import fit_null_mixture
from pertcontrast.analysis.multiple_testing import benjamini_hochberg

CONTROL, RESPONDER, NON_RESPONDER = "control", "responder", "non-responder"
CALLS = (CONTROL, RESPONDER, NON_RESPONDER)


@dataclass
class ResponderResult:
    score: np.ndarray  # per cell, NaN for controls
    probability: np.ndarray  # per cell, NaN for controls
    call: pd.Categorical
    table: pd.DataFrame  # one row per perturbation


def mean_direction(salient: np.ndarray, norm_cutoff: float) -> np.ndarray:
    """Unit vector of the mean of the rows whose norm exceeds ``norm_cutoff`` (all rows
    when none do); zeros when that mean is 0."""
    if len(salient) == 0:
        return np.zeros(salient.shape[1])
    large = np.linalg.norm(salient, axis=1) > norm_cutoff
    mean = salient[large].mean(axis=0) if large.any() else salient.mean(axis=0)
    length = np.linalg.norm(mean)
    return mean / length if length > 0 else np.zeros_like(mean)


def responder_scores(
    salient: np.ndarray, controls: np.ndarray, rng: np.random.Generator, null_quantile: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted projection scores of one perturbation's cells, the controls' null
    scores (projected on each half's direction) and each cell's ``null_quantile`` of the
    null scores on its own direction."""
    cutoff = float(np.median(np.linalg.norm(controls, axis=1)))
    n = len(salient)
    halves = np.zeros(n, dtype=bool)
    halves[rng.permutation(n)[: n // 2]] = True
    scores, bar = np.empty(n), np.empty(n)
    null = []
    for held_out in (halves, ~halves):
        fit_rows = ~held_out if (~held_out).any() else held_out
        direction = mean_direction(salient[fit_rows], cutoff)
        scores[held_out] = salient[held_out] @ direction
        null.append(controls @ direction)
        bar[held_out] = np.quantile(null[-1], null_quantile) if len(controls) else np.inf
    return scores, np.concatenate(null), bar


@dataclass
class ExpressionScores:
    """Cross-fitted gene-space scores (see ``expression_scores``)."""

    score: np.ndarray  # per cell: z-score against the null controls' scores on its direction; NaN elsewhere
    null: dict[str, np.ndarray]  # per perturbation: the null controls' z-scores on its scoring directions
    bar: np.ndarray  # per cell: the ``null_quantile`` of the null z-scores on its own direction
    pvalue: dict[str, float]  # per perturbation: one-sided rank test of its scores against the null's
    n_genes: dict[str, float]  # per perturbation: genes past the cut in its own detection directions (halves' mean)


def _direction(difference: np.ndarray, variance: np.ndarray, t: np.ndarray, min_t: float):
    """Weights ``difference / variance`` on the genes with ``|t| > min_t`` (every gene when
    none passes) and the number of genes that passed."""
    selected = np.abs(t) > min_t
    weights = difference / variance
    return (np.where(selected, weights, 0.0) if selected.any() else weights), int(selected.sum())


def _borrowed_directions(own: np.ndarray, difference: np.ndarray, scale: np.ndarray, basis: np.ndarray,
                         owner: np.ndarray, targets: np.ndarray, max_basis: int = 100) -> np.ndarray:
    """Detection directions that borrow from the other perturbations: each row of ``own``
    (a half's ``|t| > min_t`` direction) plus, at equal length, the part of that half's
    standardised mean difference (``difference / scale``) that the other perturbations'
    whole effects (``basis``, standardised and shrunk; row ``owner`` of a direction is its
    own perturbation, left out) explain by least squares, mapped back by ``scale``.

    A weak effect estimated on half its cells is mostly noise over thousands of genes; its
    projection on the few effects the screen has keeps the program and drops most of the
    noise (a program two perturbations share is found from both). Nothing of the scored
    half's cells or of the null half it is tested against enters, so the test stays valid.
    With more than ``max_basis`` other perturbations, those whose effects are most alike
    (|cosine| to the half's own difference) form the basis. Targets are left out of both."""
    directions = own.copy()
    has_basis = np.flatnonzero(np.abs(basis).sum(1) > 0)
    for row in range(len(own)):
        others = has_basis[has_basis != owner[row]]
        target = targets[owner[row]]
        values = difference[row] / scale[row]
        if len(others) == 0 or not values.any():
            continue
        if target >= 0:
            values[target] = 0.0
        if len(others) > max_basis:
            cosine = np.abs(basis[others] @ values) / np.maximum(np.linalg.norm(basis[others], axis=1), 1e-12)
            others = others[np.argsort(-cosine)[:max_basis]]
        span = basis[others].T.copy()
        if target >= 0:
            span[target] = 0.0
        coefficients = np.linalg.lstsq(span, values, rcond=None)[0]
        borrowed = (span @ coefficients) / scale[row]
        length = np.linalg.norm(borrowed)
        if length > 0:
            own_length = np.linalg.norm(own[row])
            directions[row] = borrowed / length + (own[row] / own_length if own_length > 0 else 0.0)
    return directions


def _balanced_folds(codes: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold in ``0 .. n_folds - 1`` for each entry, at random but as even as possible
    within each code (a perturbation's folds differ in size by one cell at most)."""
    order = rng.permutation(len(codes))
    order = order[np.argsort(codes[order], kind="stable")]
    ranked = codes[order]
    rank = np.arange(len(order)) - np.searchsorted(ranked, ranked, side="left")
    folds = np.empty(len(codes), dtype=int)
    folds[order] = rank % n_folds
    return folds


def _count_log_ratio(block, delta: np.ndarray, dispersion: np.ndarray, unshifted: np.ndarray) -> np.ndarray:
    """Per cell: log p(counts | fit x exp(delta)) - log p(counts | fit), negative binomial
    with the fit's expected counts and ``dispersion`` (inverse dispersion) per gene;
    ``unshifted``: ``logaddexp(log dispersion, log fit)`` of the block (shared by every delta)."""
    shifted = np.logaddexp(np.log(dispersion), block.log_mean + delta)
    return (block.counts * delta - (block.counts + dispersion) * (shifted - unshifted)).sum(-1)


def _share_effects(effects: np.ndarray, whole: np.ndarray, size: np.ndarray, targets: np.ndarray,
                   n_folds: int, min_similarity: float) -> np.ndarray:
    """Each group's effect averaged with the whole effects of the other perturbations that
    look alike (cosine over the genes above ``min_similarity``, weighted by its square and
    their cells), each perturbation's own target gene left out of the likeness and kept
    from its own estimate. Perturbations of one program estimate it together; no group's
    cells or the null's second half enter its effect, so the cross-fitting holds."""
    n_perturbations = len(whole)
    others = whole.copy()
    own = effects.copy()
    has_target = targets >= 0
    others[np.flatnonzero(has_target), targets[has_target]] = 0.0
    group_target = np.repeat(targets, n_folds)
    rows = np.flatnonzero(group_target >= 0)
    own[rows, group_target[rows]] = 0.0
    norms = np.linalg.norm(own, axis=1)[:, None] * np.linalg.norm(others, axis=1)[None, :]
    similarity = np.divide(own @ others.T, norms, out=np.zeros_like(norms), where=norms > 0)
    similarity[np.arange(len(effects)), np.repeat(np.arange(n_perturbations), n_folds)] = 0.0  # not itself
    weight = np.where(similarity > min_similarity, similarity**2, 0.0)
    n_whole = size.reshape(n_perturbations, n_folds).sum(1)
    n_own = np.repeat(n_whole, n_folds) - size
    shared = (n_own[:, None] * effects + (weight * n_whole) @ others) / np.maximum(n_own + weight @ n_whole, 1.0)[:, None]
    shared[rows, group_target[rows]] = effects[rows, group_target[rows]]
    return shared


def expression_scores(residuals, labels: np.ndarray, is_control: np.ndarray, null_mask: np.ndarray,
                      rng: np.random.Generator, null_quantile: float = 0.875, min_t: float = 3.0,
                      unmatched: np.ndarray | None = None, n_folds: int = 6,
                      shrinkage: float = 36.0, min_similarity: float = 0.3) -> ExpressionScores:
    """Each perturbed cell's log-likelihood ratio of responding, on an effect estimated
    from its perturbation's other cells: cross-fitted, so a cell never helps estimate the
    effect it is scored on.

    The null controls are split in two at random, a perturbation's cells into ``n_folds``
    folds (even). For the cells of one fold the effect is estimated on the other folds
    against the first null half: per gene, the log ratio of observed to fitted counts of
    those cells minus the same of the null controls (the effect's log fold change, diluted
    by their escapers), shrunk by ``t^2 / (t^2 + shrinkage)`` with ``t`` the Welch t of the
    residuals (genes with no evidence count for little), then averaged with the effects of
    the other perturbations that look alike (``_share_effects``: a program's perturbations
    estimate it together). A cell's score is the negative
    binomial log-likelihood ratio of its counts under the fit times that fold change
    against the fit alone (with a source of residuals alone, without counts: the residual
    projected on the shrunk ``difference / variance``, the Gaussian ratio). The second null
    half, scored on the same effect, is the null: scores are z-scores against it, and under
    no effect a fold's scores and the null's are exchangeable. Five of six cells estimate
    each effect (two halves left half of them out and lost power where effects are weak),
    and the likelihood ratio weighs a gene by what its counts can tell (the log residuals
    flatten low counts): see benchmarks/README.md. (Fitting against the controls trained
    as controls instead, to keep every null control for the null, called perturbations
    without an effect on the training cells of the standard screen.) ``unmatched`` cells
    (see ``analysis.cells.unmatched_cells``) are scored and called but fit no effect and
    stay out of the detection test.

    Detection is a one-sided rank test per half of the cells (the even and the odd folds),
    each scored on a direction fitted on the other half against the first null half,
    ``difference / variance`` on the genes with ``|t| > min_t`` plus, at equal length, the
    part of that half's difference the other perturbations' whole effects explain
    (``_borrowed_directions``: a weak effect is found through the program it shares),
    without the gene named like the perturbation (its target): the target's own drop is
    the knockdown, not its effect, so a knockdown without downstream changes is not
    detected. Cells are scored with the target in: whether a cell's target dropped is the best single sign that its knockdown
    worked, and escapers are the cells where it did not. Two passes over ``residuals``."""
    if n_folds < 2 or n_folds % 2:
        raise ValueError(f"n_folds must be even and at least 2, got {n_folds}")
    labels = np.asarray(labels)
    n = len(labels)
    perturbations = sorted(set(labels[~is_control]))
    index = {p: i for i, p in enumerate(perturbations)}
    n_perturbations, n_genes = len(perturbations), residuals.n_genes
    perturbed = np.flatnonzero(~is_control)
    code = np.full(n, -1)
    code[perturbed] = np.array([index[p] for p in labels[perturbed]], dtype=int)
    # group of a perturbed cell: its perturbation and fold; its half (detection) is the fold's parity
    group = np.full(n, -1)
    group[perturbed] = n_folds * code[perturbed] + _balanced_folds(code[perturbed], n_folds, rng)
    half = np.where(group >= 0, 2 * code + group % 2, -1)
    null_rows = rng.permutation(np.flatnonzero(null_mask & is_control))
    null_fit, null_test = np.sort(null_rows[: len(null_rows) // 2]), np.sort(null_rows[len(null_rows) // 2 :])
    fits = group.copy()
    if unmatched is not None:
        fits[np.asarray(unmatched, bool)] = -1
    n_groups = n_folds * n_perturbations
    size = np.bincount(fits[fits >= 0], minlength=n_groups).astype(float)
    sums, squares = np.zeros((n_groups, n_genes)), np.zeros((n_groups, n_genes))
    count_sums, fit_sums = np.zeros((n_groups, n_genes)), np.zeros((n_groups, n_genes))
    null_sums = np.zeros((4, n_genes))  # residual, its square, counts, fitted counts
    in_null_fit = np.zeros(n, dtype=bool)
    in_null_fit[null_fit] = True
    has_counts = None  # the source's kind, from its first block
    for rows, block in residuals(np.union1d(np.flatnonzero(fits >= 0), null_fit)):
        has_counts = block.counts is not None if has_counts is None else has_counts
        groups, fitting = fits[rows], fits[rows] >= 0
        np.add.at(sums, groups[fitting], block.residual[fitting])
        np.add.at(squares, groups[fitting], np.square(block.residual[fitting]))
        null = in_null_fit[rows]
        null_sums[0] += block.residual[null].sum(0)
        null_sums[1] += np.square(block.residual[null]).sum(0)
        if has_counts:
            fitted = np.exp(block.log_mean)
            np.add.at(count_sums, groups[fitting], block.counts[fitting])
            np.add.at(fit_sums, groups[fitting], fitted[fitting])
            null_sums[2] += block.counts[null].sum(0)
            null_sums[3] += fitted[null].sum(0)
    has_counts = bool(has_counts)
    n_fit = max(len(null_fit), 1)
    null_mean = null_sums[0] / n_fit
    variance = np.maximum(null_sums[1] / n_fit - null_mean**2, 0.0) + 1e-3  # floor: genes (almost) never seen
    null_log_ratio = np.log((null_sums[2] + 0.5) / (null_sums[3] + 0.5))

    def statistics(rows_sum, rows_square, n_rows):
        """Mean difference from the null half, its Welch t and the pooled variance."""
        mean = rows_sum / n_rows
        difference = mean - null_mean
        # t with each side's own variance (Welch): the perturbation's cells vary more where it acts
        own = np.maximum(rows_square / n_rows - mean**2, 0.0) + 1e-3
        t = difference / np.sqrt(own / n_rows + variance / n_fit)
        # weights on the pooled variance: the null's alone is noisy where the null is small
        return difference, t, (n_fit * variance + n_rows * own) / (n_fit + n_rows)

    def effect(rows_sum, rows_square, count_sum, fit_sum, n_rows):
        """The effect estimated on some cells: log fold change (counts) or weights
        (residuals alone), each gene shrunk by its evidence."""
        difference, t, pooled = statistics(rows_sum, rows_square, n_rows)
        evidence = t**2 / (t**2 + shrinkage)
        if has_counts:
            return (np.log((count_sum + 0.5) / (fit_sum + 0.5)) - null_log_ratio) * evidence
        return difference / pooled * evidence

    effects = np.zeros((n_groups, n_genes))  # per group: estimated on the perturbation's other folds
    whole = np.zeros((n_perturbations, n_genes))  # per perturbation: on all its cells
    detection = np.zeros((n_genes, 2 * n_perturbations))
    n_selected = np.zeros(2 * n_perturbations)
    # for the borrowed directions: each half's difference and scale (sd), and each
    # perturbation's whole effect (standardised, shrunk by its evidence, its target left out)
    half_difference = np.zeros((2 * n_perturbations, n_genes))
    half_scale = np.ones((2 * n_perturbations, n_genes))
    basis = np.zeros((n_perturbations, n_genes))
    targets = target_columns(perturbations, getattr(residuals, "gene_names", None) or [])
    for i in range(n_perturbations):
        folds = slice(n_folds * i, n_folds * (i + 1))
        total = [values[folds].sum(0) for values in (sums, squares, count_sums, fit_sums)]
        n_total = size[folds].sum()
        if n_total:
            whole[i] = effect(*total, n_total)
            difference, t, pooled = statistics(total[0], total[1], n_total)
            basis[i] = difference / np.sqrt(pooled) * t**2 / (t**2 + shrinkage)
            if targets[i] >= 0:
                basis[i, targets[i]] = 0.0
        for g in range(n_folds * i, n_folds * (i + 1)):
            if n_total - size[g]:
                effects[g] = effect(*(a - b[g] for a, b in zip(total, (sums, squares, count_sums, fit_sums))),
                                    n_total - size[g])
        for h in (0, 1):
            other = slice(n_folds * i + 1 - h, n_folds * (i + 1), 2)  # the folds of the other parity
            n_rows = size[other].sum()
            if n_rows == 0:
                continue
            difference, t, pooled = statistics(sums[other].sum(0), squares[other].sum(0), n_rows)
            if targets[i] >= 0:
                difference[targets[i]] = t[targets[i]] = 0.0
            detection[:, 2 * i + h], n_selected[2 * i + h] = _direction(difference, pooled, t, min_t)
            half_difference[2 * i + h], half_scale[2 * i + h] = difference, np.sqrt(pooled)
    detection = _borrowed_directions(detection.T, half_difference, half_scale, basis,
                                     np.repeat(np.arange(n_perturbations), 2), targets).T
    effects = _share_effects(effects, whole, size, targets, n_folds, min_similarity)
    dispersion = np.asarray(residuals.dispersion, dtype=np.float64) if has_counts else None

    def score(block, delta):
        """Scores of a block's cells on ``delta`` (one effect per cell, or one for all)."""
        if not has_counts:
            return (block.residual * delta).sum(-1)
        return _count_log_ratio(block, delta, dispersion, np.logaddexp(np.log(dispersion), block.log_mean))

    raw = np.full(n, np.nan)
    raw_detection = np.full(n, np.nan)
    null_scores = np.zeros((len(null_test), n_groups))
    null_detection = np.zeros((len(null_test), 2 * n_perturbations))
    test_position = np.full(n, -1)
    test_position[null_test] = np.arange(len(null_test))
    for rows, block in residuals(np.union1d(perturbed, null_test)):
        projected = block.residual @ detection
        in_group = np.flatnonzero(group[rows] >= 0)
        raw_detection[rows[in_group]] = projected[in_group, half[rows[in_group]]]
        raw[rows[in_group]] = score(_rows_of(block, in_group), effects[group[rows[in_group]]])
        in_null = np.flatnonzero(test_position[rows] >= 0)
        positions = test_position[rows[in_null]]
        null_detection[positions] = projected[in_null]
        if len(in_null) and has_counts:
            null_block = _rows_of(block, in_null)
            unshifted = np.logaddexp(np.log(dispersion), null_block.log_mean)
            for g in range(n_groups):  # every null control on every effect: one effect at a time
                null_scores[positions, g] = _count_log_ratio(null_block, effects[g], dispersion, unshifted)
        elif len(in_null):
            null_scores[positions] = block.residual[in_null] @ effects.T

    def standardise(values, null_values, columns):
        centre = null_values.mean(0) if len(null_test) else np.zeros(null_values.shape[1])
        spread = null_values.std(0) if len(null_test) > 1 else np.ones(null_values.shape[1])
        spread = np.where(spread > 0, spread, 1.0)
        return (values - centre[columns]) / spread[columns], (null_values - centre) / spread

    z = np.full(n, np.nan)
    z_detection = np.full(n, np.nan)
    z[perturbed], null_z = standardise(raw[perturbed], null_scores, group[perturbed])
    z_detection[perturbed], null_z_detection = standardise(raw_detection[perturbed], null_detection, half[perturbed])
    bar = np.full(n, np.inf)
    quantiles = np.quantile(null_z, null_quantile, axis=0) if len(null_test) else np.full(n_groups, np.inf)
    bar[perturbed] = quantiles[group[perturbed]]
    null, pvalue, genes = {}, {}, {}
    for p, i in index.items():
        null[p] = null_z[:, n_folds * i : n_folds * (i + 1)].ravel()
        halves = []
        for h in (2 * i, 2 * i + 1):
            cells = z_detection[(fits >= 0) & (half == h)]
            if len(cells) and len(null_test):
                halves.append(mannwhitneyu(cells, null_z_detection[:, h], alternative="greater").pvalue)
        # the two halves share the null half: Bonferroni over them is valid whatever their dependence
        pvalue[p] = min(1.0, 2 * min(halves)) if halves else float("nan")
        genes[p] = float(n_selected[[2 * i, 2 * i + 1]].mean())
    return ExpressionScores(z, null, bar, pvalue, genes)


def _rows_of(block, rows: np.ndarray):
    """The block's ``rows`` alone (the same kind of block)."""
    return type(block)(block.residual[rows], None if block.counts is None else block.counts[rows],
                       None if block.log_mean is None else block.log_mean[rows])


def either(*pvalues: float) -> float:
    """Bonferroni combination of p-values (NaN ones left out): valid under any dependence."""
    finite = [p for p in pvalues if np.isfinite(p)]
    return min(1.0, len(finite) * min(finite)) if finite else float("nan")


def call_responders(
    salient: np.ndarray,
    labels,
    control_label: str,
    null_controls: np.ndarray | None = None,
    fdr: float = 0.05,
    n_permutations: int = 1000,
    seed: int = 0,
    null_quantile: float = 0.875,
    residuals=None,
    unmatched: np.ndarray | None = None,
) -> ResponderResult:
    """Scores, responder probabilities and calls for every cell (see module docstring).

    ``null_controls``: boolean per cell, the controls the model did not train on (default:
    every control, for latents of data the model never saw). ``residuals``: an
    ``ExpressionResiduals`` of the same cells (in this order) for gene-space scores;
    ``unmatched``: perturbed cells kept out of fitting and detection (see
    ``expression_scores``)."""
    salient = np.asarray(salient, dtype=np.float64)
    labels = pd.Series(np.asarray(labels, dtype=object)).astype(str).to_numpy()
    is_control = labels == control_label
    null_mask = is_control if null_controls is None else (np.asarray(null_controls, bool) & is_control)
    controls = salient[null_mask]
    n = len(labels)
    score = np.full(n, np.nan)
    probability = np.full(n, np.nan)
    responding = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    perturbations = sorted(set(labels[~is_control]))
    tests = [energy_test(salient[labels == p], controls, n_permutations, seed=[seed, i])
             for i, p in enumerate(perturbations)]
    padj = benjamini_hochberg([pvalue for _, pvalue in tests])
    expression = None
    if residuals is not None:
        expression = expression_scores(residuals, labels, is_control, null_mask, rng, null_quantile,
                                       unmatched=unmatched)
        # either test may find the effect (the rank test where it is spread over many weak
        # genes, the energy test where few null controls leave the rank test little power):
        # Bonferroni over the two is valid whatever their dependence
        detection_pvalues = [either(expression.pvalue[p], energy) for p, (_, energy) in zip(perturbations, tests)]
        detection = benjamini_hochberg(detection_pvalues)
    rows = []
    for i, (perturbation, (distance, pvalue), adjusted) in enumerate(zip(perturbations, tests, padj)):
        cells = np.flatnonzero(labels == perturbation)
        if expression is None:
            scores, null, bar = responder_scores(salient[cells], controls, rng, null_quantile)
            detection_pvalue, detection_padj = pvalue, adjusted
        else:
            scores, null, bar = expression.score[cells], expression.null[perturbation], expression.bar[cells]
            detection_pvalue, detection_padj = detection_pvalues[i], detection[i]
        score[cells] = scores
        fit = fit_null_mixture(scores, float(null.mean()), float(null.std()))
        detected = bool(detection_padj < fdr)
        probability[cells] = fit.posterior(scores) if detected else 0.0
        # a responder scores above the null's bar: about 1 - null_quantile of the cells that do
        # not respond are called, however much the two overlap (a posterior above 1/2 called
        # too few where they overlap: a third of the responders of the hard screen)
        responding[cells] = detected & (scores > bar)
        n_responders = int(responding[cells].sum())
        rows.append({
            "perturbation": perturbation,
            "n_cells": len(cells),
            "n_responders": n_responders,
            "responder_fraction": n_responders / len(cells),
            "energy_distance": distance,
            "energy_pvalue": pvalue,
            "energy_padj": float(adjusted),
            "score_space": "salient" if expression is None else "expression",
            "detection_pvalue": float(detection_pvalue),
            "detection_padj": float(detection_padj),
            "n_direction_genes": float("nan") if expression is None else expression.n_genes[perturbation],
            "effect_detected": detected,
            "null_threshold": float(np.quantile(null, null_quantile)),
            "mixture_weight": fit.weight,
            "mixture_separated": fit.separated,
            "responder_mean": fit.mean,
            "null_mean": fit.null_mean,
            "null_sd": fit.null_sd,
        })
    call = np.where(is_control, CONTROL, np.where(responding, RESPONDER, NON_RESPONDER))
    table = pd.DataFrame(rows, columns=[
        "perturbation", "n_cells", "n_responders", "responder_fraction", "energy_distance", "energy_pvalue",
        "energy_padj", "score_space", "detection_pvalue", "detection_padj", "n_direction_genes", "effect_detected",
        "null_threshold", "mixture_weight", "mixture_separated",
        "responder_mean", "null_mean", "null_sd",
    ])
    table.attrs["n_null_controls"] = int(null_mask.sum())
    return ResponderResult(score, probability, pd.Categorical(call, categories=list(CALLS)), table)
