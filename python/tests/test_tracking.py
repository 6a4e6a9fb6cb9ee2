"""MLflow tracking against a real ``mlflow server``: the tracked run, the registry, the
pyfunc model, lookups, and credentials. Fault tests are in test_tracking_faults.py."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tracking_fixtures import mlflow_server  # noqa: F401 - fixture

from pertcontrast.cli import main
from pertcontrast import ContrastiveModel

# Each module starts real MLflow servers (20-40 s each) and trains: run in CI.
pytestmark = pytest.mark.slow

MODEL_NAME = "tiny-screen-model"
USERNAME, PASSWORD = "pc-user-7f3e21", "s3cret-pw-91ab77"
URI_PASSWORD = "uri-pw-5521xq"
EPOCHS = 3


@pytest.fixture(scope="module")
def prepared_file(tiny_prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "screen_a.h5ad"
    tiny_prepared.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def trained(mlflow_server, prepared_file, tmp_path_factory):  # noqa: F811
    """One tracked and registered training run through the CLI, with credentials in the
    environment and in the URI (the test server ignores them)."""
    output = tmp_path_factory.mktemp("trained") / "model"
    uri_with_password = mlflow_server.uri.replace("http://", f"http://uri-user:{URI_PASSWORD}@")
    args = [
        "train", str(prepared_file), "--output", str(output), "--max-epochs", str(EPOCHS), "--n-hidden", "16",
        "--batch-size", "128", "--device", "cpu", "--no-progress",
        "--mlflow-uri", uri_with_password, "--experiment-name", "tests", "--screen-id", "screen_a",
        "--register-model", MODEL_NAME, "--model-alias", "candidate", "--tag", "team=perturb",
        "--pipeline-run-name", "happy_turing", "--pipeline-session-id", "abc-123", "--pipeline-revision", "deadbeef",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", USERNAME)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((output / "mlflow_run.json").read_text())
    return {"output": output, "record": record, "cli_output": result.output, "uri": mlflow_server.uri}


@pytest.fixture()
def client(mlflow_server, monkeypatch):  # noqa: F811
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    return MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)


def test_run_has_params_tags_and_summary(trained, client, tiny_prepared):
    run = client.get_run(trained["record"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "screen_a"
    params = run.data.params
    expected = {
        "model.n_hidden": "16", "model.n_salient": "10", "model.likelihood": "zinb",
        "training.max_epochs": str(EPOCHS), "training.batch_size": "128", "training.learning_rate": "0.002",
        "data.n_cells": str(tiny_prepared.n_obs), "data.n_genes": str(tiny_prepared.n_vars),
        "data.n_perturbations": str(tiny_prepared.obs.perturbation.nunique() - 1),
        "data.n_controls": str(int((tiny_prepared.obs.perturbation == "control").sum())),
        "data.categorical_covariates": "batch", "preprocess.n_top_genes": "300",
        "resolved.device": "cpu", "resolved.max_epochs": str(EPOCHS),
    }
    assert {k: params.get(k) for k in expected} == expected
    assert params["version.torch"] and params["version.mlflow"] and params["version.pertcontrast"]
    tags = run.data.tags
    assert tags["pertcontrast.screen_id"] == "screen_a"
    assert (tags["pipeline.run_name"], tags["pipeline.session_id"], tags["pipeline.revision"]) == (
        "happy_turing", "abc-123", "deadbeef")
    assert tags["team"] == "perturb"
    metrics = run.data.metrics
    for name in ("phase", "batch"):
        for latent in ("salient", "background"):
            assert np.isfinite(metrics[f"summary.{name}_predictability_{latent}"])
    # the classifier is off by default: no accuracy to summarise
    assert "summary.final_validation_classifier_accuracy" not in metrics
    assert metrics["summary.epochs_run"] == EPOCHS


def test_the_prepared_screen_is_logged_as_the_runs_dataset(trained, client, tiny_prepared, prepared_file):
    run = client.get_run(trained["record"]["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "screen_a" and dataset.source_type == "local" and len(dataset.digest) == 16
    assert json.loads(dataset.source)["uri"] == str(prepared_file.resolve())
    assert json.loads(dataset.profile)["n_cells"] == tiny_prepared.n_obs
    assert {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]} == {"perturbation", "batch"}
    assert [(t.key, t.value) for t in dataset_input.tags] == [("mlflow.data.context", "training")]


def test_python_train_is_tracked_only_when_a_uri_is_set(mlflow_server, tiny_prepared, monkeypatch):  # noqa: F811
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16)
    result = model.train(max_epochs=2, batch_size=128, progress=False, device="cpu", tracking_uri=mlflow_server.uri,
                         experiment_name="python-api", run_name="notebook")
    run = client.get_run(result.extra["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "notebook"
    assert run.data.tags["mlflow.source.name"] == "ContrastiveModel.train"
    assert run.data.params["model.n_hidden"] == "16" and run.data.metrics["summary.epochs_run"] == 2
    assert [m.step for m in client.get_metric_history(run.info.run_id, "validation_loss")] == [1, 2]
    assert "model_folder" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.inputs.dataset_inputs[0].dataset.name == "notebook"
    experiment = client.get_experiment_by_name("python-api").experiment_id

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)  # the environment is enough
    result = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16).train(
        max_epochs=1, batch_size=128, progress=False, device="cpu", experiment_name="python-api")
    assert client.get_run(result.extra["mlflow_run_id"]).info.status == "FINISHED"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # and without either, nothing is tracked
    result = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16).train(
        max_epochs=1, batch_size=128, progress=False, device="cpu", experiment_name="python-api")
    assert "mlflow_run_id" not in result.extra
    assert len(client.search_runs([experiment])) == 2


def test_metric_history_has_one_value_per_epoch(trained, client):
    history = pd.read_csv(trained["output"] / "history.csv")
    run_id = trained["record"]["run_id"]
    for key in ("train_loss", "validation_loss", "train_reconstruction", "validation_kl_background",
                "validation_kl_salient", "learning_rate"):
        logged = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in logged] == list(range(1, EPOCHS + 1)), key
        np.testing.assert_allclose([m.value for m in logged], history[key].to_numpy(), rtol=1e-9)


def test_artifacts_hold_model_folder_history_and_plot(trained, client, tmp_path):
    run_id = trained["record"]["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"model_folder", "history.csv", "training_curves.png"} <= top
    folder = {a.path for a in client.list_artifacts(run_id, "model_folder")}
    assert folder == {"model_folder/config.json", "model_folder/model.pt", "model_folder/history.csv"}
    plot = client.download_artifacts(run_id, "training_curves.png", str(tmp_path))
    assert open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # The local copies are written first and stay.
    assert (trained["output"] / "training_curves.png").exists()


def test_model_is_registered_with_screen_tags_and_alias(trained, client, tiny_prepared):
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 1
    version = versions[0]
    assert version.run_id == trained["record"]["run_id"]
    assert version.tags["screen_id"] == "screen_a"
    assert version.tags["n_cells"] == str(tiny_prepared.n_obs)
    assert version.tags["n_genes"] == str(tiny_prepared.n_vars)
    assert "screen_a" in version.description
    assert client.get_model_version_by_alias(MODEL_NAME, "candidate").version == version.version


def test_registry_commands(trained, mlflow_server):  # noqa: F811
    runner = CliRunner()
    uri = ["--mlflow-uri", mlflow_server.uri]
    result = runner.invoke(main, ["registry", "promote", MODEL_NAME, "1", "--alias", "champion", *uri])
    assert result.exit_code == 0, result.output
    assert f"models:/{MODEL_NAME}@champion -> version 1" in result.output
    result = runner.invoke(main, ["registry", "list", MODEL_NAME, *uri])
    assert result.exit_code == 0, result.output
    row = [line for line in result.output.splitlines() if line.strip().startswith("1 ")][0]
    assert "candidate,champion" in row and "screen_a" in row and trained["record"]["run_id"] in row
    for spec in (f"{MODEL_NAME}@champion", f"{MODEL_NAME}/1", f"models:/{MODEL_NAME}/latest"):
        result = runner.invoke(main, ["registry", "show", spec, *uri])
        assert result.exit_code == 0, result.output
        assert f"models:/{MODEL_NAME}/1" in result.output
        assert "summary.phase_predictability_salient" in result.output
    result = runner.invoke(main, ["registry", "resolve", f"{MODEL_NAME}@champion", *uri])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"models:/{MODEL_NAME}/1"
    result = runner.invoke(main, ["registry", "show", f"{MODEL_NAME}@nope", *uri])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: models:/{MODEL_NAME}@nope: model '{MODEL_NAME}' has no alias 'nope' (aliases: candidate -> 1, "
        f"champion -> 1); set one with 'pertcontrast registry promote {MODEL_NAME} VERSION --alias nope' or use "
        f"models:/{MODEL_NAME}/VERSION."
    ]
    result = runner.invoke(main, ["registry", "promote", MODEL_NAME, "7", "--alias", "champion", *uri])
    assert result.exit_code == 1
    assert "has no version 7 (versions: 1)" in result.output


def test_pyfunc_by_alias_gives_the_packages_latents(trained, client, tiny_prepared):
    import mlflow

    runner = CliRunner()
    runner.invoke(main, ["registry", "promote", MODEL_NAME, "1", "--alias", "champion", "--mlflow-uri", trained["uri"]])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    counts = pd.DataFrame(tiny_prepared.X.toarray().astype("float32"), index=tiny_prepared.obs_names,
                          columns=tiny_prepared.var_names)
    counts = counts[counts.columns[::-1]]  # genes are matched by name, not position
    counts["batch"] = tiny_prepared.obs["batch"].astype(str).to_numpy()
    predicted = pyfunc.predict(counts)
    latents = ContrastiveModel.load(trained["output"]).latents(tiny_prepared, device="cpu")
    assert list(predicted.index) == list(tiny_prepared.obs_names)
    np.testing.assert_allclose(predicted.filter(regex="^salient_").to_numpy(), latents["salient"], atol=1e-5)
    np.testing.assert_allclose(predicted.filter(regex="^background_").to_numpy(), latents["background"], atol=1e-5)
    inputs = pyfunc.metadata.get_input_schema().input_names()
    assert set(tiny_prepared.var_names) | {"batch"} == set(inputs)
    # raw integer counts, and a pandas sparse table, give the same latents
    integer = counts.astype({gene: "int64" for gene in tiny_prepared.var_names})
    np.testing.assert_allclose(pyfunc.predict(integer).to_numpy(), predicted.to_numpy(), atol=1e-6)
    sparse = pd.DataFrame.sparse.from_spmatrix(tiny_prepared.X, index=tiny_prepared.obs_names,
                                               columns=tiny_prepared.var_names)
    sparse["batch"] = counts["batch"]
    np.testing.assert_allclose(pyfunc.predict(sparse).to_numpy(), predicted.to_numpy(), atol=1e-6)
    with pytest.raises(Exception, match=r"3 of the model's \d+ genes are missing \(" + tiny_prepared.var_names[0]):
        pyfunc.predict(counts.drop(columns=list(tiny_prepared.var_names[:3])))


def test_export_with_registry_uri_records_the_resolved_model(trained, client, prepared_file, tmp_path):
    runner = CliRunner()
    uri = ["--mlflow-uri", trained["uri"]]
    runner.invoke(main, ["registry", "promote", MODEL_NAME, "1", "--alias", "champion", *uri])
    result = runner.invoke(main, ["export", str(prepared_file), "--model", f"models:/{MODEL_NAME}@champion",
                                  "--output", str(tmp_path / "lookup.h5ad"), "--experiment-name", "lookups", *uri])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", str(prepared_file), "--model", str(trained["output"]),
                                  "--output", str(tmp_path / "direct.h5ad")])
    assert result.exit_code == 0, result.output
    lookup, direct = ad.read_h5ad(tmp_path / "lookup.h5ad"), ad.read_h5ad(tmp_path / "direct.h5ad")
    np.testing.assert_array_equal(lookup.obsm["X_salient"], direct.obsm["X_salient"])
    np.testing.assert_array_equal(lookup.obsm["X_background"], direct.obsm["X_background"])
    info = lookup.uns["pertcontrast_export"]
    run_id = trained["record"]["run_id"]
    assert (info["model_name"], info["model_version"], info["model_alias"], info["model_run_id"]) == (
        MODEL_NAME, "1", "champion", run_id)
    lookup_run = client.get_run(info["lookup_run_id"])
    assert lookup_run.info.status == "FINISHED"
    assert lookup_run.data.tags["pertcontrast.run_type"] == "lookup"
    assert lookup_run.data.tags["pertcontrast.model_version"] == "1"
    assert lookup_run.data.params["model_run_id"] == run_id
    assert client.get_experiment(lookup_run.info.experiment_id).name == "lookups"
    # A pipeline pins the alias once ('registry resolve') and records what was asked for.
    result = runner.invoke(main, ["export", str(prepared_file), "--model", f"models:/{MODEL_NAME}/1",
                                  "--requested-model", f"models:/{MODEL_NAME}@champion",
                                  "--output", str(tmp_path / "pinned.h5ad"), "--no-mlflow", *uri])
    assert result.exit_code == 0, result.output
    pinned = ad.read_h5ad(tmp_path / "pinned.h5ad").uns["pertcontrast_export"]
    assert (pinned["model_uri"], pinned["model_resolved_uri"], pinned["model_alias"], pinned["lookup_run_id"]) == (
        f"models:/{MODEL_NAME}@champion", f"models:/{MODEL_NAME}/1", "champion", "")


def test_credentials_are_never_logged_or_written(trained, client):
    run = client.get_run(trained["record"]["run_id"])
    version = client.get_model_version_by_alias(MODEL_NAME, "candidate")
    logged = json.dumps([run.data.params, run.data.tags, version.tags, version.description])
    secrets = (USERNAME, PASSWORD, URI_PASSWORD)
    for secret in secrets:
        assert secret not in logged
        assert secret not in trained["cli_output"]
    for path in trained["output"].rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in content, path
    assert trained["record"]["tracking_uri"] == trained["uri"]  # user:password@ removed


def test_a_run_store_holds_every_run_and_can_be_moved(prepared_file, tmp_path, monkeypatch):
    """Training runs only recorded (--mlflow-record-only) go into one store; moved
    elsewhere, it still has the runs and their artifacts (no path of where it was built)."""
    import shutil
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    for screen in ("screen_a", "screen_b"):
        result = runner.invoke(main, ["train", str(prepared_file), "-o", str(tmp_path / screen), "--max-epochs", "1",
                                      "--n-hidden", "16", "--device", "cpu", "--no-progress", "--mlflow-record-only",
                                      "--screen-id", screen])
        assert result.exit_code == 0, result.output
        assert not (tmp_path / screen / "mlflow").exists()  # no store of its own
        assert json.loads((tmp_path / screen / "mlflow_run.json").read_text())["run_id"] is None
    (tmp_path / "report_a").mkdir()
    (tmp_path / "report_a" / "screen_a.report.html").write_text("<html></html>")
    build = tmp_path / "build" / "mlflow"
    result = runner.invoke(main, ["mlflow", "store", str(tmp_path / "screen_a"), str(tmp_path / "screen_b"),
                                  "-o", str(build), "--experiment-name", "screens",
                                  "--report", f"screen_a={tmp_path / 'report_a'}",
                                  "--dataset-source", "file:///published/{screen}/prepared.h5ad"])
    assert result.exit_code == 0, result.output
    assert "2 run(s) in experiment 'screens'" in result.output
    moved = tmp_path / "elsewhere"
    shutil.move(str(build), str(moved))
    shutil.rmtree(tmp_path / "build")
    assert str(tmp_path / "build").encode() not in (moved / "mlflow.db").read_bytes()
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    assert client.get_experiment("0").artifact_location == "mlflow-artifacts:/0"  # not this process's folder
    runs = client.search_runs([client.get_experiment_by_name("screens").experiment_id])
    by_screen = {run.data.tags["pertcontrast.screen_id"]: run for run in runs}
    assert sorted(by_screen) == ["screen_a", "screen_b"]
    for screen, run in by_screen.items():
        assert run.info.status == "FINISHED" and run.data.metrics["summary.epochs_run"] == 1
        dataset = run.inputs.dataset_inputs[0].dataset
        assert dataset.name == screen and json.loads(dataset.source)["uri"] == f"file:///published/{screen}/prepared.h5ad"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/screens/")
        artifacts = moved / "artifacts" / urlparse(run.info.artifact_uri).path.lstrip("/")
        assert json.loads((artifacts / "model_folder" / "config.json").read_text())["registry"]
        assert (artifacts / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
        assert (artifacts / "report" / "screen_a.report.html").exists() == (screen == "screen_a")
    assert list((moved / "artifacts" / "screens" / "models").glob("*/artifacts/MLmodel"))
