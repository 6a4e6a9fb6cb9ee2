"""Where a model comes from: a model folder or an MLflow registry URI (``models:/...``)."""

from __future__ import annotations

import json
from pathlib import Path


def load_model(spec: str | Path, tracking_uri: str | None = None):
    """Return ``(model, info)``; ``info`` records where the model came from (for outputs).

    ``spec`` is a model folder written by ``pertcontrast train`` or a registry URI
    ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (resolved on the tracking server).
    """
    from pertcontrast.model import BaseContrastiveModel
    from pertcontrast.tracking.model_registry import REGISTRY_INFO_FILE, load_registered_model

    spec = str(spec)
    if spec.startswith("models:/"):
        return load_registered_model(spec, tracking_uri)
    model = BaseContrastiveModel.load(spec)
    info = {"model_source": "folder", "model_path": str(Path(spec).resolve())}
    registry_info = Path(spec) / REGISTRY_INFO_FILE
    if registry_info.is_file():
        # a folder fetched with 'pertcontrast registry download' keeps its provenance
        info = {**json.loads(registry_info.read_text()), "model_path": info["model_path"]}
    return model, info
