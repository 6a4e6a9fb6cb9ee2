"""Opening a tracking store: the client, the experiment, one-line failure reasons."""

from __future__ import annotations

import contextlib
import os
import re

from pertcontrast.errors import TrackingError
from pertcontrast.tracking.uris import CHECK_LIMITS, http_limits, redact, restored_environment, scrub


HOST_REJECTED = "the server rejected the host name of the URI; add it to the server's --allowed-hosts"


def failure_reason(error: BaseException) -> str:
    """A short, credential-free reason for a failed MLflow call."""
    text = str(error)
    if "Invalid Host header" in text:
        return HOST_REJECTED
    match = re.search(r"failed with error code (\d{3})", text)
    status = int(match[1]) if match else getattr(error, "get_http_status_code", lambda: None)()
    if status == 401:
        return "credentials rejected (HTTP 401)"
    if status == 403:
        return "permission denied (HTTP 403)"
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Failed to resolve", "host name not found"),
        ("Name or service not known", "host name not found"),
        ("timed out", "timed out"),
        ("RemoteDisconnected", "connection closed by the server"),
        ("Connection aborted", "connection closed by the server"),
        ("too many 5", "the server keeps failing (HTTP 5xx)"),
        ("Max retries exceeded", "server not answering"),
    ):
        if needle in text:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return scrub(first[:300])


def refusal_message(uri: str, reason: str) -> str | None:
    """For a server that answers but refuses us (credentials, host name): the error to
    show; None for other failures. Such servers are a set-up error, never 'offline'."""
    if reason.startswith("credentials rejected") or reason.startswith("permission denied"):
        return (
            f"MLflow tracking server {redact(uri)} refused the request ({reason}); set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment to an account with access."
        )
    if reason == HOST_REJECTED:
        return f"MLflow tracking server {redact(uri)} refused the request: {reason}."
    return None


def make_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created if needed (safe when tasks race to create it)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment '{name}' is deleted; restore it in the MLflow UI or use {{param:experiment_name}}."
            )
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_store(uri: str, experiment_name: str, artifact_location: str | None = None):
    """(client, experiment id), checked with short timeouts; raises TrackingError with a
    one-line reason (``.reason`` holds it) when the store cannot be used."""
    with http_limits(CHECK_LIMITS, override=True):
        try:
            client = make_client(uri)
            return client, experiment_id(client, experiment_name, artifact_location)
        except TrackingError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means the store is unusable
            reason = failure_reason(error)
            failure = TrackingError(f"MLflow tracking store {redact(uri)} cannot be used ({reason}).")
            failure.reason = reason
            raise failure from error


@contextlib.contextmanager
def scoped_tracking_uri(uri: str, experiment_id: str | None = None):
    """MLflow's model logging and registration read the global tracking URI and the
    active experiment: set both for the block only (and keep its progress bars and
    logging hints quiet)."""
    import warnings

    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    with restored_environment(names):
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        if experiment_id is not None:
            os.environ["MLFLOW_EXPERIMENT_ID"] = str(experiment_id)
        with _use_tracking_uri(uri), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*input example", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*input_example", category=UserWarning)
            yield
