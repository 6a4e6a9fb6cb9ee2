"""One MLflow store for the training runs of a pipeline run: ``mlflow.db`` (SQLite) and
``artifacts/`` in one folder, every screen a run of one experiment (tag
``pertcontrast.screen_id``), built from the run records the TRAIN tasks wrote.

The store is relocatable: its runs refer to their artifacts as ``mlflow-artifacts:/...``,
MLflow's URIs for artifacts that a server serves from its ``--artifacts-destination``,
so the folder can be moved or copied anywhere (and outlives the pipeline's work folder):

    mlflow ui --backend-store-uri sqlite:///STORE/mlflow.db --artifacts-destination STORE/artifacts

While the store is built, those URIs are written straight into ``artifacts/`` (what
``mlflow server --serve-artifacts`` would do with the uploads), so no server is needed.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

from pertcontrast.errors import TrackingError
from pertcontrast.tracking.record import RunRecord

log = logging.getLogger("pertcontrast")
STORE_DB = "mlflow.db"
STORE_ARTIFACTS = "artifacts"
PROXIED_SCHEME = "mlflow-artifacts"


def store_uri(folder) -> str:
    return "sqlite:///" + str((Path(folder) / STORE_DB).resolve())


def ui_command(folder) -> str:
    """How to browse a store folder (any copy of it)."""
    folder = Path(folder)
    return (f"mlflow ui --backend-store-uri sqlite:///{(folder / STORE_DB).resolve()} "
            f"--artifacts-destination {(folder / STORE_ARTIFACTS).resolve()}")


@contextlib.contextmanager
def proxied_artifacts_written_to(destination):
    """For the block, ``mlflow-artifacts:/PATH`` is read and written as
    ``destination/PATH`` (MLflow's plugin mechanism for artifact schemes; restored after)."""
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as registry
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def local_repository(artifact_uri, tracking_uri=None, registry_uri=None):
        return LocalArtifactRepository(str(Path(destination) / urlparse(artifact_uri).path.lstrip("/")))

    previous = registry._registry.get(PROXIED_SCHEME)
    registry.register(PROXIED_SCHEME, local_repository)
    try:
        yield
    finally:
        registry.register(PROXIED_SCHEME, previous)


def _experiment_location(name: str) -> str:
    return f"{PROXIED_SCHEME}:/{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}"


def build_store(model_dirs, output, experiment_name: str = "pertcontrast", reports: dict | None = None,
                dataset_source: str | None = None) -> list:
    """Write the store folder ``output`` (atomically) with one run per model folder (from
    its ``mlflow_run.json``; the folders are only read) and each screen's report (``reports``:
    screen id -> file or folder) attached to its run. ``dataset_source``: where each
    screen's input is kept, ``{screen}`` replaced by its id (the pipeline names the
    published prepared file; the recorded path is a task's work folder). Returns the runs'
    records."""
    from pertcontrast.io import atomic_dir
    from pertcontrast.model import BaseContrastiveModel
    from pertcontrast.tracking.session import model_files
    from pertcontrast.tracking.store import open_store
    from pertcontrast.tracking.upload import RunUploader, model_signature

    records = [(Path(folder), _finished_record(folder)) for folder in model_dirs]
    reports = {str(k): Path(v) for k, v in (reports or {}).items()}
    unknown = set(reports) - {record.tags.get("pertcontrast.screen_id") for _, record in records}
    if unknown:
        raise TrackingError(f"{{param}} {', '.join(sorted(unknown))}: no run of that screen among the model folders.",
                            param="reports")
    with atomic_dir(output) as folder:
        uri = store_uri(folder)
        _create_database(uri)
        with proxied_artifacts_written_to(folder / STORE_ARTIFACTS):
            client, experiment = open_store(uri, experiment_name, _experiment_location(experiment_name))
            for model_dir, record in records:
                record.reset_uploads()
                if dataset_source:
                    _relocate_datasets(record, dataset_source)
                record.experiment_name, record.tracking_uri = experiment_name, None
                uploader = RunUploader(client, uri, record, model_dir, save=lambda: None)
                uploader.start(experiment)
                signature = model_signature(BaseContrastiveModel.load(model_dir)) if record.status == "FINISHED" else None
                uploader.finish(model_files(model_dir), signature)
            for screen, run_id in _report_runs(records).items():
                if screen in reports:
                    _attach(client, run_id, reports[screen])
    return [record for _, record in records]


def _relocate_datasets(record: RunRecord, template: str) -> None:
    import json

    screen = record.tags.get("pertcontrast.screen_id", "")
    for entry in record.datasets:
        entry["source"] = json.dumps({"uri": template.replace("{screen}", screen)})


def _create_database(uri: str) -> None:
    """Create the store's tables as ``mlflow server --serve-artifacts`` would: its Default
    experiment then lives at ``mlflow-artifacts:/0``, not in this process's working folder."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, f"{PROXIED_SCHEME}:/")


def _finished_record(folder) -> RunRecord:
    record = RunRecord.load(folder)
    if record.status == "RUNNING":
        raise TrackingError(f"{folder}: training has not finished (the run record says RUNNING).")
    return record


def _report_runs(records) -> dict[str, str]:
    """Screen id -> the run its report belongs to: the one with the best validation
    objective (a sweep trains several per screen; the pipeline reports on that one)."""
    best: dict[str, tuple[float, str]] = {}
    for model_dir, record in records:
        screen = record.tags.get("pertcontrast.screen_id", "")
        objective = _objective(model_dir)
        if screen not in best or objective < best[screen][0]:
            best[screen] = (objective, record.run_id)
    return {screen: run_id for screen, (_, run_id) in best.items()}


def _objective(model_dir: Path) -> float:
    import json

    try:
        value = json.loads((model_dir / "config.json").read_text()).get("training", {}).get("best_validation_objective")
    except (OSError, ValueError):
        return float("inf")
    return float(value) if value is not None else float("inf")


def _attach(client, run_id: str, path: Path) -> None:
    if path.is_dir():
        client.log_artifacts(run_id, str(path), "report")
    else:
        client.log_artifact(run_id, str(path), "report")
