"""Analysis quality judged on cells the model did not train on (issue 20).

A standard screen is simulated twice from the same design: the training cells, and new
cells (``cell_seed``: same truth, other cells). The model is trained with the defaults on
the first and every number below is measured on the second, its nulls from the new
controls; the training cells are scored too, against the decoy controls. PCA of
log-normalised counts is the reference for the salient space, and the naive |mean
difference of log-normalised expression| for the DE ranking.
"""

import numpy as np
import pytest

from pertcontrast.analysis.truth import (
    de_scores,
    effect_rates,
    escaper_auroc,
    false_de_genes,
    mean_difference_scores,
    perturbation_truth,
    representation_scores,
    responder_rates,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screens():
    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast import ContrastiveModel

    train = simulate("standard", seed=0)
    new = simulate("standard", seed=0, cell_seed=1)
    settings = PreprocessSettings("perturbation", "control", batch_key="batch")
    prepared, _ = preprocess(train.copy(), settings)
    # new cells pass the same QC, as new data goes through 'preprocess' before the model sees
    # it (with the low-quality cells the model never learned, 3 of 4 no-effect perturbations
    # were called on one training)
    new = new[preprocess(new.copy(), settings)[0].obs_names].copy()
    model = ContrastiveModel.from_anndata(prepared)
    model.train(progress=False, device="cpu")
    return model, prepared, train[prepared.obs_names].copy(), new


def calls(model, cells):
    """Latents, responders (scored over the genes on the model's residuals, as the steps
    do) and the effect tests of a set of cells, with the model's null."""
    from pertcontrast.analysis.cells import NULL_SPLITS, unmatched_cells
    from pertcontrast.analysis.decode import ExpressionResiduals
    from pertcontrast.analysis.responders import call_responders

    latents = model.latents(cells, device="cpu")
    labels = cells.obs["perturbation"].astype(str).to_numpy()
    split = model.split_of(cells.obs_names)
    null = (labels == "control") & np.isin(split, NULL_SPLITS)
    residuals = ExpressionResiduals(model, cells, "cpu", source="adata")
    return latents, null, call_responders(latents["salient"], labels, "control", null_controls=null,
                                          residuals=residuals, unmatched=unmatched_cells(split, labels == "control"))


@pytest.fixture(scope="module")
def new_cells(screens):
    model, _, _, new = screens
    return (new, *calls(model, new))


def test_the_salient_space_holds_the_program_and_not_the_background(screens, new_cells):
    from pertcontrast.analysis.predictability import log_normalised_pca

    _, prepared, _, _ = screens
    new, latents, _, _ = new_cells
    scores = representation_scores(latents["salient"], latents["background"], new.obs)
    pcs = log_normalised_pca(new[:, prepared.var_names].X)
    pca = representation_scores(pcs, pcs, new.obs)["program_from_salient"]
    print("\nnew cells:", {k: round(v, 3) for k, v in scores.items()}, "PCA program", round(pca, 3))
    assert scores["program_from_salient"] >= 2 * pca
    assert scores["program_from_salient"] >= 0.5
    assert scores["clone_in_salient"] <= 0.05 and scores["batch_in_salient"] <= 0.05
    # measured -0.000 with the defaults (the nuisance term on the cell-cycle scores), 0.045
    # without it
    assert scores["phase_in_salient"] <= 0.05
    assert scores["program_in_background"] <= 0.10


def test_responder_calls_separate_responders_from_escapers_and_no_effect_cells(new_cells):
    new, _, _, responders = new_cells
    truth = perturbation_truth(new)
    rates = responder_rates(np.asarray(responders.call) == "responder", new.obs, truth)
    auroc = escaper_auroc(responders.score, new.obs)
    auroc_probability = escaper_auroc(np.nan_to_num(responders.probability), new.obs)
    print("\nresponders on new cells:", {k: round(v, 3) for k, v in rates.items()}, "escaper AUROC", round(auroc, 3),
          "of the probability", round(auroc_probability, 3))
    # measured 0.989, TPR 0.979 / FPR 0.12 (the log residuals on two halves: 0.971, 0.927 / 0.11;
    # the salient latents alone: 0.93 / 0.80); the bar calls about 1 - 0.875 of the escapers
    assert auroc >= 0.975 and auroc_probability >= 0.9
    assert rates["responder_tpr"] >= 0.95 and rates["responder_fpr_escapers"] <= 0.15
    assert rates["responder_fpr_no_effect"] <= 0.05


def test_effects_are_called_for_programs_only_on_new_and_on_training_cells(screens, new_cells):
    model, _, train, _ = screens
    new, _, _, responders = new_cells
    truth = perturbation_truth(new)
    _, _, on_train = calls(model, train)
    rates = {}
    for test in ("energy_pvalue", "detection_pvalue"):  # the effects step's; the responders' own
        rates[test, "new"] = effect_rates(responders.table.set_index("perturbation")[test], truth)
        rates[test, "train"] = effect_rates(on_train.table.set_index("perturbation")[test], truth)
    print("\neffect calls (new cells; training cells with the decoy null):", rates)
    # Benjamini-Hochberg at 0.05 with 20 real effects among 24 lets a null p-value below
    # ~0.044 through: an odd false call (1 of the 4 no-effect perturbations) is what the
    # nominal FDR allows (seen in 3 of 8 trainings on the training cells, once on new cells)
    for rate in rates.values():
        assert rate["effect_fpr"] <= 0.25 and rate["effect_tpr"] >= 0.9


def test_de_over_every_gene_is_precise_and_ranks_like_the_naive_difference(screens, new_cells):
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    model, _, _, _ = screens
    new, _, null, _ = new_cells
    table = differential_expression(model, new, DESettings(), device="cpu", null_controls=null).table
    assert set(table["gene"]) == set(new.var_names) and (table["de_source"] == "wilcoxon").any()
    ours = de_scores(table, new, "de_score", "is_de")
    naive = mean_difference_scores(new.X.tocsr(), new.obs, new.var_names, new)
    false = false_de_genes(table, new)
    print("\nDE on new cells:", {k: round(v, 3) for k, v in ours.items()}, "naive AUROC", round(naive["de_auroc"], 3),
          "false DE genes", false)
    assert ours["de_auroc"] >= naive["de_auroc"] - 0.01
    assert ours["de_precision"] >= 0.9 and ours["de_recall"] >= 0.5
    # the residual test sees more than Wilcoxon on raw expression, at the same precision
    wilcoxon = de_scores(table.assign(score=1.0 - table["wilcoxon_padj"]), new, "score", "wilcoxon_is_de")
    print("Wilcoxon alone:", {k: round(v, 3) for k, v in wilcoxon.items()})
    assert ours["de_recall"] >= wilcoxon["de_recall"] and ours["de_precision"] >= wilcoxon["de_precision"] - 0.02
    assert max(false.values()) <= 2


def test_pseudo_perturbations_of_null_controls_call_nothing(screens, new_cells):
    from pertcontrast.analysis.calibration import CalibrationSettings, run_check, summary

    model, _, _, _ = screens
    new, latents, null, _ = new_cells
    labels = new.obs["perturbation"].astype(str).to_numpy()
    table = run_check(latents["salient"], labels, "control", null, CalibrationSettings(n_groups=4), model, new,
                      device="cpu")
    result = summary(table)
    print("\npseudo-perturbation check:", result, "\n", table.round(3).to_string())
    assert result["effects_called"] == 0 and result["responder_fraction"] <= 0.05
    assert result["model_called_fraction"] <= 0.05 and result["wilcoxon_called_fraction"] <= 0.05
