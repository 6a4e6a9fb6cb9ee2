"""Pushing a run record to a tracking store, one piece at a time; each piece is marked in
the record once the server has it, so a live run and a later sync share this code."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

from pertcontrast.tracking.record import RunRecord
from pertcontrast.tracking.uris import redact

MODEL_FOLDER_ARTIFACT = "model_folder"
LOGGED_MODEL_NAME = "pertcontrast_model"
MODEL_CODE = Path(__file__).with_name("model_code.py")
BATCH = 500


class RunUploader:
    """Uploads ``record`` (whose files live in ``folder``) to ``client``'s store."""

    def __init__(self, client, uri: str, record: RunRecord, folder: str | Path, save=None):
        self.client = client
        self.uri = uri
        self.record = record
        self.folder = Path(folder)
        self._save = save or (lambda: record.save(folder))

    # -- the run -------------------------------------------------------------------------
    def start(self, experiment_id: str) -> str:
        """Create the run (tags included) unless the record already names one here."""
        record = self.record
        if record.run_id is None:
            run = self.client.create_run(experiment_id, tags=record.tags, run_name=record.run_name)
            record.run_id, record.experiment_id = run.info.run_id, experiment_id
            record.tracking_uri = redact(self.uri)
            record.uploaded.tags = list(record.tags)
            self._save()
        return record.run_id

    def tags(self) -> None:
        """Tags added after the run was created (e.g. the error of a failed run)."""
        from mlflow.entities import RunTag

        missing = {k: v for k, v in self.record.tags.items() if k not in self.record.uploaded.tags}
        if missing:
            self.client.log_batch(self.record.run_id, tags=[RunTag(k, v) for k, v in missing.items()])
            self.record.uploaded.tags.extend(missing)
            self._save()

    def params(self) -> None:
        from mlflow.entities import Param

        missing = {k: v for k, v in self.record.params.items() if k not in self.record.uploaded.params}
        items = [Param(k, v) for k, v in missing.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.record.run_id, params=items[i : i + 100])
            self.record.uploaded.params.extend(p.key for p in items[i : i + 100])
            self._save()

    def inputs(self) -> None:
        """The datasets the run used (the prepared screen), as MLflow dataset inputs."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        if self.record.uploaded.datasets or not self.record.datasets:
            return
        inputs = []
        for entry in self.record.datasets:
            fields = {k: v for k, v in entry.items() if k != "context"}
            inputs.append(DatasetInput(Dataset(**fields), tags=[InputTag(MLFLOW_DATASET_CONTEXT, entry["context"])]))
        self.client.log_inputs(self.record.run_id, datasets=inputs)
        self.record.uploaded.datasets = True
        self._save()

    def metrics(self) -> None:
        from mlflow.entities import Metric

        done = self.record.uploaded.metric_rows
        rows = self.record.metrics[done:]
        pending: list = []
        for n, row in enumerate(rows, start=1):
            pending += [Metric(k, v, row["timestamp"], row["step"]) for k, v in row["values"].items()]
            if len(pending) >= BATCH or n == len(rows):
                self.client.log_batch(self.record.run_id, metrics=pending)
                pending = []
                self.record.uploaded.metric_rows = done + n
                self._save()

    def summary(self) -> None:
        from mlflow.entities import Metric

        if self.record.uploaded.summary or not self.record.summary:
            return
        timestamp = self.record.metrics[-1]["timestamp"] if self.record.metrics else 0
        step = self.record.metrics[-1]["step"] if self.record.metrics else 0
        self.client.log_batch(
            self.record.run_id, metrics=[Metric(k, v, timestamp, step) for k, v in self.record.summary.items()]
        )
        self.record.uploaded.summary = True
        self._save()

    def artifacts(self) -> None:
        if self.record.uploaded.artifacts or not self.record.artifacts:
            return
        for name, artifact_path in self.record.artifacts:
            self.client.log_artifact(self.record.run_id, str(self.folder / name), artifact_path or None)
        self.record.uploaded.artifacts = True
        self._save()

    def terminate(self) -> None:
        if self.record.uploaded.terminated or self.record.status == "RUNNING":
            return
        self.client.set_terminated(self.record.run_id, self.record.status)
        self.record.uploaded.terminated = True
        self._save()

    # -- the MLflow model and the registry ----------------------------------------------
    def model(self, model_files: list[str], signature) -> None:
        """Log the pyfunc (models from code; the model folder is its only artifact)."""
        import mlflow
        from mlflow.models import Model

        from pertcontrast.tracking.store import scoped_tracking_uri

        if self.record.uploaded.model_id is not None:
            return
        with tempfile.TemporaryDirectory(prefix="pertcontrast-model-") as tmp:
            staged = Path(tmp) / "model"
            staged.mkdir()
            for name in model_files:
                shutil.copy2(self.folder / name, staged / name)
            with scoped_tracking_uri(self.uri, self.record.experiment_id):
                info = Model.log(
                    artifact_path=None, name=LOGGED_MODEL_NAME, flavor=mlflow.pyfunc, run_id=self.record.run_id,
                    python_model=str(MODEL_CODE), artifacts={"model": str(staged)}, signature=signature,
                    pip_requirements=pip_requirements(), tags={"pertcontrast.run_name": self.record.run_name},
                )
        self.record.uploaded.model_id = info.model_id
        self._save()

    def register(self) -> None:
        from mlflow.exceptions import MlflowException

        from pertcontrast.tracking.store import scoped_tracking_uri

        record, uploaded = self.record, self.record.uploaded
        if not record.register_model or uploaded.model_id is None:
            return
        if uploaded.registered_version is None:
            try:
                self.client.create_registered_model(record.register_model)
            except MlflowException as error:
                if "ALREADY_EXISTS" not in str(error.error_code):
                    raise
            # (quiet: MLflow logs that it waits for the version to be ready)
            with scoped_tracking_uri(self.uri, record.experiment_id), _quiet("mlflow.store.model_registry"):
                version = self.client.create_model_version(
                    record.register_model, source=f"models:/{uploaded.model_id}", run_id=record.run_id,
                    tags=record.registration_tags, description=record.registration_description,
                    model_id=uploaded.model_id,
                )
            uploaded.registered_version = str(version.version)
            self._save()
        if record.model_alias and not uploaded.alias:
            self.client.set_registered_model_alias(record.register_model, record.model_alias, uploaded.registered_version)
            uploaded.alias = True
            self._save()

    def finish(self, model_files: list[str], signature) -> None:
        """Everything after training, in an order that keeps the server consistent:
        results first, the run marked finished last."""
        self.tags()
        self.params()
        self.inputs()
        self.metrics()
        if self.record.status == "FINISHED":
            self.summary()
            self.artifacts()
            if signature is not None:
                self.model(model_files, signature)
                self.register()
        self.terminate()


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def pip_requirements() -> list[str]:
    from pertcontrast.versions import package_versions

    versions = package_versions()
    names = ("pertcontrast", "mlflow", "torch", "pyro-ppl", "anndata", "pandas", "numpy")
    return [f"{name}=={versions[name]}" for name in names if versions.get(name, "not installed") != "not installed"]


def model_signature(model):
    """Input: one optional column per gene, of any numeric type (integer counts are as
    good as floats, pandas sparse columns too), plus the covariate columns; output: the
    salient and background coordinates."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from pertcontrast.tracking.latent_table import output_columns

    encoding = model.encoding
    genes = list(encoding.gene_names)
    known = set(genes)
    # AnyType: a "double" column spec makes MLflow refuse int64 columns (raw counts)
    inputs = [ColSpec(AnyType(), gene, required=False) for gene in genes]
    inputs += [ColSpec("string", key, required=False) for key in encoding.categorical_covariates if key not in known]
    inputs += [ColSpec("double", key, required=False) for key in encoding.continuous_covariates if key not in known]
    arch = model.architecture
    outputs = [ColSpec("float", name) for name in output_columns(arch.n_salient, arch.n_background)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))
