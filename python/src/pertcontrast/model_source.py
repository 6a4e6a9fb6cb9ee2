"""Where a model comes from: a model folder or an MLflow registry URI (``models:/...``)."""

from __future__ import annotations

from pathlib import Path


def load_model(spec: str | Path, tracking_uri: str | None = None):
    """Return ``(model, info)``; ``info`` records where the model came from (for outputs).

    ``spec`` is a model folder written by ``pertcontrast train`` or a registry URI
    ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (resolved on the tracking server).
    """
    from pertcontrast.model import ContrastiveModel

    spec = str(spec)
    if spec.startswith("models:/"):
        from pertcontrast.tracking import load_registered_model

        return load_registered_model(spec, tracking_uri)
    model = ContrastiveModel.load(spec)
    return model, {"model_source": "folder", "model_path": str(Path(spec).resolve())}
