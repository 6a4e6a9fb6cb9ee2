"""Analysis quality on a simulated standard screen with known truth (issue 5).

Two models are trained per session (training seeds 0 and 1) with the default settings on
the standard preset (15,000 cells; the issue asks for these numbers there: on 8,000 cells
and 60 epochs the escaper AUROC moved between 0.85 and 0.92 with float rounding alone);
responders, DE and clusters are computed for each and scored, the scores averaged over the
two:

- DE: AUROC/AUPRC of the model ranking (prob_de) against the truly affected genes,
  averaged over perturbations with an effect, and the same for Wilcoxon; the model's
  AUPRC must not be below Wilcoxon's.
- Responders: escaper detection AUROC (responder_probability, truth_responder vs
  truth_escaper among cells of perturbations with an effect) >= 0.9.
- Perturbation clusters vs the true programs ('none' for no effect): ARI >= 0.8.
- Perturbations without an effect: DE calls at FDR 0.05 counted over several DE seeds
  (subsamples and posterior samples), on all cells and on the cells called responders.

Measured numbers are printed (run with -s to see them).
"""

import numpy as np
import pytest

from analysis_truth import cluster_ari, de_metrics, escaper_auroc, false_discoveries, truth_table

pytestmark = pytest.mark.slow

DE_SEEDS = (0, 1, 2)
# Two trainings, metrics averaged: one training's numbers move with float rounding alone.
# The likelihood in torch or in the C kernel (gradients equal to 3e-7 relative) gave, for
# training seed 0, DE AUPRC 0.947 / 0.922 and cluster ARI 0.93 / 0.83; for seed 1 0.946 /
# 0.951 and 0.96 / 0.95: a single run measures its trajectory, not the method.
TRAINING_SEEDS = (0, 1)
MAX_FALSE_DISCOVERIES_PER_RUN = 2  # per no-effect perturbation and DE seed


@pytest.fixture(scope="module")
def trained():
    """Models trained with the default settings from each training seed, and their data."""
    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast.model import ContrastiveModel

    screen = simulate("standard", seed=0)
    prepared, _ = preprocess(screen, PreprocessSettings("perturbation", "control", batch_key="batch"))
    models = {}
    for seed in TRAINING_SEEDS:
        model = ContrastiveModel.from_anndata(prepared)
        model.train(progress=False, device="cpu", seed=seed)
        models[seed] = model
    return models, prepared


@pytest.fixture(scope="module")
def analysed(trained):
    """Per training seed: the data with latents and responder calls, and the clusters."""
    from pertcontrast.analysis.clustering import cluster_perturbations, salient_profiles
    from pertcontrast.analysis.responders import call_responders

    models, prepared = trained
    results = {}
    for seed, model in models.items():
        adata = prepared.copy()
        latents = model.latents(adata, device="cpu")
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        result = call_responders(latents["salient"], labels, "control")
        adata.obsm["X_salient"] = latents["salient"]
        adata.obs["responder_probability"] = result.probability
        adata.obs["responder_call"] = result.call
        clusters, _ = cluster_perturbations(*salient_profiles(latents["salient"], labels, "control"))
        results[seed] = (adata, clusters)
    return results


@pytest.fixture(scope="module")
def de_tables(trained, analysed):
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    models, _ = trained
    return {seed: differential_expression(model, analysed[seed][0], DESettings(seed=0), device="cpu").table
            for seed, model in models.items()}


@pytest.fixture(scope="module")
def null_de_runs(trained, analysed):
    """Per training seed, DE of the no-effect perturbations only, for several DE seeds, on
    all cells and on the cells called responders."""
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    models, _ = trained
    runs = {}
    for training_seed, model in models.items():
        adata = analysed[training_seed][0]
        truth = truth_table(adata)
        nulls = [p for p in truth.index if not truth.loc[p, "has_effect"]]
        for seed in DE_SEEDS:
            for only in (False, True):
                settings = DESettings(seed=seed, responders_only=only)
                table = differential_expression(model, adata, settings, device="cpu", perturbations=nulls).table
                runs[(training_seed, seed, "responders" if only else "all cells")] = table
    return runs


def test_model_de_ranks_affected_genes_at_least_as_well_as_wilcoxon(de_tables, analysed):
    model_auprc, wilcoxon_auprc = [], []
    for seed, table in de_tables.items():
        metrics = de_metrics(table, analysed[seed][0])
        mean = metrics.loc["mean"]
        print(f"\nDE per perturbation (training seed {seed}):\n", metrics.round(3).to_string())
        print(f"model AUROC {mean.model_auroc:.3f} AUPRC {mean.model_auprc:.3f}; "
              f"Wilcoxon AUROC {mean.wilcoxon_auroc:.3f} AUPRC {mean.wilcoxon_auprc:.3f}")
        model_auprc.append(mean.model_auprc)
        wilcoxon_auprc.append(mean.wilcoxon_auprc)
    assert np.mean(model_auprc) >= np.mean(wilcoxon_auprc)


def test_escapers_are_detected(analysed):
    aurocs = [escaper_auroc(adata.obs) for adata, _ in analysed.values()]
    print("\nescaper AUROC per training seed", np.round(aurocs, 3))
    assert np.mean(aurocs) >= 0.9


def test_perturbation_clusters_recover_the_programs(analysed):
    aris = []
    for seed, (adata, clusters) in analysed.items():
        aris.append(cluster_ari(clusters, adata))
        print(f"\nperturbation cluster ARI {aris[-1]:.3f} (training seed {seed})\n", clusters.to_string())
    assert np.mean(aris) >= 0.8


def test_no_effect_perturbations_get_few_de_genes(null_de_runs, analysed):
    counts = {key: false_discoveries(table, analysed[key[0]][0]) for key, table in null_de_runs.items()}
    print("\nfalse discoveries (no-effect perturbation: genes called) per (training seed, DE seed, cells):", counts)
    runs = np.array([n for per_run in counts.values() for n in per_run.values()])
    assert np.mean(runs == 0) >= 0.75  # most runs call nothing
    assert runs.max() <= MAX_FALSE_DISCOVERIES_PER_RUN
