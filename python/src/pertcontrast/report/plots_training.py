"""Training curves from ``history.csv``: the loss and each of its terms (train and
validation), the classifier accuracy and the schedule (learning rate, KL weight)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pertcontrast.report.figures import new_figure

TRAIN, VALIDATION = "train_", "validation_"
COLUMNS_PER_ROW = 4
SCHEDULE = ("learning_rate", "kl_weight")


def terms(history: pd.DataFrame) -> list[str]:
    """Loss terms logged for training or validation (``loss`` first, accuracy last)."""
    names = []
    for column in history.columns:
        for prefix in (TRAIN, VALIDATION):
            if column.startswith(prefix) and column[len(prefix):] not in names:
                names.append(column[len(prefix):])
    names.sort(key=lambda n: (n != "loss", n.endswith("accuracy")))
    return names


def curves_figure(history: pd.DataFrame):
    """Small multiples: one panel per term, train and validation in each; best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    panels = [(name, [f"{p}{name}" for p in (TRAIN, VALIDATION) if f"{p}{name}" in history]) for name in terms(history)]
    panels = [(name, columns) for name, columns in panels if not _all_zero(history, columns)]
    panels += [(name, [name]) for name in SCHEDULE if name in history]
    n_rows = max(1, math.ceil(len(panels) / COLUMNS_PER_ROW))
    figure = new_figure(3.0 * COLUMNS_PER_ROW, 2.3 * n_rows)
    axes = figure.subplots(n_rows, COLUMNS_PER_ROW, squeeze=False).ravel()
    epoch = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    best = _best_epoch(history, epoch)
    for axis, (name, columns) in zip(axes, panels):
        for column, colour in zip(columns, ("#4c72b0", "#dd8452")):
            label = "train" if column.startswith(TRAIN) else "validation" if column.startswith(VALIDATION) else None
            axis.plot(epoch, history[column], color=colour, linewidth=1.2, marker="." if len(history) < 30 else None,
                      label=label)
        if name == "learning_rate":
            _log_axis(axis)
        if best is not None:
            axis.axvline(best, color="#999999", linewidth=0.8, linestyle=":")
        axis.set_title(name.replace("_", " "))
        axis.set_xlabel("epoch", fontsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if len(columns) > 1:
            axis.legend(fontsize=7)
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    return figure


def _log_axis(axis) -> None:
    """Log scale with plain tick labels (the page draws text without TeX)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(NullFormatter())


def _all_zero(history: pd.DataFrame, columns: list[str]) -> bool:
    values = history[columns].to_numpy(dtype=float)
    return bool(np.all(np.nan_to_num(values) == 0))


def _best_epoch(history: pd.DataFrame, epoch) -> float | None:
    if "validation_loss" not in history or history["validation_loss"].isna().all():
        return None
    return float(np.asarray(epoch)[int(np.nanargmin(history["validation_loss"].to_numpy(dtype=float)))])
