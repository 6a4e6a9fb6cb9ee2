"""Tracking URIs, credentials and network limits (no MLflow import here).

Credentials reach MLflow only through its own environment variables
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``...). Nothing we log, print or write
may contain them: URIs are shown with any ``user:password@`` removed, and every value we
send or store is scrubbed of the secret variables' values.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

EMBEDDED_FOLDER = "mlflow"
EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "artifacts"
# Secret values are replaced wherever they appear; the user name is not a secret (and
# scrubbing a common word would corrupt tags), and pertcontrast never reads or writes it.
SECRET_VARIABLES = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "DATABRICKS_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)
# Used while a run is live: a dead server costs seconds, not the minutes of MLflow's
# defaults (7 retries with exponential back-off, 120 s timeout). User settings win.
# (MLflow also prints run URLs to stdout, which would mix with our commands' output.)
RUN_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# Used for the reachability check before training.
CHECK_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@]*@")


def redact(uri: str | None) -> str | None:
    """``uri`` without ``user:password@`` (safe to log, print and store)."""
    if uri is None:
        return None
    return _USERINFO.sub(r"\g<scheme>", str(uri))


def embedded_uri(output: str | Path) -> str:
    """The embedded store of a model folder: SQLite under ``OUTPUT/mlflow``."""
    return "sqlite:///" + str((Path(output) / EMBEDDED_FOLDER / EMBEDDED_DB).resolve())


def embedded_artifact_root(output: str | Path) -> str:
    return (Path(output) / EMBEDDED_FOLDER / EMBEDDED_ARTIFACTS).resolve().as_uri()


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def ui_command(uri: str) -> str:
    """How to browse a local store."""
    return f"mlflow ui --backend-store-uri {redact(uri)}"


def resolve_uri(option: str | None, output: str | Path | None = None) -> tuple[str, str]:
    """(uri, where it came from): ``option`` (from "uri", the setting), ``MLFLOW_TRACKING_URI``, or
    the embedded store beside ``output``; with no ``output`` (the registry needs a server) a
    TrackingError."""
    if option:
        return option, "uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    if output is None:
        from pertcontrast.errors import TrackingError

        raise TrackingError("the model registry needs a tracking server: pass {param:uri} or set MLFLOW_TRACKING_URI.")
    return embedded_uri(output), "embedded"


def secret_values() -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    return [v for v in values if len(v) >= 4]


def scrub(value):
    """``value`` (str, or dict/list of them) with secret values and URI user info removed."""
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if not isinstance(value, str):
        return value
    value = _USERINFO.sub(r"\g<scheme>", value) if "://" in value else value
    for secret in secret_values():
        value = value.replace(secret, "***")
    return value


@contextlib.contextmanager
def http_limits(limits: dict[str, str] = RUN_LIMITS, override: bool = False):
    """Set MLflow's HTTP retry/timeout variables for the calls inside (restored after).
    Values the user set win unless ``override``."""
    with restored_environment(limits) as saved:
        for name, value in limits.items():
            if override or saved[name] is None:
                os.environ[name] = value
        yield


@contextlib.contextmanager
def restored_environment(names):
    """Yields the current values of the environment variables ``names`` (None when unset)
    and puts them back, unset ones unset, when the block ends."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield saved
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
