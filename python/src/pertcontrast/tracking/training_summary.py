"""What a tracked training run records, computed from the model and its data:
parameters, data shape, per-epoch metric rows, summary metrics that need no ground
truth, and the training-curve plot (no MLflow import here)."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a parameter value
SUMMARY_CELLS = 5000
NOT_METRICS = ("epoch", "step")


def _flat(prefix: str, values: dict) -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(f"{prefix}{key}.", value))
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            value = ",".join(str(v) for v in value)
        flat[f"{prefix}{key}"] = str(value)[:PARAM_VALUE_LIMIT]
    return flat


def data_summary(model, adata) -> dict[str, int]:
    encoding = model.encoding
    labels = adata.obs[encoding.perturbation_key].astype(str).to_numpy()
    n_controls = int((labels == encoding.control_label).sum())
    return {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_controls": n_controls,
        "n_perturbed_cells": int(adata.n_obs) - n_controls,
        "n_perturbations": len(encoding.perturbations),
    }


def dataset_entry(model, adata, input_path, name: str) -> dict:
    """The screen as an MLflow dataset (``log_inputs``): name, a digest of what
    identifies its content (cells, genes, perturbation labels; no pass over the
    counts), where it was read from, its obs schema and its shape as the profile."""
    import hashlib
    import json

    encoding = model.encoding
    digest = hashlib.sha256()
    for values in (adata.obs_names, adata.var_names, adata.obs[encoding.perturbation_key].astype(str)):
        digest.update("\0".join(map(str, values)).encode())
        digest.update(b"\1")
    columns = [encoding.perturbation_key, *encoding.categorical_covariates]
    schema = {"mlflow_colspec": [{"name": column, "type": "string"} for column in columns]
              + [{"name": column, "type": "double"} for column in encoding.continuous_covariates]}
    path = Path(str(input_path))
    source = str(path.resolve()) if path.exists() else str(input_path)
    return {"name": name, "digest": digest.hexdigest()[:16], "source_type": "local",
            "source": json.dumps({"uri": source}), "schema": json.dumps(schema),
            "profile": json.dumps(data_summary(model, adata)), "context": "training"}


def start_params(model, adata, settings, input_path, versions: dict[str, str]) -> dict[str, str]:
    """Parameters known before training: model, training, data, preprocessing, versions."""
    from pertcontrast.data.screen_files import recorded_preprocessing

    encoding = model.encoding
    architecture = asdict(model.architecture)
    params = _flat("model.", architecture)
    params.update(_flat("training.", settings.to_dict()))
    params.update(_flat("data.", data_summary(model, adata)))
    params.update(_flat("data.", {
        "input": str(input_path),
        "perturbation_key": encoding.perturbation_key,
        "control_label": encoding.control_label,
        "categorical_covariates": list(encoding.categorical_covariates),
        "continuous_covariates": list(encoding.continuous_covariates),
        "library_key": encoding.library_key,
    }))
    params.update(_flat("preprocess.", recorded_preprocessing(adata)))
    params.update(_flat("version.", versions))
    return params


def end_params(model) -> dict[str, str]:
    """Parameters only known once training ran (resolved epochs, warm-up, device...)."""
    keys = ("device", "max_epochs", "steps_per_epoch", "warmup_steps", "n_train", "n_validation")
    return _flat("resolved.", {k: model.training[k] for k in keys if k in model.training})


def metric_values(row: dict) -> dict[str, float]:
    """The numeric values of a history row, as metrics (``seconds`` becomes ``epoch_seconds``)."""
    values = {}
    for key, value in row.items():
        if key in NOT_METRICS or not isinstance(value, (int, float, np.number)):
            continue
        values["epoch_seconds" if key == "seconds" else key] = float(value)
    return values


def summary_metrics(model, adata, result, max_cells: int = SUMMARY_CELLS, seed: int = 0) -> dict[str, float]:
    """Final metrics that need no ground truth.

    ``summary.<label>_predictability_<latent>``: how well the cell-cycle phase (``obs
    phase``, written by preprocess) and the batch are predicted from each latent (k-NN
    balanced accuracy minus chance, on up to ``max_cells`` cells). A good model keeps them
    in the background latent and out of the salient one.
    """
    from pertcontrast.analysis.predictability import knn_predictability
    from pertcontrast.data.screen_files import recorded_preprocessing

    history = result.history
    summary = {
        "summary.epochs_run": float(len(history)),
        "summary.best_epoch": float(result.best_epoch),
        "summary.training_seconds": float(result.seconds),
    }
    last = history.iloc[-1] if len(history) else {}
    for key in ("validation_classifier_accuracy", "validation_loss", "validation_elbo", "train_loss"):
        if key in last and math.isfinite(float(last[key])):
            summary[f"summary.final_{key}"] = float(last[key])
    rng = np.random.default_rng(seed)
    rows = np.arange(adata.n_obs)
    if len(rows) > max_cells:
        rows = np.sort(rng.choice(rows, size=max_cells, replace=False))
    subset = adata[rows]
    latents = model.latents(subset, device="cpu")
    columns = {"phase": "phase", "batch": recorded_preprocessing(adata).get("batch_key") or model.encoding.library_key}
    for name, column in columns.items():
        if not column or column not in subset.obs:
            continue
        labels = subset.obs[column].to_numpy()
        for latent in ("salient", "background"):
            value = knn_predictability(latents[latent], labels, seed=seed)
            if math.isfinite(value):
                summary[f"summary.{name}_predictability_{latent}"] = value
    return summary


def plot_training_curves(history, path: str | Path) -> Path:
    """Loss (train and validation), its terms and the classifier accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pertcontrast.io import atomic_path

    panels = [
        ("loss per cell", ["train_loss", "validation_loss"]),
        ("terms (validation)", [c for c in history.columns if c.startswith("validation_")
                                and c not in ("validation_loss", "validation_elbo", "validation_classifier_accuracy")]),
        ("classifier accuracy", ["train_classifier_accuracy", "validation_classifier_accuracy"]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
    for axis, (title, columns) in zip(axes, panels):
        for column in columns:
            if column in history:
                axis.plot(history["epoch"], history[column], label=column.split("_", 1)[1] if "terms" in title else column)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if axis.lines:
            axis.legend(fontsize=7)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return Path(path)
