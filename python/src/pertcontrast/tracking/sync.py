"""``pertcontrast mlflow sync``: upload a run that was recorded locally (server down at
start with --mlflow-offline-ok, or gone during training) as a run on a tracking server."""

from __future__ import annotations

import logging
from pathlib import Path

from pertcontrast.errors import TrackingError
from pertcontrast.tracking.record import RunRecord
from pertcontrast.tracking.uris import http_limits, redact

log = logging.getLogger("pertcontrast")


def _run_exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException:
        return False


def sync_run(folder: str | Path, uri: str, experiment_name: str | None = None) -> RunRecord:
    """Upload what the server at ``uri`` does not have yet of the run recorded in
    ``folder``: into the same run when the record was started on this server, else as a
    new run (params, metric history, summary, artifacts, the MLflow model, registration)."""
    from pertcontrast.model import BaseContrastiveModel
    from pertcontrast.tracking.session import model_files
    from pertcontrast.tracking.store import failure_reason, open_store
    from pertcontrast.tracking.upload import RunUploader, model_signature

    folder = Path(folder)
    record = RunRecord.load(folder)
    if record.status == "RUNNING":
        raise TrackingError(
            f"{folder}: training has not finished (the run record says RUNNING); finish it with "
            "'pertcontrast train' (it resumes from its checkpoint) before syncing."
        )
    if experiment_name:
        record.experiment_name = experiment_name
    client, experiment = open_store(uri, record.experiment_name)
    with http_limits():
        same_run = record.run_id and record.tracking_uri == redact(uri) and _run_exists(client, record.run_id)
    if not same_run:
        record.reset_uploads()
        record.tags["pertcontrast.uploaded_by"] = "pertcontrast mlflow sync"
    elif record.complete_on_server:
        log.info("%s: run %s is already complete on %s; nothing to upload", folder, record.run_id, redact(uri))
        return record
    record.offline_reason = None
    record.tracking_uri = redact(uri)
    record.save(folder)
    files = model_files(folder)
    signature = model_signature(BaseContrastiveModel.load(folder)) if record.status == "FINISHED" else None
    uploader = RunUploader(client, uri, record, folder)
    try:
        with http_limits():
            uploader.start(experiment)
            uploader.finish(files, signature)
    except Exception as error:  # noqa: BLE001 - report one line; the record keeps the progress
        raise TrackingError(
            f"upload to {redact(uri)} stopped ({failure_reason(error)}); what was sent is marked in "
            f"{folder}/mlflow_run.json, so running the same command again continues."
        ) from error
    return record
