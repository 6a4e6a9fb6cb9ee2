"""Pure unit tests of the tracking helpers (no server, no MLflow calls)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pertcontrast.cli import main
from pertcontrast.errors import ModelLoadError, TrackingError
from pertcontrast.tracking.latent_table import latent_table
from pertcontrast.tracking.record import RunRecord
from pertcontrast.tracking.model_registry import ModelRef, parse_ref
from pertcontrast.tracking.uris import embedded_uri, http_limits, redact, resolve_uri, scrub


def test_redact_removes_user_and_password():
    assert redact("https://alice:pw@mlflow.example.org:5000/x") == "https://mlflow.example.org:5000/x"
    assert redact("http://token@host") == "http://host"
    assert redact("sqlite:////tmp/a@b/mlflow.db") == "sqlite:////tmp/a@b/mlflow.db"
    assert redact("http://host:5000") == "http://host:5000"


def test_scrub_removes_secret_environment_values(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-secret")
    cleaned = scrub({"a": "x hunter2-secret y", "b": ["http://u:p@h"], "c": 3})
    assert cleaned == {"a": "x *** y", "b": ["http://h"], "c": 3}


def test_uri_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_uri("http://option:1", tmp_path) == ("http://option:1", "uri")
    assert resolve_uri(None, tmp_path) == ("http://from-env:5000", "MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri, source = resolve_uri(None, tmp_path / "out")
    assert source == "embedded"
    assert uri == embedded_uri(tmp_path / "out") == f"sqlite:///{(tmp_path / 'out').resolve()}/mlflow/mlflow.db"


def test_http_limits_are_restored_and_user_values_win(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with http_limits():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"


@pytest.mark.parametrize("text, ref", [
    ("models:/screens@champion", ModelRef("screens", alias="champion")),
    ("screens/3", ModelRef("screens", version="3")),
    ("models:/team/screens/12", ModelRef("team/screens", version="12")),
    ("models:/screens/latest", ModelRef("screens", version="latest")),
])
def test_parse_model_reference(text, ref):
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["models:/screens", "screens@", "models:/m-123abc", ""])
def test_bad_model_reference_says_what_to_use(text):
    with pytest.raises(ModelLoadError, match="use models:/NAME@ALIAS or models:/NAME/VERSION"):
        parse_ref(text)


def test_record_round_trip_and_completeness(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-abc-123")
    record = RunRecord(experiment_name="e", run_name="r", tracking_uri="http://h",
                       params={"a": "1", "leak": "tok-abc-123"}, metrics=[{"step": 1, "timestamp": 1, "values": {"x": 1.0}}])
    record.save(tmp_path)
    assert "tok-abc-123" not in (tmp_path / "mlflow_run.json").read_text()
    loaded = RunRecord.load(tmp_path)
    assert loaded.params["leak"] == "***"
    assert not loaded.complete_on_server
    loaded.status = "FAILED"
    loaded.uploaded.terminated = True
    loaded.uploaded.params = ["a", "leak"]
    loaded.uploaded.metric_rows = 1
    assert loaded.complete_on_server


def test_missing_record_is_a_clear_error(tmp_path):
    with pytest.raises(TrackingError, match="no mlflow_run.json"):
        RunRecord.load(tmp_path)


def test_latent_table_names_missing_genes_and_covariates(tiny_model, tiny_prepared):
    counts = pd.DataFrame(tiny_prepared.X.toarray(), columns=tiny_prepared.var_names, index=tiny_prepared.obs_names)
    with pytest.raises(Exception, match="no column 'batch'"):
        latent_table(tiny_model, counts)
    counts["batch"] = tiny_prepared.obs["batch"].astype(str).to_numpy()
    table = latent_table(tiny_model, counts)
    latents = tiny_model.latents(tiny_prepared, device="cpu")
    np.testing.assert_allclose(table.filter(regex="^salient_").to_numpy(), latents["salient"], atol=1e-6)
    assert list(table.columns[:2]) == ["salient_1", "salient_2"]
    with pytest.raises(ModelLoadError, match=r"2 of the model's \d+ genes are missing \(" + tiny_prepared.var_names[0]):
        latent_table(tiny_model, counts.drop(columns=list(tiny_prepared.var_names[:2])))


@pytest.mark.parametrize("extra, message, code", [
    (["--tag", "novalue"], "'novalue' is not KEY=VALUE", 2),
    (["--no-mlflow", "--register-model", "m"], "--register-model/--model-alias need MLflow tracking", 2),
    (["--model-alias", "champion"], "--model-alias needs --register-model NAME", 1),
])
def test_train_tracking_option_errors(tiny_prepared, tmp_path, extra, message, code):
    path = tmp_path / "p.h5ad"
    tiny_prepared.write_h5ad(path)
    result = CliRunner().invoke(main, ["train", str(path), "-o", str(tmp_path / "m"), *extra])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (tmp_path / "m" / "model.pt").exists()


@pytest.mark.parametrize("message, reason", [
    ("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 403 != 200. "
     "Response body: 'Invalid Host header - possible DNS rebinding attack detected'",
     "the server rejected the host name of the URI; add it to the server's --allowed-hosts"),
    ("API request to endpoint /x failed with error code 401 != 200. Response body: 'You are not authenticated'",
     "credentials rejected (HTTP 401)"),
    ("API request to http://h/x failed with exception HTTPConnectionPool(host='h', port=1): Max retries exceeded "
     "with url: /x (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))",
     "connection refused"),
])
def test_failure_reasons_are_short_and_actionable(message, reason):
    from mlflow.exceptions import MlflowException

    from pertcontrast.tracking.store import failure_reason, refusal_message

    assert failure_reason(MlflowException(message)) == reason
    assert (refusal_message("http://u:p@h", reason) is None) == (reason == "connection refused")
    assert "u:p@" not in (refusal_message("http://u:p@h", reason) or "")


def test_registry_needs_a_tracking_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(main, ["registry", "list", "anything"])
    assert result.exit_code == 1
    assert "pass --mlflow-uri or set MLFLOW_TRACKING_URI" in result.output
