"""Tracking faults lose nothing: a server down at start, a server killed during training,
and the later upload with ``pertcontrast mlflow sync`` (real servers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tracking_fixtures import MlflowServer, free_port, mlflow_server, private_mlflow_server  # noqa: F401 - fixtures

from pertcontrast.cli import main
from pertcontrast import ContrastiveModel

# Each module starts real MLflow servers (20-40 s each) and trains: run in CI.
pytestmark = pytest.mark.slow

TRAIN = ["--max-epochs", "2", "--n-hidden", "16", "--batch-size", "128", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def prepared_file(tiny_prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "screen_b.h5ad"
    tiny_prepared.write_h5ad(path)
    return path


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _steps(client, run_id, key="validation_loss"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_unreachable_server_fails_before_training(prepared_file, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    output = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", str(prepared_file), "-o", str(output), *TRAIN, "--mlflow-uri", dead])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [
        f"Error: MLflow tracking server {dead} (from --mlflow-uri) cannot be reached (connection refused); nothing "
        "was trained. Start the server or fix the URI, or pass --mlflow-offline-ok to log to the embedded store in "
        f"{output}/mlflow and upload later, or --no-mlflow."
    ]
    assert not (output / "model.pt").exists()


def test_server_refusing_the_host_name_is_an_error_even_offline_ok(prepared_file, tmp_path):
    """MLflow 3 answers 403 to Host headers outside --allowed-hosts: a set-up error, not 'offline'."""
    server = MlflowServer(tmp_path / "server", extra_args=("--allowed-hosts", "mlflow.example.org")).start()
    try:
        output = tmp_path / "model"
        result = CliRunner().invoke(main, ["train", str(prepared_file), "-o", str(output), *TRAIN,
                                           "--mlflow-uri", server.uri, "--mlflow-offline-ok"])
    finally:
        server.stop()
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        f"Error: MLflow tracking server {server.uri} refused the request: the server rejected the host name of "
        "the URI; add it to the server's --allowed-hosts."
    ]
    assert not (output / "model.pt").exists()


def test_offline_ok_logs_to_the_embedded_store_then_syncs(prepared_file, tmp_path, mlflow_server):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}"
    output = tmp_path / "model"
    result = CliRunner().invoke(main, [
        "train", str(prepared_file), "-o", str(output), *TRAIN, "--mlflow-uri", dead, "--mlflow-offline-ok",
        "--register-model", "offline-model", "--model-alias", "champion",
    ])
    assert result.exit_code == 0, result.output
    assert f"MLflow tracking server {dead} cannot be reached (connection refused); logging to the embedded store" in result.output
    assert f"pertcontrast mlflow sync {output} --mlflow-uri {dead}" in result.output
    record = json.loads((output / "mlflow_run.json").read_text())
    embedded = f"sqlite:///{output.resolve()}/mlflow/mlflow.db"
    assert record["tracking_uri"] == embedded
    local = _client(embedded)
    assert local.get_run(record["run_id"]).info.status == "FINISHED"
    assert _steps(local, record["run_id"]) == [1, 2]
    assert str(local.get_model_version_by_alias("offline-model", "champion").version) == "1"
    ContrastiveModel.load(output)

    result = CliRunner().invoke(main, ["mlflow", "sync", str(output), "--mlflow-uri", mlflow_server.uri])
    assert result.exit_code == 0, result.output
    synced = json.loads((output / "mlflow_run.json").read_text())
    server = _client(mlflow_server.uri)
    run = server.get_run(synced["run_id"])
    assert run.data.tags["pertcontrast.uploaded_by"] == "pertcontrast mlflow sync"
    assert run.data.params["data.n_cells"] == record["params"]["data.n_cells"]
    assert _steps(server, synced["run_id"]) == [1, 2]
    assert server.get_model_version_by_alias("offline-model", "champion").run_id == synced["run_id"]


def test_server_killed_during_training_loses_nothing(prepared_file, tmp_path, private_mlflow_server, capsys):  # noqa: F811
    from pertcontrast.steps.train import train_file
    from pertcontrast.tracking import TrackingOptions, TrainingTracker
    from pertcontrast.train.settings import TrainingSettings

    server = private_mlflow_server
    output = tmp_path / "model"
    options = TrackingOptions(uri=server.uri, experiment_name="faults", register_model="killed-model",
                              model_alias="champion")
    tracker = TrainingTracker.connect(options, output)

    def kill_after_first_epoch(row):
        if row["epoch"] == 2:  # epoch 1 has reached the server; epoch 2 will not
            server.kill()

    settings = TrainingSettings(max_epochs=3, batch_size=128)
    model, result = train_file(prepared_file, output, settings, {"n_hidden": 16}, device="cpu",
                               callbacks=(kill_after_first_epoch,), progress=False, tracker=tracker)
    assert len(result.history) == 3
    ContrastiveModel.load(output)  # the model is complete on disk
    record = json.loads((output / "mlflow_run.json").read_text())
    assert record["status"] == "FINISHED"
    assert record["offline_reason"] == "connection refused"
    assert [row["step"] for row in record["metrics"]] == [1, 2, 3]
    assert record["uploaded"]["metric_rows"] == 1
    assert f"pertcontrast mlflow sync {output} --mlflow-uri {server.uri}" in capsys.readouterr().err

    server.start()  # the same store, back on the same port
    client = _client(server.uri)
    assert _steps(client, record["run_id"]) == [1]
    assert client.get_run(record["run_id"]).info.status == "RUNNING"
    result = CliRunner().invoke(main, ["mlflow", "sync", str(output), "--mlflow-uri", server.uri])
    assert result.exit_code == 0, result.output
    run = client.get_run(record["run_id"])  # the same run, completed
    assert run.info.status == "FINISHED"
    assert _steps(client, record["run_id"]) == [1, 2, 3]
    history = [m.value for m in sorted(client.get_metric_history(record["run_id"], "train_loss"), key=lambda m: m.step)]
    np.testing.assert_allclose(history, result_history(output)["train_loss"])
    assert {a.path for a in client.list_artifacts(record["run_id"])} >= {"model_folder", "history.csv", "training_curves.png"}
    assert "summary.phase_predictability_salient" in run.data.metrics
    assert client.get_model_version_by_alias("killed-model", "champion").run_id == record["run_id"]

    again = CliRunner().invoke(main, ["mlflow", "sync", str(output), "--mlflow-uri", server.uri])
    assert again.exit_code == 0, again.output
    assert "nothing to upload" in again.output
    assert len(client.search_model_versions("name = 'killed-model'")) == 1


def result_history(output):
    import pandas as pd

    return pd.read_csv(output / "history.csv")


def test_failed_training_marks_the_run_failed(prepared_file, tmp_path):
    """An error during training (here from a callback) ends the run as FAILED, locally and
    in the store, with the epochs done so far; the error itself reaches the caller."""
    from pertcontrast.steps.train import train_file
    from pertcontrast.tracking import TrackingOptions, TrainingTracker
    from pertcontrast.train.settings import TrainingSettings

    output = tmp_path / "model"
    tracker = TrainingTracker.connect(TrackingOptions(), output)  # the embedded store

    def fail_after_first_epoch(row):
        if row["epoch"] == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        train_file(prepared_file, output, TrainingSettings(max_epochs=3, batch_size=128), {"n_hidden": 16},
                   device="cpu", callbacks=(fail_after_first_epoch,), progress=False, tracker=tracker)
    record = json.loads((output / "mlflow_run.json").read_text())
    assert record["status"] == "FAILED"
    run = _client(record["tracking_uri"]).get_run(record["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["pertcontrast.error"] == "disk full"
    assert _steps(_client(record["tracking_uri"]), record["run_id"]) == [1]


def test_resumed_training_gets_a_run_with_the_whole_history(prepared_file, tmp_path, monkeypatch):
    """A training process killed after epoch 2 (its run left RUNNING) is re-run into the
    same folder: it resumes from the checkpoint, the stale run is marked KILLED and the new
    run has every epoch, including those trained before the kill."""
    from pertcontrast.steps.train import train_file
    from pertcontrast.tracking import TrackingOptions, TrainingTracker
    from pertcontrast.train.settings import TrainingSettings

    output = tmp_path / "model"
    settings = TrainingSettings(max_epochs=3, batch_size=128)

    def killed_after_second_epoch(row):
        if row["epoch"] == 2:
            raise SystemExit("killed")  # stands in for SIGKILL: nothing after this runs

    first = TrainingTracker.connect(TrackingOptions(), output)
    monkeypatch.setattr(first, "fail", lambda error: None)
    with pytest.raises(SystemExit):
        train_file(prepared_file, output, settings, {"n_hidden": 16}, device="cpu",
                   callbacks=(killed_after_second_epoch,), progress=False, tracker=first)
    stale = json.loads((output / "mlflow_run.json").read_text())
    assert stale["status"] == "RUNNING"

    second = TrainingTracker.connect(TrackingOptions(), output)
    _, result = train_file(prepared_file, output, settings, {"n_hidden": 16}, device="cpu", progress=False,
                           tracker=second)
    assert result.resumed_from_epoch == 2
    record = json.loads((output / "mlflow_run.json").read_text())
    client = _client(record["tracking_uri"])
    assert record["run_id"] != stale["run_id"]
    assert client.get_run(stale["run_id"]).info.status == "KILLED"
    assert client.get_run(record["run_id"]).info.status == "FINISHED"
    assert _steps(client, record["run_id"]) == [1, 2, 3]
