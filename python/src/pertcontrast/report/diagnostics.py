"""Warnings about how training went, from the model folder's config and history: a model
trained for a few epochs, one whose validation loss was still falling when training
ended, and one whose classifier memorised the training cells. The report shows them in a
banner at the top, since every number below depends on the model."""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_EPOCHS = 20  # fewer epochs than this: the latents are barely trained
STILL_FALLING = 0.01  # validation loss fell by more than 1% over the last tenth of the epochs
CLASSIFIER_GAP = 0.2  # train minus validation accuracy of the perturbation classifier


def training_warnings(config: dict, history: pd.DataFrame | None) -> list[str]:
    """One sentence per problem found (empty when training looks sound)."""
    training = config.get("training", {})
    epochs = training.get("epochs_run")
    warnings = []
    if epochs is not None and epochs < MIN_EPOCHS:
        warnings.append(f"Trained for {epochs} epoch{'s' if epochs != 1 else ''} only: the latents are barely "
                        "trained, so few effects can be found. Train longer (max_epochs; early stopping ends "
                        "training when the validation loss stops improving).")
    falling = _still_falling(history, training)
    if falling is not None and (epochs is None or epochs >= MIN_EPOCHS):
        warnings.append(f"The validation loss was still falling when training ended ({falling:.1%} lower over the "
                        "last tenth of the epochs): the model is under-trained; raise max_epochs.")
    gap = _classifier_gap(history, training)
    if gap is not None:
        warnings.append(f"The perturbation classifier is right on {gap[0]:.0%} of the training cells but on "
                        f"{gap[1]:.0%} of the validation cells: the salient latent memorised the training cells. "
                        "Lower classification_weight or turn the classifier off.")
    return warnings


def _still_falling(history: pd.DataFrame | None, training: dict) -> float | None:
    """The relative fall of the validation loss over the last tenth of the epochs, when
    training stopped at its epoch limit (not early) with the best epoch the last one."""
    if history is None or "validation_loss" not in history or len(history) < 2 or training.get("stopped_early"):
        return None
    loss = history["validation_loss"].to_numpy(dtype=float)
    if not np.isfinite(loss).all() or int(np.argmin(loss)) != len(loss) - 1:
        return None
    window = max(1, len(loss) // 10)
    before, last = loss[-1 - window], loss[-1]
    fall = (before - last) / abs(before) if before else 0.0
    return float(fall) if fall > STILL_FALLING else None


def _classifier_gap(history: pd.DataFrame | None, training: dict) -> tuple[float, float] | None:
    columns = ("train_classifier_accuracy", "validation_classifier_accuracy")
    weight = training.get("settings", {}).get("classification_weight", 0) or 0
    if history is None or weight <= 0 or not set(columns) <= set(history.columns):
        return None
    last = history[list(columns)].dropna()
    if last.empty:
        return None
    train, validation = (float(v) for v in last.iloc[-1])
    return (train, validation) if train - validation > CLASSIFIER_GAP else None
