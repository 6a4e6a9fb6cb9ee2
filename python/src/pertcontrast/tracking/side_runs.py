"""Small runs around the main one: the lookup run of an export with a registered model,
and attaching a report to an existing run."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from pertcontrast.tracking.uris import http_limits, redact

log = logging.getLogger("pertcontrast")


@contextlib.contextmanager
def lookup_run(info: dict, input_path, output, uri: str, experiment_name: str = "pertcontrast"):
    """Record an export that used a registered model as a run of its own (type
    ``lookup``), with the resolved name, version and source run id. Adds
    ``lookup_run_id`` to ``info`` (so the output records it too) and yields it. The run is
    marked FINISHED or FAILED with the export; tracking problems only warn."""
    from mlflow.entities import Param

    from pertcontrast.tracking.store import failure_reason, open_store

    client, run_id = None, None
    try:
        client, experiment = open_store(uri, experiment_name)
        with http_limits():
            run = client.create_run(experiment, run_name=f"lookup {Path(str(input_path)).stem}", tags={
                "pertcontrast.run_type": "lookup",
                "mlflow.source.name": "pertcontrast export",
                "pertcontrast.model_name": info.get("model_name", ""),
                "pertcontrast.model_version": info.get("model_version", ""),
                "pertcontrast.model_alias": info.get("model_alias", ""),
                "pertcontrast.model_run_id": info.get("model_run_id", ""),
            })
            run_id = run.info.run_id
            params = {"model_uri": info.get("model_uri", ""), "model_name": info.get("model_name", ""),
                      "model_version": info.get("model_version", ""), "model_run_id": info.get("model_run_id", ""),
                      "input": str(input_path), "output": str(output)}
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    except Exception as error:  # noqa: BLE001 - the export itself must not fail on tracking
        log.warning("the lookup was not recorded in MLflow at %s (%s)", redact(uri), failure_reason(error))
        run_id = None
    info["lookup_run_id"] = run_id or ""
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        if run_id is not None:
            try:
                with http_limits():
                    client.set_terminated(run_id, status)
            except Exception as error:  # noqa: BLE001
                log.warning("could not close the lookup run %s (%s)", run_id, failure_reason(error))


def log_report(run_id: str, path, tracking_uri: str | None = None, artifact_path: str = "report") -> bool:
    """Attach a report (file or folder) to run ``run_id``; returns False (with a warning)
    when the server cannot take it, so a report step never fails on tracking."""
    from pertcontrast.tracking.model_registry import tracking_uri as resolve
    from pertcontrast.tracking.store import failure_reason, make_client

    uri = resolve(tracking_uri)
    path = Path(path)
    try:
        with http_limits():
            client = make_client(uri)
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path)
            else:
                client.log_artifact(run_id, str(path), artifact_path)
        return True
    except Exception as error:  # noqa: BLE001
        log.warning("the report %s was not attached to MLflow run %s at %s (%s)",
                    path, run_id, redact(uri), failure_reason(error))
        return False


def recorded_run(folder) -> tuple[str | None, str | None]:
    """(run id, redacted tracking URI) of the training run recorded in a model folder,
    for steps that log to it later (e.g. the report)."""
    from pertcontrast.errors import TrackingError
    from pertcontrast.tracking.record import RunRecord

    try:
        record = RunRecord.load(folder)
    except TrackingError:
        return None, None
    return record.run_id, record.tracking_uri
