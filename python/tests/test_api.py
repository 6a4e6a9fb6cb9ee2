"""The scvi-tools-shaped Python API of ContrastiveModel: set-up from a layer, latents,
normalised expression, DE, responders, save/load, repr. The analyses must give what the
pipeline steps give on the same cells (same nulls: decoys and unseen controls)."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pertcontrast.errors import InputDataError, OutputExistsError, ParameterError
from pertcontrast import ContrastiveModel

EPOCHS = 2


def snapshot(adata) -> dict:
    """What a method could change in an AnnData."""
    return {"obs": list(adata.obs.columns), "obsm": sorted(adata.obsm), "layers": sorted(adata.layers),
            "uns": sorted(adata.uns), "var": list(adata.var.columns), "X": id(adata.X),
            "obs_values": adata.obs.copy()}


def assert_unchanged(adata, before: dict) -> None:
    after = snapshot(adata)
    pd.testing.assert_frame_equal(after.pop("obs_values"), before["obs_values"])
    assert after == {k: v for k, v in before.items() if k != "obs_values"}


@pytest.fixture(scope="module")
def layered(tiny_prepared):
    """The tiny screen as scverse keeps it: log-normalised values in X, raw counts in
    layers["counts"] (both sparse)."""
    counts = tiny_prepared.X.copy()
    normalised = sp.csr_matrix(counts.multiply(1e4 / counts.sum(axis=1)))
    normalised.data = np.log1p(normalised.data).astype(np.float32)
    adata = ad.AnnData(X=normalised, obs=tiny_prepared.obs.copy(), var=tiny_prepared.var.copy(),
                       layers={"counts": counts}, uns={"pertcontrast": dict(tiny_prepared.uns["pertcontrast"])})
    return adata


@pytest.fixture(scope="module")
def api_model(layered):
    model = ContrastiveModel.setup_anndata(layered, layer="counts", n_hidden=16, seed=3)
    model.train(max_epochs=EPOCHS, batch_size=128, seed=3, progress=False, device="cpu")
    return model


def test_setup_anndata_reads_a_layer_in_place_and_trains_as_on_x(layered, tiny_prepared):
    before = snapshot(layered)
    model = ContrastiveModel.setup_anndata(layered, layer="counts", n_hidden=16, seed=3)
    assert model.adata.X is layered.layers["counts"]  # the same sparse matrix: no copy, no densifying
    assert sp.issparse(model.adata.X)
    model.train(max_epochs=EPOCHS, batch_size=128, seed=3, progress=False, device="cpu")
    assert_unchanged(layered, before)
    on_x = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16, seed=3)
    on_x.train(max_epochs=EPOCHS, batch_size=128, seed=3, progress=False, device="cpu")
    np.testing.assert_array_equal(model.get_latent_representation(), on_x.get_latent_representation())


def test_setup_anndata_takes_covariates_by_key(tiny_prepared):
    adata = tiny_prepared.copy()
    adata.obs["depth"] = np.log(np.asarray(adata.X.sum(axis=1)).ravel())
    model = ContrastiveModel.setup_anndata(adata, batch_key="batch", categorical_covariate_keys=[],
                                           continuous_covariate_keys=["depth"])
    assert list(model.encoding.categorical_covariates) == ["batch"]
    assert list(model.encoding.continuous_covariates) == ["depth"]
    assert model.architecture.n_covariates == adata.obs["batch"].nunique() + 1


def test_a_missing_layer_is_a_clear_error(layered):
    with pytest.raises(InputDataError, match=r"no layer 'raw' \(layers: counts\)"):
        ContrastiveModel.setup_anndata(layered, layer="raw")


def test_latent_representation_is_stored_only_when_asked(api_model, layered):
    before = snapshot(layered)
    salient = api_model.get_latent_representation()
    background = api_model.get_latent_representation(layered, representation_kind="background")
    assert salient.shape == (layered.n_obs, api_model.architecture.n_salient)
    assert background.shape == (layered.n_obs, api_model.architecture.n_background)
    np.testing.assert_array_equal(salient, api_model.latents(api_model.adata, device="cpu")["salient"])
    assert_unchanged(layered, before)
    sampled = api_model.get_latent_representation(give_mean=False, seed=1)
    assert sampled.shape == salient.shape and not np.allclose(sampled, salient)

    copy = layered.copy()
    api_model.get_latent_representation(copy, store=True)
    api_model.get_latent_representation(copy, representation_kind="background", store=True)
    np.testing.assert_array_equal(copy.obsm["X_salient"], salient)
    np.testing.assert_array_equal(copy.obsm["X_background"], background)
    with pytest.raises(ParameterError, match="representation_kind must be one of 'salient', 'background'"):
        api_model.get_latent_representation(representation_kind="target")


def test_normalized_expression_kinds(api_model, layered):
    before = snapshot(layered)
    observed = api_model.get_normalized_expression()
    counterfactual = api_model.get_normalized_expression(kind="counterfactual")
    free = api_model.get_normalized_expression(kind="background_free", max_cells=50, n_reference=20)
    assert_unchanged(layered, before)
    assert list(observed.columns) == list(api_model.encoding.gene_names)
    assert list(observed.index) == list(layered.obs_names)
    np.testing.assert_allclose(observed.sum(axis=1), 1e4, rtol=1e-3)  # expression per 10k counts
    np.testing.assert_allclose(counterfactual.sum(axis=1), 1e4, rtol=1e-3)
    control = (layered.obs["perturbation"] == "control").to_numpy()
    # controls have no salient latent: unperturbed, they are their own fit
    np.testing.assert_allclose(observed[control], counterfactual[control], rtol=1e-5)
    assert not np.allclose(observed[~control], counterfactual[~control], rtol=1e-3)
    assert free.shape == (50, layered.n_vars) and set(free.index) <= set(layered.obs_names)
    assert isinstance(api_model.get_normalized_expression(kind="counterfactual", max_cells=5, return_numpy=True),
                      np.ndarray)
    with pytest.raises(ParameterError, match="kind must be one of 'observed', 'counterfactual', 'background_free'"):
        api_model.get_normalized_expression(kind="denoised")


@pytest.fixture(scope="module")
def exported(api_model, tiny_prepared, tmp_path_factory):
    """The same model through the pipeline steps: saved, exported (the split column)."""
    from pertcontrast.steps.export import export_file

    folder = tmp_path_factory.mktemp("api")
    api_model.save(folder / "model")
    loaded = ContrastiveModel.load(folder / "model")
    export_file(tiny_prepared.write_h5ad(folder / "prepared.h5ad") or folder / "prepared.h5ad", loaded,
                folder / "latents.h5ad", device="cpu")
    return folder


DE_SETTINGS = {"n_samples": 4, "max_cells_per_perturbation": 60, "max_control_cells": 200}


def test_differential_expression_is_the_de_step_with_scvi_names(api_model, layered, exported):
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import COLUMNS
    from pertcontrast.steps.analysis import de_file

    perturbations = sorted(set(layered.obs["perturbation"]) - {"control"})[:2]
    before = snapshot(layered)
    table = api_model.differential_expression(perturbations=perturbations, device="cpu", **DE_SETTINGS)
    assert_unchanged(layered, before)
    step = de_file(exported / "prepared.h5ad", ContrastiveModel.load(exported / "model"), exported / "de",
                   DESettings(**DE_SETTINGS), device="cpu", perturbations=perturbations).table
    pd.testing.assert_frame_equal(table[COLUMNS], step[COLUMNS])
    assert len(table) == 2 * layered.n_vars
    np.testing.assert_array_equal(table["proba_de"], table["prob_de"])
    np.testing.assert_array_equal(table["lfc_std"], table["lfc_sd"])
    np.testing.assert_array_equal(table["bayes_factor_log10"], table["bayes_factor"])
    np.testing.assert_allclose(table["lnbayes_factor"], table["bayes_factor"] * math.log(10.0))
    with pytest.raises(InputDataError, match=r"call model.call_responders\(adata, store=True\) first"):
        api_model.differential_expression(perturbations=perturbations, responders_only=True)


def test_responders_are_the_responders_step(api_model, layered, exported):
    from pertcontrast.steps.analysis import responders_file

    before = snapshot(layered)
    calls = api_model.call_responders(device="cpu")
    assert_unchanged(layered, before)
    step = responders_file(exported / "prepared.h5ad", exported / "latents.h5ad", exported / "responders.h5ad",
                           model=api_model, device="cpu")
    assert (step.table["score_space"] == "expression").all()
    np.testing.assert_allclose(calls.cells["responder_score"], step.score, rtol=1e-5, equal_nan=True)
    assert list(calls.cells["responder_call"]) == list(step.call)
    pd.testing.assert_frame_equal(calls.perturbations[["perturbation", "n_cells", "effect_detected"]],
                                  step.table[["perturbation", "n_cells", "effect_detected"]])
    # the null is the decoy controls, not the controls trained as controls
    assert step.table.attrs["n_null_controls"] == api_model.training["n_decoy"]
    copy = layered.copy()
    api_model.call_responders(copy, store=True, device="cpu")
    assert {"responder_score", "responder_probability", "responder_call"} <= set(copy.obs)
    assert copy.obs["responder_call"].dtype.name == "category"


def test_save_refuses_a_folder_with_files_unless_overwrite(api_model, tmp_path):
    (tmp_path / "empty").mkdir()
    api_model.save(tmp_path / "empty")  # an empty folder is fine
    with pytest.raises(OutputExistsError, match="exists and is not empty; pass overwrite=True"):
        api_model.save(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        api_model.save(tmp_path / "other")
    api_model.save(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "other" / "config.json").exists()


def test_load_with_adata_uses_the_recorded_layer(api_model, layered, tmp_path):
    api_model.save(tmp_path / "m")
    loaded = ContrastiveModel.load(tmp_path / "m", adata=layered)
    assert loaded.layer == "counts" and loaded.is_trained
    np.testing.assert_array_equal(loaded.get_latent_representation(), api_model.get_latent_representation())
    without = ContrastiveModel.load(tmp_path / "m")
    with pytest.raises(ParameterError, match="no AnnData to analyse"):
        without.get_latent_representation()
    with pytest.raises(Exception, match=r"genes are missing"):
        ContrastiveModel.load(tmp_path / "m", adata=layered[:, 5:].copy())


def test_repr_and_is_trained(tiny_prepared, api_model):
    fresh = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16)
    assert not fresh.is_trained
    text = repr(fresh)
    assert text.startswith("ContrastiveModel: not trained")
    assert f"{tiny_prepared.n_vars} genes" in text and "background 32, salient 10" in text
    assert f"{tiny_prepared.obs['perturbation'].nunique() - 1} perturbations" in text
    assert "covariates: batch" in text and "counts in X" in text
    assert api_model.is_trained
    assert repr(api_model).startswith(f"ContrastiveModel: trained ({EPOCHS} epochs")
    assert "counts in layers['counts']" in repr(api_model)
