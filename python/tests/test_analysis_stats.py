"""Pure pieces of the analysis: FDR procedures, the rank-sum test, the null mixture,
energy distance, responder scores and clustering (cheap, no model)."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from scipy.stats import mannwhitneyu

from pertcontrast.analysis.clustering import cluster_rows
from pertcontrast.analysis.decode import ExpressionBlock
from pertcontrast.analysis.energy import energy_distance, energy_test
from pertcontrast.analysis.mixture import fit_null_mixture
from pertcontrast.analysis.multiple_testing import benjamini_hochberg, log10_bayes_factor, posterior_fdr_calls
from pertcontrast.analysis.responders import call_responders
from pertcontrast.analysis.wilcoxon import log_normalise, rank_sum_test


def test_benjamini_hochberg_matches_the_step_up_definition(rng):
    p = rng.random(200) ** 3
    p[[3, 17]] = np.nan
    adjusted = benjamini_hochberg(p)
    assert np.isnan(adjusted[[3, 17]]).all()
    finite = np.isfinite(p)
    m = finite.sum()
    ranks = p[finite].argsort().argsort() + 1
    expected = np.array([min(1.0, (p[finite][p[finite] >= x] * m / ranks[p[finite] >= x]).min())
                         for x in p[finite]])
    np.testing.assert_allclose(adjusted[finite], expected)
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.5]), [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_posterior_fdr_takes_the_largest_set_with_mean_error_below_target():
    prob = np.array([0.99, 0.2, 0.97, 0.9, 0.5, 0.999, np.nan])
    # Sorted: 0.999, 0.99, 0.97, 0.9, 0.5, 0.2 -> running mean errors 0.001, 0.0055, 0.0137, 0.0353, 0.128...
    calls = posterior_fdr_calls(prob, fdr=0.05)
    assert calls.tolist() == [True, False, True, True, False, True, False]
    assert not posterior_fdr_calls(np.full(5, 0.9), fdr=0.05).any()
    assert posterior_fdr_calls(np.full(5, 0.96), fdr=0.05).all()


def test_bayes_factor_is_log10_odds_and_finite():
    np.testing.assert_allclose(log10_bayes_factor([0.5, 0.9, 0.01]), [0.0, np.log10(9), np.log10(1 / 99)])
    assert np.isfinite(log10_bayes_factor([0.0, 1.0])).all()


def test_sparse_rank_sum_equals_scipy_with_ties(rng):
    x = np.log1p(rng.poisson(0.4, (60, 40)) * 1.0)
    y = np.log1p(rng.poisson(0.6, (90, 40)) * 1.0)
    x[:, 0] = y[:, 0] = 0.0  # all tied
    x[:, 1] = rng.random(60)  # no ties
    u, p = rank_sum_test(sp.csr_matrix(x), sp.csr_matrix(y), gene_block=7)
    expected = mannwhitneyu(x, y, axis=0, method="asymptotic")
    np.testing.assert_allclose(u, expected.statistic)
    np.testing.assert_allclose(p, np.nan_to_num(expected.pvalue, nan=1.0), atol=1e-12)
    assert p[0] == 1.0


def test_log_normalise_is_log1p_of_counts_per_10k():
    counts = sp.csr_matrix(np.array([[1, 0, 3], [0, 0, 5]], dtype=float))
    np.testing.assert_allclose(log_normalise(counts).toarray(),
                               np.log1p(np.array([[2500, 0, 7500], [0, 0, 10000]])))


def test_null_mixture_recovers_weight_and_posteriors(rng):
    null = rng.normal(0.0, 1.0, 5000)
    responders = rng.normal(4.0, 1.2, 700)
    escapers = rng.normal(0.0, 1.0, 300)
    scores = np.concatenate([responders, escapers])
    fit = fit_null_mixture(scores, null.mean(), null.std())
    assert fit.weight == pytest.approx(0.7, abs=0.05)
    assert fit.mean == pytest.approx(4.0, abs=0.2)
    posterior = fit.posterior(scores)
    assert posterior[:700].mean() > 0.9 and posterior[700:].mean() < 0.2


def test_null_mixture_finds_few_responders_without_effect(rng):
    scores = rng.normal(0.0, 1.0, 400)
    fit = fit_null_mixture(scores, 0.0, 1.0)
    assert (fit.posterior(scores) > 0.5).mean() < 0.05


def test_energy_distance_matches_direct_computation(rng):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.3
    direct = (2 * np.mean([np.linalg.norm(a - b) for a in x for b in y])
              - np.mean([np.linalg.norm(a - b) for a in x for b in x])
              - np.mean([np.linalg.norm(a - b) for a in y for b in y]))
    assert energy_distance(x, y) == pytest.approx(direct)
    observed, _ = energy_test(x, y, n_permutations=0)
    assert observed == pytest.approx(direct)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert cdist(x, y).shape == (40, 30)


def test_energy_permutation_pvalue_separates_shift_from_none(rng):
    shifted = energy_test(rng.normal(size=(100, 4)) + 0.8, rng.normal(size=(100, 4)), n_permutations=200, seed=1)
    assert shifted[1] < 0.01
    nulls = [energy_test(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), 100, seed=s)[1] for s in range(20)]
    assert np.mean(np.array(nulls) < 0.05) <= 0.2
    repeat = energy_test(np.ones((5, 2)), np.zeros((5, 2)), 50, seed=3)
    assert repeat == energy_test(np.ones((5, 2)), np.zeros((5, 2)), 50, seed=3)


def test_responder_calls_on_synthetic_salient(rng):
    d = 6
    controls = rng.normal(0, 0.3, (1000, d))
    direction = np.eye(d)[0]
    responders = rng.normal(0, 0.3, (300, d)) + 2.0 * direction
    escapers = rng.normal(0, 0.3, (100, d))
    nothing = rng.normal(0, 0.3, (400, d))
    salient = np.vstack([controls, responders, escapers, nothing])
    labels = ["control"] * 1000 + ["A"] * 400 + ["B"] * 400
    result = call_responders(salient, labels, "control")
    truth = np.r_[np.zeros(1000), np.ones(300), np.zeros(500)].astype(bool)
    called = np.asarray(result.call) == "responder"
    assert (called == truth).mean() > 0.97
    assert np.isnan(result.probability[:1000]).all()
    table = result.table.set_index("perturbation")
    # the responders and the 1 - 0.875 of the escapers above the null's bar (the escapers are the null)
    assert table.loc["A", "responder_fraction"] == pytest.approx(0.75 + 0.25 * 0.125, abs=0.04)
    assert table.loc["B", "responder_fraction"] < 0.05


def test_clustering_groups_zero_profiles_and_chooses_k(rng):
    programs = np.zeros((3, 50))
    programs[0, :10], programs[1, 10:20], programs[2, 20:30] = 1.0, -1.0, 1.0
    rows, truth = [], []
    for k in range(3):
        for _ in range(4):
            rows.append(programs[k] * rng.uniform(0.8, 1.2) + rng.normal(0, 0.05, 50))
            truth.append(k)
    for _ in range(4):
        rows.append(rng.normal(0, 0.05, 50))
        truth.append(3)
    labels, leaf, _ = cluster_rows(np.array(rows))
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) == 1.0
    assert sorted(leaf) == list(range(len(rows)))
    assert set(labels) == {1, 2, 3, 4}
    flat, _, score = cluster_rows(rng.normal(0, 1, (10, 50)))
    assert set(flat) == {1} and np.isnan(score)


def test_a_wider_spread_than_the_controls_is_not_a_responder_population(rng):
    # Cells of a no-effect perturbation spread wider than the (over-fitted) controls.
    scores = rng.normal(0.05, 2.0, 300)
    fit = fit_null_mixture(scores, 0.0, 1.0)
    assert fit.null_sd == pytest.approx(2.0, abs=0.25)  # the empirical null from the lower half
    assert (fit.posterior(scores) > 0.5).mean() < 0.02
    narrow = fit_null_mixture(rng.normal(0.3, 1.0, 300), 0.0, 1.0)  # a small shift of everything
    assert not narrow.separated and narrow.posterior(np.array([0.3, 3.0])).max() == 0.0


def test_responder_probability_never_decreases_with_the_score(rng):
    scores = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 3, 300)])
    fit = fit_null_mixture(scores, 0.0, 1.0)
    assert fit.separated
    order = np.argsort(scores)
    assert np.all(np.diff(fit.posterior(scores)[order]) >= 0)
    assert fit.posterior(np.array([-6.0]))[0] < 0.5  # the far lower tail is not a responder


def _cells(rng, scales, n_cells=200, sd=0.3, d=10, n_null=4):
    """Cell-level salient latents: controls at 0, programs along random directions with
    per-perturbation strength, no-effect perturbations at 0."""
    salient, labels, truth = [rng.normal(0, sd, (1000, d))], ["control"] * 1000, {}
    for k, scale in enumerate(scales):
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        for j in range(5):
            name = f"p{k}_{j}"
            salient.append(direction * scale * rng.uniform(0.8, 1.2) + rng.normal(0, sd, (n_cells, d)))
            labels += [name] * n_cells
            truth[name] = k
    for j in range(n_null):
        salient.append(rng.normal(0, sd, (n_cells, d)))
        labels += [f"null_{j}"] * n_cells
        truth[f"null_{j}"] = "none"
    return np.vstack(salient), np.array(labels), pd.Series(truth)


def _energy_effects(salient, labels) -> pd.Series:
    """Which perturbations the effects step calls: energy test against the controls, BH 0.05."""
    from pertcontrast.analysis.effects import EffectSettings, energy_table

    energy = energy_table(salient, labels, "control", None, EffectSettings(max_cells=150, n_permutations=300))
    return pd.Series(energy["energy_padj"].to_numpy() < 0.05, index=energy["perturbation"])


@pytest.mark.parametrize("scales", [[1.0, 1.0, 1.0, 1.0], [0.45, 0.5, 0.6, 2.0], [0.45, 0.8, 1.5, 3.0]])
def test_perturbation_clusters_recover_programs_of_any_strength(rng, scales):
    """A Euclidean silhouette cut would split {strongest program} from {the rest}; the
    no-effect group plus direction clustering recovers every program."""
    from sklearn.metrics import adjusted_rand_score

    from pertcontrast.analysis.clustering import cluster_perturbations, salient_profiles

    salient, labels, truth = _cells(rng, scales)
    profiles, has_effect = salient_profiles(salient, labels, "control"), _energy_effects(salient, labels)
    assert has_effect[truth.index[truth != "none"]].all() and not has_effect[truth.index[truth == "none"]].any()
    clusters, similarity = cluster_perturbations(profiles, has_effect)
    assert adjusted_rand_score(truth.loc[clusters["perturbation"]].astype(str), clusters["cluster"]) == 1.0
    nulls = clusters[~clusters["effect_detected"]]
    assert nulls["cluster"].nunique() == 1 and nulls["cluster"].iloc[0] == clusters["cluster"].max()
    assert sorted(clusters["leaf_order"]) == list(range(len(clusters)))
    assert list(similarity.index) == list(clusters["perturbation"])


def test_a_screen_without_effects_is_one_cluster(rng):
    from pertcontrast.analysis.clustering import cluster_perturbations, salient_profiles

    salient, labels, _ = _cells(rng, [], n_null=8)
    clusters, _ = cluster_perturbations(salient_profiles(salient, labels, "control"), _energy_effects(salient, labels))
    assert (clusters["cluster"] == 1).all() and not clusters["effect_detected"].any()


def _screen_with_a_tight_training_null(rng, d=6):
    """Training controls pulled to 0 (sd 0.1), held-out controls and the cells of
    no-effect perturbations as the encoder leaves them (sd 0.3); one real effect."""
    training = rng.normal(0, 0.1, (800, d))
    heldout = rng.normal(0, 0.3, (400, d))
    effect = np.vstack([rng.normal(0, 0.3, (240, d)) + 1.5 * np.eye(d)[0], rng.normal(0, 0.3, (160, d))])
    nothing = [rng.normal(0, 0.3, (300, d)) for _ in range(3)]
    salient = np.vstack([training, heldout, effect, *nothing])
    labels = np.array(["control"] * 1200 + ["A"] * 400 + [f"none{k}" for k in range(3) for _ in range(300)])
    null = np.r_[np.zeros(800, bool), np.ones(400, bool), np.zeros(1300, bool)]
    truth = np.r_[np.zeros(1200), np.ones(240), np.zeros(1060)].astype(bool)
    return salient, labels, null, truth


def test_held_out_controls_make_responder_calls_calibrated(rng):
    """Against training controls (pulled to 0) every no-effect perturbation looks like it
    responds; against controls the model did not train on none does, and the effect's
    responders are still found (escapers not)."""
    salient, labels, null, truth = _screen_with_a_tight_training_null(rng)
    biased = call_responders(salient, labels, "control", null_controls=~null & (labels == "control"))
    assert biased.table.set_index("perturbation").loc[["none0", "none1", "none2"], "effect_detected"].all()
    calibrated = call_responders(salient, labels, "control", null_controls=null)
    table = calibrated.table.set_index("perturbation")
    assert not table.loc[["none0", "none1", "none2"], "effect_detected"].any()
    assert table.loc["A", "effect_detected"] and table.attrs["n_null_controls"] == 400
    called = np.asarray(calibrated.call) == "responder"
    assert called[truth].mean() > 0.9
    assert called[1440:1600].mean() < 0.2  # the effect's escapers: about 1 - 0.875 of them, the null's bar
    assert not called[1600:].any()


def test_pseudo_perturbations_of_null_controls_call_nothing(rng):
    from pertcontrast.analysis.calibration import CalibrationSettings, run_check, summary

    salient, labels, null, _ = _screen_with_a_tight_training_null(rng)
    table = run_check(salient, labels, "control", null, CalibrationSettings(n_groups=6, de=False))
    assert len(table) == 6 and (table["n_cells"] <= 200).all()  # at most half of the 400 null controls
    result = summary(table)
    assert result["effects_called"] == 0 and result["responder_fraction"] <= 0.05


def test_pseudo_perturbations_are_tested_beside_the_real_ones(rng, monkeypatch):
    """Each group goes through the calls with the screen's real perturbations in (their
    effects are what its detection direction borrows from), against the null controls
    outside it; a real perturbation named like the check's label is refused."""
    from pertcontrast.analysis import responders
    from pertcontrast.analysis.calibration import PSEUDO_LABEL, CalibrationSettings, run_check
    from pertcontrast.errors import InputDataError

    salient, labels, null, _ = _screen_with_a_tight_training_null(rng)
    seen = []
    real_call = responders.call_responders

    def recording(salient, labels, *args, **kwargs):
        seen.append(pd.Series(labels).value_counts())
        return real_call(salient, labels, *args, **kwargs)

    monkeypatch.setattr(responders, "call_responders", recording)
    table = run_check(salient, labels, "control", null, CalibrationSettings(n_groups=2, de=False))
    assert len(seen) == 2
    for counts, size in zip(seen, table["n_cells"]):
        assert counts[PSEUDO_LABEL] == size and counts["control"] == null.sum() - size
        real = pd.Series(labels[labels != "control"]).value_counts()
        pd.testing.assert_series_equal(counts.drop(["control", PSEUDO_LABEL]).sort_index(), real.sort_index(),
                                       check_names=False)
    renamed = np.where(labels == "A", PSEUDO_LABEL, labels)
    with pytest.raises(InputDataError, match=PSEUDO_LABEL):
        run_check(salient, renamed, "control", null, CalibrationSettings(n_groups=2, de=False))


class ArrayResiduals:
    """Residuals held in memory, served in blocks the way ExpressionResiduals serves them."""

    def __init__(self, values: np.ndarray, batch_size: int = 97):
        self.values, self.batch_size, self.n_genes = values, batch_size, values.shape[1]
        self.passes = 0

    def __call__(self, rows):
        self.passes += 1
        for start in range(0, len(rows), self.batch_size):
            block = rows[start : start + self.batch_size]
            yield block, ExpressionBlock(self.values[block])


class ArrayCounts(ArrayResiduals):
    """Counts and a known fit of them, served as ExpressionResiduals serves a model's."""

    def __init__(self, counts: np.ndarray, log_mean: np.ndarray, dispersion: np.ndarray, batch_size: int = 97):
        depth = np.maximum(counts.sum(1, keepdims=True), 1.0)
        super().__init__(np.log1p(counts / depth * 1e4) - np.log1p(np.exp(log_mean) / depth * 1e4), batch_size)
        self.counts, self.log_mean, self.dispersion = counts, log_mean, dispersion

    def __call__(self, rows):
        self.passes += 1
        for start in range(0, len(rows), self.batch_size):
            block = rows[start : start + self.batch_size]
            yield block, ExpressionBlock(self.values[block], self.counts[block], self.log_mean[block])


def _count_screen(rng, n_null_perturbations=30):
    """Negative binomial counts over 300 genes whose fit knows each cell's depth and
    background (one of 3 clones moving a fifth of the genes); controls and no-effect
    perturbations from the fit; perturbation A changes 15 genes (log fold change +-0.7) in
    70% of its cells."""
    n = 1200 + 400 + 150 * n_null_perturbations
    base = rng.normal(0, 1, 300) - np.log(300)
    clones = rng.normal(0, 0.8, (3, 300)) * (rng.random((3, 300)) < 0.2)
    depth = np.exp(rng.normal(np.log(3000), 0.4, n))
    logits = base + clones[rng.integers(0, 3, n)]
    proportions = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    log_mean = np.log(proportions * depth[:, None])
    effect = np.zeros(300)
    effect[:15] = 0.7 * np.where(np.arange(15) % 3 == 0, -1.0, 1.0)
    responds = np.r_[np.zeros(1200, bool), rng.random(400) < 0.7, np.zeros(n - 1600, bool)]
    truth_mean = np.exp(log_mean + np.where(responds[:, None], effect, 0.0))
    dispersion = np.full(300, 5.0)
    counts = rng.poisson(rng.gamma(dispersion, truth_mean / dispersion)).astype(np.float64)
    labels = np.array(["control"] * 1200 + ["A"] * 400
                      + [f"none{i}" for i in range(n_null_perturbations) for _ in range(150)])
    return ArrayCounts(counts, log_mean, dispersion), labels, responds


def _residual_screen(rng, n_null_perturbations=30):
    values, labels, truth = _gene_space_screen(rng, n_null_perturbations)
    return ArrayResiduals(values), labels, truth


def _gene_space_screen(rng, n_null_perturbations=30):
    """Controls and no-effect perturbations from one distribution over 300 genes with
    unequal variances; perturbation A shifts 15 genes in 70% of its cells (30% escape)."""
    sd = rng.uniform(0.3, 1.5, 300)
    controls = rng.normal(0, sd, (1200, 300))
    shift = np.zeros(300)
    shift[:15] = 0.8 * sd[:15]
    a = rng.normal(0, sd, (400, 300))
    responds = rng.random(400) < 0.7
    a[responds] += shift
    nulls = rng.normal(0, sd, (150 * n_null_perturbations, 300))
    values = np.vstack([controls, a, nulls])
    labels = np.array(["control"] * 1200 + ["A"] * 400
                      + [f"none{i}" for i in range(n_null_perturbations) for _ in range(150)])
    truth = np.r_[np.zeros(1200, bool), responds, np.zeros(len(nulls), bool)]
    return values, labels, truth


@pytest.mark.parametrize("screen", [_residual_screen, _count_screen], ids=["residuals", "counts"])
def test_gene_space_scores_find_responders_and_are_calibrated_without_an_effect(rng, screen):
    """Cross-fitted gene-space scores (the default with a model; with counts and the fit,
    the count likelihood ratio): the changed cells are found and about 1 - 0.875 of their
    escapers are called; 30 perturbations without an effect are detected at about the
    nominal rate (none at BH 0.05) and get no responders; two passes."""
    from sklearn.metrics import roc_auc_score

    residuals, labels, truth = screen(rng)
    salient = np.zeros((len(labels), 2))  # unused by the gene-space scores but for the energy column
    result = call_responders(salient, labels, "control", residuals=residuals, n_permutations=20)
    assert residuals.passes == 2
    table = result.table.set_index("perturbation")
    assert (table["score_space"] == "expression").all()
    a = labels == "A"
    assert roc_auc_score(truth[a], result.score[a]) > 0.97
    called = np.asarray(result.call) == "responder"
    assert called[a & truth].mean() > 0.85 and called[a & ~truth].mean() <= 0.2
    assert table.loc["A", "effect_detected"] and table.loc["A", "detection_padj"] < 1e-10
    assert 10 <= table.loc["A", "n_direction_genes"] <= 30  # the 15 shifted genes and a few by chance
    nulls = table.drop(index="A")
    assert not nulls["effect_detected"].any() and called[labels.astype(str) != "A"].sum() == 0
    # uniform p-values under no effect (Bonferroni over the two halves: conservative)
    assert (nulls["detection_pvalue"] < 0.05).mean() <= 0.15 and nulls["detection_pvalue"].median() > 0.3


@pytest.mark.parametrize("screen", [_residual_screen, _count_screen], ids=["residuals", "counts"])
def test_gene_space_scores_are_not_fooled_by_their_own_noise(rng, screen):
    """Without cross-fitting a perturbation's own noise makes it look shifted along the
    effect estimated on it; here no perturbation has an effect, the cells are pure noise
    over many genes, and the scores stay centred on the null's."""
    source, labels, _ = screen(rng, n_null_perturbations=10)
    keep = np.flatnonzero(labels != "A")
    source.values = source.values[keep]
    if isinstance(source, ArrayCounts):
        source.counts, source.log_mean = source.counts[keep], source.log_mean[keep]
    result = call_responders(np.zeros((len(keep), 2)), labels[keep], "control", residuals=source, n_permutations=20)
    scores = result.score[labels[keep] != "control"]
    assert abs(np.mean(scores)) < 0.1 and 0.8 < np.std(scores) < 1.25



def _shared_program_screen(rng, weak_shift=0.25):
    """Gene-space residuals over 2,000 genes: perturbation A shifts 30 genes by 0.6 sd in
    all of its 600 cells, B the same 30 genes by ``weak_shift`` sd in 70% of its 300, and
    20 perturbations have no effect."""
    n_genes = 2000
    program = np.zeros(n_genes)
    program[:30] = np.where(np.arange(30) % 3 == 0, -1.0, 1.0)
    groups = [("control", 1600, 0.0, 1.0), ("A", 600, 0.6, 1.0), ("B", 300, weak_shift, 0.7)]
    groups += [(f"none{i}", 150, 0.0, 0.0) for i in range(20)]
    values, labels = [], []
    for label, n, shift, fraction in groups:
        cells = rng.normal(0, 1, (n, n_genes))
        cells[rng.random(n) < fraction] += shift * program
        values.append(cells)
        labels += [label] * n
    return ArrayResiduals(np.vstack(values)), np.array(labels)


def test_borrowed_direction_keeps_the_program_and_drops_the_noise(rng):
    """A half's noisy estimate of a weak program, projected on another perturbation's
    whole effect, is the program; added to the estimate at equal length it brings the
    direction closer to the program; the perturbation's own row and its target never
    enter; without other perturbations the direction is its own."""
    from pertcontrast.analysis.responders import _borrowed_directions

    n_genes = 1000
    program = np.zeros(n_genes)
    program[:20] = 1.0
    noisy = 0.3 * program + rng.normal(0, 1, n_genes)  # one half's standardised difference
    own = np.where(np.abs(noisy) > 3, noisy, 0.0)[None]
    basis = np.vstack([program + rng.normal(0, 0.03, n_genes), 5.0 * program])  # row 1: its own whole effect
    basis[0, 25] = 50.0  # the target's column, left out of the projection
    cosine = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    targets = np.array([-1, 25])
    borrowed = _borrowed_directions(own, noisy[None], np.ones((1, n_genes)), basis, np.array([1]), targets)
    assert cosine(borrowed[0], program) > cosine(own[0], program) + 0.2
    projected = borrowed[0] - own[0] / np.linalg.norm(own[0])  # the borrowed part, at unit length
    assert np.linalg.norm(projected) == pytest.approx(1.0) and cosine(projected, program) > 0.95
    assert borrowed[0, 25] == 0.0
    alone = _borrowed_directions(own, noisy[None], np.ones((1, n_genes)), basis[1:], np.array([0]), targets[1:])
    np.testing.assert_array_equal(alone, own)


def test_a_weak_perturbation_is_detected_through_the_program_it_shares(rng, monkeypatch):
    """B's shift (0.25 sd on 30 of 2,000 genes, 30% escapers) is too weak for a direction
    estimated on half of its cells; borrowed from A's effect it is detected, while 20
    perturbations without an effect keep uniform detection p-values."""
    from pertcontrast.analysis import responders

    residuals, labels = _shared_program_screen(rng)
    salient = np.zeros((len(labels), 2))
    table = call_responders(salient, labels, "control", residuals=residuals, n_permutations=20).table
    table = table.set_index("perturbation")
    assert table.loc["A", "effect_detected"] and table.loc["B", "effect_detected"]
    nulls = table.drop(index=["A", "B"])
    assert not nulls["effect_detected"].any() and (nulls["detection_pvalue"] < 0.05).mean() <= 0.15
    monkeypatch.setattr(responders, "_borrowed_directions", lambda own, *args, **kwargs: own)
    alone = call_responders(salient, labels, "control", residuals=residuals, n_permutations=20).table
    alone = alone.set_index("perturbation")
    assert alone.loc["B", "detection_pvalue"] > 10 * table.loc["B", "detection_pvalue"]


def test_residual_t_test_matches_scipy_over_blocks(rng):
    from scipy.stats import ttest_ind

    from pertcontrast.analysis.differential import residual_moments, pooled_t_test

    values = rng.normal(0, rng.uniform(0.2, 2.0, 40), (500, 40))
    values[:200, :5] += 0.5
    values[:, 39] = 1.0  # constant on both sides: no test
    source = ArrayResiduals(values)  # served in blocks of 97 rows
    cells, null = residual_moments(source, np.arange(200)), residual_moments(source, np.arange(200, 500))
    assert cells.n == 200 and null.n == 300
    np.testing.assert_allclose(cells.mean, values[:200].mean(0))
    np.testing.assert_allclose(cells.variance, values[:200].var(0, ddof=1), atol=1e-12)
    difference, pvalue = pooled_t_test(cells, null)
    expected = ttest_ind(values[:200, :39], values[200:, :39])
    np.testing.assert_allclose(difference[:39], values[:200, :39].mean(0) - values[200:, :39].mean(0))
    np.testing.assert_allclose(pvalue[:39], expected.pvalue, rtol=1e-6)
    assert pvalue[39] == 1.0


def test_residual_test_sees_through_the_background_that_raw_expression_carries(rng):
    """On counts whose clones move a fifth of the genes, the test on the fit's residuals
    (what the DE calls use) gives perturbation A's 15 genes smaller p-values than the same
    test on raw log expression, and its p-values are uniform for 30 perturbations without
    an effect (they share one null, so a null gene that is extreme there is extreme in
    several: a few perturbations with a false call at BH 0.05 is the nominal rate)."""
    from pertcontrast.analysis.differential import ResidualMoments, residual_moments, pooled_t_test

    source, labels, _ = _count_screen(rng)
    depth = np.maximum(source.counts.sum(1, keepdims=True), 1.0)
    raw = np.log1p(source.counts / depth * 1e4)
    null_rows = np.flatnonzero(labels == "control")
    on_residuals = lambda rows: residual_moments(source, rows)  # noqa: E731
    on_raw = lambda rows: ResidualMoments(len(rows), raw[rows].mean(0), raw[rows].var(0, ddof=1))  # noqa: E731
    pvalues = lambda rows, moments: pooled_t_test(moments(rows), moments(null_rows))[1]  # noqa: E731
    a = np.flatnonzero(labels == "A")
    evidence = np.median(-np.log10(pvalues(a, on_residuals)[:15]))
    assert evidence > np.median(-np.log10(pvalues(a, on_raw)[:15])) and evidence > 10
    null = [pvalues(np.flatnonzero(labels == f"none{i}"), on_residuals) for i in range(30)]
    assert 0.005 < (np.concatenate(null) < 0.01).mean() < 0.015
    assert sum((benjamini_hochberg(p) < 0.05).any() for p in null) <= 8
