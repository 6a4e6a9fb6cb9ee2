"""The local run record, ``OUTPUT/mlflow_run.json``: everything a tracked run logs is
written here first, then uploaded. What has reached the server is marked, so
``pertcontrast mlflow sync`` uploads exactly what is missing (no MLflow import here)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pertcontrast.errors import TrackingError
from pertcontrast.io import write_json_atomic
from pertcontrast.tracking.uris import scrub

RECORD_FILE = "mlflow_run.json"
FORMAT_VERSION = 1


@dataclass
class Uploaded:
    """What the server at ``RunRecord.tracking_uri`` has of this run."""

    params: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metric_rows: int = 0
    summary: bool = False
    artifacts: bool = False
    model_id: str | None = None
    registered_version: str | None = None
    alias: bool = False
    terminated: bool = False
    datasets: bool = False


@dataclass
class RunRecord:
    experiment_name: str
    run_name: str
    tracking_uri: str | None = None  # redacted; the server the run was (being) logged to
    run_id: str | None = None
    experiment_id: str | None = None
    status: str = "RUNNING"  # RUNNING, FINISHED, FAILED
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)  # one row per epoch: step, timestamp, values
    summary: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # files of the output folder to upload
    datasets: list[dict] = field(default_factory=list)  # inputs (the prepared screen), see summary.dataset_entry
    register_model: str | None = None
    model_alias: str | None = None
    registration_tags: dict[str, str] = field(default_factory=dict)
    registration_description: str = ""
    offline_reason: str | None = None
    uploaded: Uploaded = field(default_factory=Uploaded)

    # -- files ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / RECORD_FILE
        write_json_atomic(path, {"format_version": FORMAT_VERSION, **scrub(asdict(self))})
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "RunRecord":
        path = Path(folder) / RECORD_FILE
        if not path.exists():
            raise TrackingError(
                f"{folder}: no {RECORD_FILE}; only a folder written by 'pertcontrast train' with "
                "MLflow tracking on can be synced."
            )
        try:
            data = json.loads(path.read_text())
            data.pop("format_version", None)
            uploaded = Uploaded(**data.pop("uploaded", {}))
            return cls(**data, uploaded=uploaded)
        except (ValueError, TypeError) as error:
            raise TrackingError(f"{path}: not a readable run record ({error}).") from error

    # -- state ---------------------------------------------------------------------------
    def reset_uploads(self) -> None:
        """The run is to be created anew (another server, or the old run is gone)."""
        self.uploaded = Uploaded()
        self.run_id = None
        self.experiment_id = None

    @property
    def complete_on_server(self) -> bool:
        u = self.uploaded
        done = (
            u.terminated and u.metric_rows == len(self.metrics)
            and set(self.params) <= set(u.params) and set(self.tags) <= set(u.tags)
            and (u.datasets or not self.datasets)
        )
        if self.status == "FINISHED":
            done = done and u.artifacts and (u.summary or not self.summary) and u.model_id is not None
            if self.register_model:
                done = done and u.registered_version is not None and (u.alias or not self.model_alias)
        return bool(done)
