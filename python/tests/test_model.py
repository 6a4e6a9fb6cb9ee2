"""The user-facing model: save/load round trip, gene alignment, export, resumable training."""

import json

import anndata as ad
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pertcontrast.cli import main
from pertcontrast.errors import ModelLoadError
from pertcontrast import ContrastiveModel
from pertcontrast.data.encoding import DataEncoding


def test_round_trip_gives_identical_latents(tiny_model, tiny_prepared, tmp_path):
    tiny_model.save(tmp_path / "model")
    loaded = ContrastiveModel.load(tmp_path / "model")
    before = tiny_model.latents(tiny_prepared, device="cpu")
    after = loaded.latents(tiny_prepared, device="cpu")
    for key in ("background", "salient", "salient_norm"):
        np.testing.assert_array_equal(before[key], after[key])
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["registry"]["gene_names"] == list(tiny_prepared.var_names)
    assert config["architecture"]["n_salient"] == 10
    assert config["pertcontrast_version"]
    assert (tmp_path / "model" / "history.csv").exists()


def test_latent_shapes_and_batching_do_not_change_results(tiny_model, tiny_prepared):
    full = tiny_model.latents(tiny_prepared, batch_size=5000, device="cpu")
    small = tiny_model.latents(tiny_prepared, batch_size=7, device="cpu")
    assert full["salient"].shape == (tiny_prepared.n_obs, 10)
    assert full["background"].shape == (tiny_prepared.n_obs, 32)
    np.testing.assert_allclose(full["salient"], small["salient"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full["salient_norm"], np.linalg.norm(full["salient"], axis=1), rtol=1e-6)


def test_genes_are_aligned_by_name(tiny_model, tiny_prepared):
    reordered = tiny_prepared[:, ::-1].copy()
    np.testing.assert_allclose(
        tiny_model.latents(reordered, device="cpu")["salient"],
        tiny_model.latents(tiny_prepared, device="cpu")["salient"], rtol=1e-5, atol=1e-6,
    )


def test_missing_genes_fail_naming_how_many_and_which(tiny_model, tiny_prepared):
    missing = tiny_prepared[:, 3:].copy()
    with pytest.raises(ModelLoadError, match=r"3 of the model's \d+ genes are missing") as error:
        tiny_model.latents(missing, device="cpu")
    assert str(tiny_prepared.var_names[0]) in str(error.value)


def test_incomplete_model_folder_is_refused(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="not a complete model folder"):
        ContrastiveModel.load(tmp_path / "m")


def test_weights_are_loaded_without_unpickling_code(tiny_model, tmp_path):
    """A weights file holding a pickled object is refused (weights_only=True)."""
    tiny_model.save(tmp_path / "m")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"evil": Payload()}, tmp_path / "m" / "model.pt")
    with pytest.raises(ModelLoadError, match="model.pt holds objects other than weights"):
        ContrastiveModel.load(tmp_path / "m")


def test_training_is_repeatable_with_a_seed(tiny_prepared):
    runs = []
    for _ in range(2):
        model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16, seed=5)
        model.train(max_epochs=2, batch_size=128, seed=5, progress=False, device="cpu")
        runs.append(model.latents(tiny_prepared, device="cpu")["salient"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_history_has_per_epoch_terms(tiny_model):
    history = tiny_model.history
    assert len(history) == 3
    for column in ("train_loss", "train_reconstruction", "train_kl_background", "train_kl_salient",
                   "train_wasserstein", "train_classification", "train_classifier_accuracy",
                   "train_independence", "validation_independence", "train_nuisance",
                   "validation_loss", "validation_reconstruction", "learning_rate", "kl_weight"):
        assert column in history, column
    assert np.isfinite(history["validation_loss"]).all()
    # the independence term is off by default; the nuisance term is on (the screen has cell-cycle scores)
    assert (history["train_independence"] == 0).all() and (history["train_nuisance"] > 0).any()


def test_the_independence_weight_reaches_the_loss(tiny_prepared):
    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=32)
    model.train(max_epochs=2, batch_size=128, progress=False, independence_weight=5.0)
    history = model.history
    assert np.isfinite(history["train_independence"]).all() and history["train_independence"].max() > 0
    assert model.training["settings"]["independence_weight"] == 5.0


def test_the_nuisance_term_targets_the_cell_cycle_scores_of_preprocess(tiny_prepared, caplog):
    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=32)
    scores = tiny_prepared.obs[["S_score", "G2M_score"]].to_numpy()
    assert list(model.encoding.nuisance_covariates) == ["S_score", "G2M_score"]
    np.testing.assert_allclose([m for m, _ in model.encoding.nuisance_covariates.values()], scores.mean(0), rtol=1e-6)
    encoded = model.encoding.encode_obs(tiny_prepared.obs, nuisance=True)["nuisance"]
    np.testing.assert_allclose(encoded, (scores - scores.mean(0)) / scores.std(0), rtol=1e-4, atol=1e-5)
    assert "nuisance" not in model.encoding.encode_obs(tiny_prepared.obs)  # new data needs no scores
    model.train(max_epochs=2, batch_size=128, progress=False, nuisance_weight=5.0)
    assert np.isfinite(model.history["train_nuisance"]).all() and model.history["train_nuisance"].max() > 0
    assert model.training["settings"]["nuisance_weight"] == 5.0
    # the encoding (with its nuisance columns) survives the config round trip
    assert DataEncoding.from_dict(model.encoding.to_dict()) == model.encoding
    without = ContrastiveModel.from_anndata(tiny_prepared.copy(), n_hidden=32, nuisance_keys=[])
    assert without.encoding.nuisance_covariates == {}
    with caplog.at_level("WARNING", logger="pertcontrast"):
        without.train(max_epochs=1, batch_size=128, progress=False, nuisance_weight=1.0)
    assert "nuisance term is off" in caplog.text and (without.history["train_nuisance"] == 0).all()


def test_train_and_export_commands(tiny_prepared, tmp_path):
    prepared = tmp_path / "prepared.h5ad"
    tiny_prepared.write_h5ad(prepared)
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(prepared), "--output", str(tmp_path / "model"), "--max-epochs", "2",
                                  "--n-hidden", "16", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "model" / "checkpoints").exists()
    result = runner.invoke(main, ["export", str(prepared), "--model", str(tmp_path / "model"),
                                  "--output", str(tmp_path / "latents.h5ad"), "--batch-size", "100", "--sample"])
    assert result.exit_code == 0, result.output
    latents = ad.read_h5ad(tmp_path / "latents.h5ad")
    assert latents.obsm["X_salient"].shape == (tiny_prepared.n_obs, 10)
    assert latents.obsm["X_background"].shape == (tiny_prepared.n_obs, 32)
    assert latents.obsm["X_salient_sample"].shape == (tiny_prepared.n_obs, 10)
    assert list(latents.obs.columns) == ["salient_norm", "pertcontrast_split"]
    assert latents.obs_names.equals(tiny_prepared.obs_names) and latents.X is None  # no copy of the counts
    assert latents.uns["pertcontrast_export"]["model_source"] == "folder"
    model = ContrastiveModel.load(tmp_path / "model")
    np.testing.assert_allclose(latents.obsm["X_salient"], model.latents(tiny_prepared, device="cpu")["salient"], rtol=1e-5)


def test_train_reads_settings_recorded_by_preprocess(tiny_prepared):
    model = ContrastiveModel.from_anndata(tiny_prepared)
    assert model.encoding.perturbation_key == "perturbation"
    assert model.encoding.control_label == "control"
    assert list(model.encoding.categorical_covariates) == ["batch"]
    assert model.architecture.n_covariates == tiny_prepared.obs.batch.nunique()


def test_a_format_1_model_folder_still_loads(tiny_model, tiny_prepared, tmp_path):
    """Folders of the first format (classifier outside the guide, always present) load
    with the same latents."""
    from dataclasses import replace

    from pertcontrast.module.contrastive import ContrastiveModule

    with_classifier = ContrastiveModule(replace(tiny_model.architecture, classifier=True))
    with_classifier.load_state_dict(tiny_model.module.state_dict(), strict=False)
    folder = tmp_path / "old"
    folder.mkdir()
    # format 1 kept the classifier's weights at the top level
    state = {key.removeprefix("inference."): value for key, value in with_classifier.state_dict().items()
             if key.startswith("inference.classifier.")}
    state.update({key: value for key, value in with_classifier.state_dict().items()
                  if not key.startswith("inference.classifier.")})
    torch.save(state, folder / "model.pt")
    config = tiny_model.config()
    config["format_version"] = 1
    config["architecture"].pop("classifier")
    (folder / "config.json").write_text(json.dumps(config))
    loaded = ContrastiveModel.load(folder)
    assert loaded.architecture.classifier
    np.testing.assert_array_equal(loaded.latents(tiny_prepared, device="cpu")["salient"],
                                  tiny_model.latents(tiny_prepared, device="cpu")["salient"])


def test_a_model_folder_of_an_unknown_format_is_refused_by_name(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="model folder format 99; this pertcontrast .* reads formats 1 to 2"):
        ContrastiveModel.load(tmp_path / "m")


def test_the_split_is_saved_and_marks_decoy_controls(tiny_model, tiny_prepared, tmp_path):
    tiny_model.save(tmp_path / "m")
    loaded = ContrastiveModel.load(tmp_path / "m")
    split = loaded.split_of(tiny_prepared.obs_names)
    assert set(split) == {"train", "validation", "decoy"}
    controls = tiny_prepared.obs["perturbation"].astype(str).to_numpy() == "control"
    assert not (split[~controls] == "decoy").any()
    assert 0.15 < (split[controls] == "decoy").mean() < 0.25
    assert (loaded.split_of(["a-cell-never-seen"]) == "new").all()
