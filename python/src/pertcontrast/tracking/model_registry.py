"""The model registry: resolve ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``, load the
model they point to, list/show/promote versions, and record lookups.

A registered version's MLflow model holds the plain model folder as its artifact; it is
loaded with :meth:`ContrastiveModel.load` (JSON config, ``weights_only`` weights), so a
lookup never runs code stored in the registry.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pertcontrast.errors import ModelLoadError, TrackingError
from pertcontrast.tracking.uris import CHECK_LIMITS, http_limits, redact, resolve_uri

log = logging.getLogger("pertcontrast")
REGISTRY_INFO_FILE = "registry.json"  # in a downloaded model folder: where it came from
_REF = re.compile(r"^(?:models:/)?(?P<name>[^@]+?)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+|latest))$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None  # a number or "latest"

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_ref(text: str) -> ModelRef:
    """``[models:/]NAME@ALIAS`` or ``[models:/]NAME/VERSION`` (VERSION may be ``latest``)."""
    match = _REF.match(str(text).strip())
    if not match:
        raise ModelLoadError(
            f"'{text}' is not a registered model reference; use models:/NAME@ALIAS or models:/NAME/VERSION."
        )
    return ModelRef(match["name"], match["alias"], match["version"])


def tracking_uri(option: str | None) -> str:
    """The registry's server: the option or ``MLFLOW_TRACKING_URI`` (see uris.resolve_uri)."""
    return resolve_uri(option)[0]


@contextlib.contextmanager
def _registry(uri: str):
    """A client for ``uri``; connection failures become one-line errors."""
    from mlflow.exceptions import MlflowException

    from pertcontrast.tracking.store import failure_reason, make_client, refusal_message

    with http_limits(CHECK_LIMITS):
        try:
            yield make_client(uri)
        except (ModelLoadError, TrackingError):
            raise
        except MlflowException as error:
            reason = failure_reason(error)
            if refusal_message(uri, reason):
                raise TrackingError(refusal_message(uri, reason)) from error
            raise TrackingError(f"model registry at {redact(uri)}: {reason}") from error
        except Exception as error:  # noqa: BLE001 - network errors of any kind
            raise TrackingError(f"model registry at {redact(uri)} cannot be reached ({failure_reason(error)}).") from error


def _registered_model(client, name: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" not in str(error.error_code):
            raise
    names = [m.name for m in client.search_registered_models(max_results=20)]
    raise ModelLoadError(
        f"no registered model '{name}' on {redact(uri)} (registered: {', '.join(names) or 'none'})."
    )


def _resolve(client, ref: ModelRef, uri: str):
    """The ModelVersion ``ref`` points to now."""
    from mlflow.exceptions import MlflowException

    registered = _registered_model(client, ref.name, uri)
    if ref.alias:
        aliases = dict(registered.aliases or {})
        if ref.alias not in aliases:
            known = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise ModelLoadError(
                f"{ref}: model '{ref.name}' has no alias '{ref.alias}' (aliases: {known}); set one with "
                f"'pertcontrast registry promote {ref.name} VERSION --alias {ref.alias}' or use models:/{ref.name}/VERSION."
            )
        return client.get_model_version(ref.name, str(aliases[ref.alias]))
    versions = _versions(client, ref.name)
    if ref.version == "latest":
        if not versions:
            raise ModelLoadError(f"{ref}: model '{ref.name}' has no versions.")
        return versions[-1]
    try:
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" not in str(error.error_code):
            raise
        available = ", ".join(v.version for v in versions) or "none"
        raise ModelLoadError(f"{ref}: model '{ref.name}' has no version {ref.version} (versions: {available}).") from error


def _versions(client, name: str) -> list:
    quoted = name.replace("'", "\\'")
    versions = client.search_model_versions(f"name = '{quoted}'")
    return sorted(versions, key=lambda v: int(v.version))


def _model_id(version) -> str:
    """The MLflow logged-model id of a version (from its source when not filled in)."""
    model_id = getattr(version, "model_id", None)
    source = str(version.source or "")
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/")
    return model_id or ""


def _describe(version, registered) -> dict:
    aliases = sorted(a for a, v in (registered.aliases or {}).items() if str(v) == str(version.version))
    return {
        "name": version.name,
        "version": str(version.version),
        "aliases": aliases,
        "run_id": version.run_id or "",
        "model_id": _model_id(version),
        "source": version.source,
        "status": version.status,
        "created": int(version.creation_timestamp or 0),
        "description": version.description or "",
        "tags": dict(version.tags or {}),
    }


def _model_folder(mlmodel, local: str, ref: ModelRef) -> Path:
    """Where the model folder sits inside a downloaded MLflow model."""
    artifacts = mlmodel.flavors.get("python_function", {}).get("artifacts") or {}
    if "model" not in artifacts:
        raise ModelLoadError(f"{ref}: not a pertcontrast model (its MLflow model has no 'model' artifact).")
    return Path(local) / artifacts["model"]["path"]


# -- public -------------------------------------------------------------------------------
def list_versions(name: str, uri: str | None = None) -> list[dict]:
    uri = tracking_uri(uri)
    with _registry(uri) as client:
        registered = _registered_model(client, name, uri)
        return [_describe(v, registered) for v in _versions(client, name)]


def show_version(spec: str, uri: str | None = None) -> dict:
    """The version ``spec`` points to, with its run's summary metrics."""
    uri = tracking_uri(uri)
    ref = parse_ref(spec)
    with _registry(uri) as client:
        version = _resolve(client, ref, uri)
        info = _describe(version, _registered_model(client, ref.name, uri))
        if version.run_id:
            run = client.get_run(version.run_id)
            info["run_name"] = run.info.run_name
            info["run_status"] = run.info.status
            info["metrics"] = {k: v for k, v in sorted(run.data.metrics.items()) if k.startswith("summary.")}
        return info


def resolve(spec: str, uri: str | None = None) -> str:
    """The fixed ``models:/NAME/VERSION`` that ``spec`` (an alias, ``latest`` or a version)
    points to now; pipelines pin it once so every screen uses the same version."""
    uri = tracking_uri(uri)
    ref = parse_ref(spec)
    with _registry(uri) as client:
        version = _resolve(client, ref, uri)
    return str(ModelRef(ref.name, version=str(version.version)))


def promote(name: str, version: str, alias: str, uri: str | None = None) -> str | None:
    """Point ``alias`` at ``version``; returns the version it pointed to before (or None)."""
    uri = tracking_uri(uri)
    with _registry(uri) as client:
        registered = _registered_model(client, name, uri)
        _resolve(client, ModelRef(name, version=str(version)), uri)
        previous = (registered.aliases or {}).get(alias)
        client.set_registered_model_alias(name, alias, str(version))
        return str(previous) if previous is not None else None


@contextlib.contextmanager
def _downloaded(spec: str, tracking_uri_option: str | None, requested: str | None):
    """Download a registered version; yields ``(model folder, info)`` while it exists."""
    import mlflow
    from mlflow.models import Model

    from pertcontrast.tracking.store import scoped_tracking_uri

    uri = tracking_uri(tracking_uri_option)
    ref = parse_ref(spec)
    asked = parse_ref(requested) if requested else ref
    if asked.name != ref.name:
        raise ModelLoadError(f"{{param}} {requested} names another model than {{param:spec}} {spec}.",
                             param="requested")
    with _registry(uri) as client:
        version = _resolve(client, ref, uri)
        with tempfile.TemporaryDirectory(prefix="pertcontrast-registry-") as tmp, scoped_tracking_uri(uri):
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref.name}/{version.version}", dst_path=tmp)
            folder = _model_folder(Model.load(local), local, ref)
            info = {
                "model_source": "registry",
                "model_uri": str(asked),
                "model_resolved_uri": str(ModelRef(ref.name, version=str(version.version))),
                "model_name": ref.name,
                "model_version": str(version.version),
                "model_alias": asked.alias or "",
                "model_run_id": version.run_id or "",
                "model_id": _model_id(version),
                "tracking_uri": redact(uri),
                "lookup_run_id": "",  # filled in by runs.lookup_run when the lookup is recorded
            }
            log.info("%s resolved to version %s (run %s)", ref, info["model_version"], info["model_run_id"] or "unknown")
            yield folder, info


def load_registered_model(spec: str, tracking_uri_option: str | None = None, requested: str | None = None):
    """``(model, info)`` for ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; ``info``
    records what the reference resolved to (aliases move). ``requested``: the reference the
    user asked for when ``spec`` is its pinned version (see :func:`resolve`)."""
    from pertcontrast.model import BaseContrastiveModel

    with _downloaded(spec, tracking_uri_option, requested) as (folder, info):
        return BaseContrastiveModel.load(folder), info


def download_model(spec: str, output, tracking_uri_option: str | None = None, requested: str | None = None) -> dict:
    """Copy a registered model's folder to ``output`` (atomically), with its provenance in
    ``registry.json``: loading that folder later records the registry name, version and run
    id in every output, as a lookup by URI does."""
    import shutil

    from pertcontrast.io import atomic_dir, write_json_atomic

    with _downloaded(spec, tracking_uri_option, requested) as (folder, info), atomic_dir(output) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        write_json_atomic(Path(tmp) / REGISTRY_INFO_FILE, info)
    return info
