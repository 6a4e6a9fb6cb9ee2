"""Analysis quality on a simulated standard screen with known truth (issue 5).

One model is trained per session with the default settings on the standard preset
(15,000 cells; the issue asks for these numbers there: on 8,000 cells and 60 epochs the
escaper AUROC moved between 0.85 and 0.92 with float rounding alone); responders, DE and
clusters are computed once and scored:

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
MAX_FALSE_DISCOVERIES_PER_RUN = 2  # per no-effect perturbation and DE seed


@pytest.fixture(scope="module")
def trained():
    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast.model import ContrastiveModel

    screen = simulate("standard", seed=0)
    prepared, _ = preprocess(screen, PreprocessSettings("perturbation", "control", batch_key="batch"))
    model = ContrastiveModel.from_anndata(prepared)
    model.train(progress=False, device="cpu")
    return model, prepared


@pytest.fixture(scope="module")
def analysed(trained):
    from pertcontrast.analysis.clustering import cluster_perturbations, salient_profiles
    from pertcontrast.analysis.responders import call_responders

    model, prepared = trained
    adata = prepared.copy()
    latents = model.latents(adata, device="cpu")
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    result = call_responders(latents["salient"], labels, "control")
    adata.obsm["X_salient"] = latents["salient"]
    adata.obs["responder_probability"] = result.probability
    adata.obs["responder_call"] = result.call
    clusters, _ = cluster_perturbations(*salient_profiles(latents["salient"], labels, "control"))
    return adata, clusters


@pytest.fixture(scope="module")
def de_table(trained, analysed):
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    model, _ = trained
    adata, _ = analysed
    return differential_expression(model, adata, DESettings(seed=0), device="cpu").table


@pytest.fixture(scope="module")
def null_de_runs(trained, analysed):
    """DE of the no-effect perturbations only, for several seeds, on all cells and on the
    cells called responders."""
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression

    model, _ = trained
    adata, _ = analysed
    truth = truth_table(adata)
    nulls = [p for p in truth.index if not truth.loc[p, "has_effect"]]
    runs = {}
    for seed in DE_SEEDS:
        for only in (False, True):
            settings = DESettings(seed=seed, responders_only=only)
            table = differential_expression(model, adata, settings, device="cpu", perturbations=nulls).table
            runs[(seed, "responders" if only else "all cells")] = table
    return runs


def test_model_de_ranks_affected_genes_at_least_as_well_as_wilcoxon(de_table, analysed):
    adata, _ = analysed
    metrics = de_metrics(de_table, adata)
    mean = metrics.loc["mean"]
    print("\nDE per perturbation:\n", metrics.round(3).to_string())
    print(f"model AUROC {mean.model_auroc:.3f} AUPRC {mean.model_auprc:.3f}; "
          f"Wilcoxon AUROC {mean.wilcoxon_auroc:.3f} AUPRC {mean.wilcoxon_auprc:.3f}")
    assert mean.model_auprc >= mean.wilcoxon_auprc


def test_escapers_are_detected(analysed):
    adata, _ = analysed
    auroc = escaper_auroc(adata.obs)
    print(f"\nescaper AUROC {auroc:.3f}")
    assert auroc >= 0.9


def test_perturbation_clusters_recover_the_programs(analysed):
    adata, clusters = analysed
    ari = cluster_ari(clusters, adata)
    print(f"\nperturbation cluster ARI {ari:.3f}\n", clusters.to_string())
    assert ari >= 0.8


def test_no_effect_perturbations_get_few_de_genes(null_de_runs, analysed):
    adata, _ = analysed
    counts = {key: false_discoveries(table, adata) for key, table in null_de_runs.items()}
    print("\nfalse discoveries (no-effect perturbation: genes called) per (DE seed, cells):", counts)
    runs = np.array([n for per_run in counts.values() for n in per_run.values()])
    assert np.mean(runs == 0) >= 0.75  # most runs call nothing
    assert runs.max() <= MAX_FALSE_DISCOVERIES_PER_RUN
