"""A tracked training run: the local record first, the tracking server second.

    tracker = TrainingTracker.connect(options, output)   # fails here if the server is down
    tracker.start(model, adata, settings, input_path)    # (unless offline_ok: embedded store)
    model.train(..., callbacks=[tracker.on_epoch])
    model.save(output)
    tracker.finish(model, result, adata)

Every call writes ``OUTPUT/mlflow_run.json`` before it talks to the server. When the
server stops answering, the tracker warns once, stops calling it (training is not slowed)
and tells the user to run ``pertcontrast mlflow sync``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pertcontrast.errors import TrackingError
from pertcontrast.tracking.record import RECORD_FILE, RunRecord
from pertcontrast.tracking.uris import (
    EMBEDDED_FOLDER,
    embedded_artifact_root,
    embedded_uri,
    http_limits,
    is_embedded,
    redact,
    resolve_uri,
    ui_command,
)

log = logging.getLogger("pertcontrast")
CURVES_FILE = "training_curves.png"


@dataclass
class TrackingOptions:
    uri: str | None = None  # falls back to MLFLOW_TRACKING_URI, then the embedded store
    experiment_name: str = "pertcontrast"
    run_name: str | None = None  # default: the screen id
    screen_id: str | None = None  # default: the input file's stem
    tags: dict[str, str] = field(default_factory=dict)
    register_model: str | None = None
    model_alias: str | None = None
    offline_ok: bool = False
    # only OUTPUT/mlflow_run.json, no store: a pipeline puts its runs into one store at the end
    # (``pertcontrast mlflow store``, tracking/run_store.py)
    record_only: bool = False


def sync_command(output, uri: str) -> str:
    return f"pertcontrast mlflow sync {output} --mlflow-uri {redact(uri)}"


class TrainingTracker:
    def __init__(self, options: TrackingOptions, output: Path, uri: str, client, experiment_id: str):
        self.options = options
        self.output = output
        self.uri = uri
        self.client = client
        self.experiment_id = experiment_id
        self.record: RunRecord | None = None
        self.uploader = None
        self.offline_reason: str | None = None
        self.intended_uri = uri
        self.record_only = options.record_only

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    def connect(cls, options: TrackingOptions, output) -> "TrainingTracker":
        """Open the store before anything is trained; a server that cannot be reached is a
        one-line error, or with ``offline_ok`` a warning and the embedded store."""
        from pertcontrast.tracking.store import open_store, refusal_message

        output = Path(output)
        if options.model_alias and not options.register_model:
            raise TrackingError("needs {param:register_model} NAME (the alias is set on that model's new version).",
                                param="model_alias")
        if options.record_only:
            return cls(options, output, None, None, None)
        uri, source = resolve_uri(options.uri, output)
        artifact_root = embedded_artifact_root(output) if source == "embedded" else None
        try:
            client, experiment = open_store(uri, options.experiment_name, artifact_root)
        except TrackingError as error:
            reason = getattr(error, "reason", str(error))
            if refusal_message(uri, reason):
                raise TrackingError(refusal_message(uri, reason)) from error
            if source == "embedded":
                raise TrackingError(
                    f"the embedded MLflow store {output / EMBEDDED_FOLDER} cannot be used ({reason}); check that "
                    "the output folder is writable, or pass {param:uri} or {param:mlflow=False}."
                ) from error
            if not options.offline_ok:
                where = "{param:uri}" if source == "uri" else source
                raise TrackingError(
                    f"MLflow tracking server {redact(uri)} (from {where}) cannot be reached ({reason}); nothing "
                    "was trained. Start the server or fix the URI, or pass {param:offline_ok} to log to the "
                    f"embedded store in {output / EMBEDDED_FOLDER} and upload later, or {{param:mlflow=False}}."
                ) from error
            log.warning(
                "MLflow tracking server %s cannot be reached (%s); logging to the embedded store in %s instead "
                "(offline runs allowed). Upload later with: %s",
                redact(uri), reason, output / EMBEDDED_FOLDER, sync_command(output, uri),
            )
            intended = uri
            uri = embedded_uri(output)
            client, experiment = open_store(uri, options.experiment_name, embedded_artifact_root(output))
            tracker = cls(options, output, uri, client, experiment)
            tracker.intended_uri = intended
            return tracker
        return cls(options, output, uri, client, experiment)

    # -- the run -------------------------------------------------------------------------
    def start(self, model, adata, settings, input_path) -> None:
        from pertcontrast.tracking.training_summary import data_summary, dataset_entry, start_params
        from pertcontrast.versions import __version__, package_versions
        from pertcontrast.tracking.upload import RunUploader

        options = self.options
        screen_id = options.screen_id or Path(str(input_path)).stem
        shape = data_summary(model, adata)
        tags = {
            "pertcontrast.screen_id": screen_id,
            "pertcontrast.run_type": "train",
            "pertcontrast.version": __version__,
            "mlflow.source.name": "pertcontrast train",
            "mlflow.source.type": "JOB",
            **{k: str(v) for k, v in options.tags.items()},
        }
        self._close_stale_run()
        self.record = RunRecord(
            experiment_name=options.experiment_name,
            run_name=options.run_name or screen_id,
            tracking_uri=redact(self.uri),
            tags=tags,
            params=start_params(model, adata, settings, input_path, package_versions()),
            register_model=options.register_model,
            model_alias=options.model_alias,
            registration_tags={"screen_id": screen_id, "pertcontrast_version": __version__,
                               **{k: str(v) for k, v in shape.items()}},
            registration_description=(
                f"{screen_id}: {shape['n_cells']} cells x {shape['n_genes']} genes, "
                f"{shape['n_perturbations']} perturbations, {shape['n_controls']} control cells"
            ),
            datasets=[dataset_entry(model, adata, input_path, screen_id)],
        )
        self._save()
        self.uploader = RunUploader(self.client, self.uri, self.record, self.output, save=self._save)
        self._attempt(lambda: (self.uploader.start(self.experiment_id), self.uploader.params(), self.uploader.inputs()))
        if self.record.run_id:
            log.info("MLflow run %s ('%s') in experiment '%s' at %s", self.record.run_id, self.record.run_name,
                     options.experiment_name, redact(self.uri))

    def on_epoch(self, row: dict) -> None:
        """Trainer callback: record the epoch's metrics, then send them."""
        from pertcontrast.tracking.training_summary import metric_values

        self.record.metrics.append(
            {"step": int(row["epoch"]), "timestamp": int(time.time() * 1000), "values": metric_values(row)}
        )
        self._save()
        self._attempt(self.uploader.metrics)

    def finish(self, model, result, adata) -> None:
        """After the model folder is saved: summary metrics, plot, artifacts, the MLflow
        model, registration; then the run is marked finished."""
        from pertcontrast.model_folder import HISTORY_FILE
        from pertcontrast.tracking.training_summary import end_params, plot_training_curves, summary_metrics

        record = self.record
        self._add_missing_epochs(result.history)
        record.params.update(end_params(model))
        try:
            record.summary = summary_metrics(model, adata, result)
        except Exception as error:  # noqa: BLE001 - a summary must never cost the trained model
            log.warning("summary metrics skipped (%s: %s)", type(error).__name__, error)
        plot_training_curves(result.history, self.output / CURVES_FILE)
        files = model_files(self.output)
        record.artifacts = [[name, "model_folder"] for name in files]
        record.artifacts += [[HISTORY_FILE, ""]] if HISTORY_FILE in files else []
        record.artifacts += [[CURVES_FILE, ""]]
        record.status = "FINISHED"
        self._save()
        self._attempt(lambda: self.uploader.finish(files, _signature(model)))
        self._report()

    def fail(self, error: BaseException) -> None:
        """Training stopped with an error: mark the run failed (locally and, if possible, remotely)."""
        if self.record is None:
            return
        self.record.status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.record.tags["pertcontrast.error"] = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        self._save()
        self._attempt(lambda: self.uploader.finish([], None))

    # -- helpers -------------------------------------------------------------------------
    def _save(self) -> None:
        self.record.offline_reason = self.offline_reason
        self.record.save(self.output)

    def _attempt(self, action) -> None:
        if self.offline_reason is not None or self.record_only:
            return
        try:
            with http_limits():
                action()
        except Exception as error:  # noqa: BLE001 - the server may fail in any way; nothing is lost
            from pertcontrast.tracking.store import failure_reason

            self.offline_reason = failure_reason(error)
            self._save()
            log.warning(
                "MLflow tracking server %s stopped answering (%s); nothing is lost (training is not affected): "
                "the run is kept in %s. Upload it later with: %s", redact(self.uri), self.offline_reason, self.output / RECORD_FILE,
                sync_command(self.output, self.intended_uri),
            )

    def _add_missing_epochs(self, history) -> None:
        """Epochs trained before a resume (or whose callback never ran) come from the history."""
        from pertcontrast.tracking.training_summary import metric_values

        seen = {row["step"] for row in self.record.metrics}
        now = int(time.time() * 1000)
        missing = [
            {"step": int(row["epoch"]), "timestamp": now, "values": metric_values(row)}
            for row in history.to_dict("records") if int(row["epoch"]) not in seen
        ]
        # Appended, not sorted in: rows keep the order they are sent in (the server orders
        # a metric's history by step), so the count of rows already sent stays right.
        self.record.metrics.extend(missing)

    def _close_stale_run(self) -> None:
        """A previous, killed attempt into the same folder left a RUNNING run: mark it KILLED."""
        if self.record_only or not (self.output / RECORD_FILE).exists():
            return
        try:
            old = RunRecord.load(self.output)
        except TrackingError:
            return
        if old.status == "RUNNING" and old.run_id and old.tracking_uri == redact(self.uri):
            def close():
                self.client.set_terminated(old.run_id, "KILLED")
            try:
                with http_limits():
                    close()
                log.info("marked the interrupted earlier MLflow run %s as KILLED", old.run_id)
            except Exception:  # noqa: BLE001 - best effort
                pass

    def _report(self) -> None:
        record = self.record
        if self.record_only:
            log.info("MLflow run recorded in %s (no store; 'pertcontrast mlflow store' puts runs into one)",
                     self.output / RECORD_FILE)
            return
        if self.offline_reason is not None:
            log.warning(
                "the MLflow run was not fully uploaded (%s); it is kept in %s. Upload it with: %s",
                self.offline_reason, self.output / RECORD_FILE, sync_command(self.output, self.intended_uri),
            )
            return
        if self.intended_uri != self.uri:
            log.warning("the MLflow run was logged to the embedded store, not to %s; upload it with: %s",
                        redact(self.intended_uri), sync_command(self.output, self.intended_uri))
        if record.uploaded.registered_version:
            alias = f" (alias '{record.model_alias}')" if record.model_alias else ""
            log.info("registered models:/%s/%s%s", record.register_model, record.uploaded.registered_version, alias)
        if is_embedded(self.uri):
            log.info("MLflow run %s stored in %s; browse it with: %s", record.run_id,
                     self.output / EMBEDDED_FOLDER, ui_command(self.uri))


def model_files(folder: Path) -> list[str]:
    """The files of a model folder (what ContrastiveModel.save writes)."""
    from pertcontrast.model_folder import CONFIG_FILE, HISTORY_FILE, WEIGHTS_FILE

    return [name for name in (CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE) if (Path(folder) / name).exists()]


def _signature(model):
    from pertcontrast.tracking.upload import model_signature

    return model_signature(model)
