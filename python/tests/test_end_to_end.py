"""End to end through the command line on a simulated screen with known truth:
simulate -> preprocess -> train (defaults) -> export, then the numbers that say the method
works. Measured on responding perturbed cells, with a cross-validated 15-NN classifier
(balanced accuracy minus chance), as in the core issue."""

import numpy as np
import pytest
from click.testing import CliRunner

from pertcontrast.cli import main
from pertcontrast.analysis.predictability import knn_predictability, log_normalised_pca
from pertcontrast.steps.merge import read_merged

pytestmark = pytest.mark.slow

N_CELLS = 8000
MAX_EPOCHS = 60


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    invoke("simulate", "--preset", "standard", "--n-cells", N_CELLS, "--seed", 11, "--output", folder / "screen.h5ad")
    # fresh cells from the same screen design, never seen in training
    invoke("simulate", "--preset", "standard", "--n-cells", 3000, "--seed", 11, "--cell-seed", 1,
           "--output", folder / "heldout.h5ad")
    invoke("preprocess", folder / "screen.h5ad", "--perturbation-key", "perturbation", "--control-label", "control",
           "--batch-key", "batch", "--output", folder / "prepared.h5ad")
    invoke("train", folder / "prepared.h5ad", "--output", folder / "model", "--max-epochs", MAX_EPOCHS,
           "--device", "cpu", "--no-progress")
    invoke("export", folder / "prepared.h5ad", "--model", folder / "model", "--output", folder / "latents.h5ad")
    invoke("export", folder / "heldout.h5ad", "--model", folder / "model", "--output", folder / "heldout_latents.h5ad")
    return folder


def scores(adata, representation, columns):
    responders = adata.obs["truth_responder"].to_numpy()
    return {c: knn_predictability(representation[responders], adata.obs[c].to_numpy()[responders]) for c in columns}


@pytest.mark.parametrize(("cells", "which"), [("prepared.h5ad", "latents.h5ad"),
                                               ("heldout.h5ad", "heldout_latents.h5ad")])
def test_salient_space_holds_the_program_and_not_the_background(screen, cells, which):
    latents = read_merged(screen / cells, screen / which)
    columns = ["truth_program", "truth_phase", "truth_clone", "batch"]
    salient = scores(latents, latents.obsm["X_salient"], columns)
    background = scores(latents, latents.obsm["X_background"], columns)
    pca = scores(latents, log_normalised_pca(latents.X, n_components=50), ["truth_program"])
    print(which, "salient", salient, "background", background, "pca", pca)
    # (a) the perturbation program: far better from the salient space than from PCA
    assert salient["truth_program"] >= 2 * max(pca["truth_program"], 0.05)
    assert salient["truth_program"] >= 0.3
    # (b) the background: phase and clone live in the background space, not the salient one
    assert background["truth_phase"] >= 0.3 and background["truth_clone"] >= 0.3
    # phase leaks into the salient space on this small screen (8,000 cells, 60 epochs:
    # 0.24-0.25 vs 0.39-0.46 in the background with the default QC); the README's quality
    # table reports the leak as a miss, and test_analysis_quality.py holds 0.10 on the
    # standard screen
    assert salient["truth_phase"] < background["truth_phase"] and salient["truth_phase"] <= 0.30
    assert salient["truth_clone"] <= background["truth_clone"] / 2
    assert salient["batch"] <= 0.15


def test_controls_sit_nearer_the_origin_of_the_salient_space_than_responders(screen):
    """On the training cells and on cells the model never saw: the salient norm tells
    responders from controls. (The Wasserstein weight 1 pulls training controls to 0 less
    than 5 did, so their norm is judged against the responders', not against 0.)"""
    from sklearn.metrics import roc_auc_score

    for prepared, exported in (("prepared.h5ad", "latents.h5ad"), ("heldout.h5ad", "heldout_latents.h5ad")):
        obs = read_merged(screen / prepared, screen / exported).obs
        controls = obs["perturbation"].astype(str).to_numpy() == "control"
        responders = obs["truth_responder"].to_numpy(bool)
        norm = obs["salient_norm"].to_numpy()
        cells = controls | responders
        auroc = roc_auc_score(responders[cells], norm[cells])
        print(f"\n{prepared}: median salient norm controls {np.median(norm[controls]):.3f}, responders "
              f"{np.median(norm[responders]):.3f}, AUROC {auroc:.3f}")
        if prepared == "prepared.h5ad":
            assert auroc >= 0.9
            assert np.median(norm[controls]) < np.quantile(norm[responders], 0.25)
        else:  # new controls sit further out than trained ones (responder calls use the genes)
            assert auroc >= 0.7
