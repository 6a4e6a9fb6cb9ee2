"""The numbers of a report: background removal, the per-perturbation table and the
headline values written to ``<id>.report.json`` (no plotting, no HTML)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pertcontrast.analysis.multiple_testing import benjamini_hochberg

EFFECT_FDR = 0.05
# Columns of the perturbation table, in order; only those available are shown.
TABLE_COLUMNS = (
    "perturbation", "n_cells", "median_salient_norm", "n_responders", "responder_fraction",
    "energy_distance", "energy_pvalue", "energy_padj", "detection_padj", "n_de_genes", "n_de_up", "n_de_down",
    "top_up", "top_down", "cluster", "simulated_effect", "simulated_program",
)


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a uniform random subsample (all rows when ``n <= max_points``)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def background_removal(latents, max_cells: int = 10_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """How well phase and batch are predicted from each latent (k-NN balanced accuracy
    minus chance): a good model keeps them in the background and out of the salient latent."""
    from pertcontrast.analysis.predictability import knn_predictability

    result = {}
    for name, labels in (("phase", latents.phase), ("batch", latents.batch)):
        if labels is None:
            continue
        result[name] = {
            which: _finite(knn_predictability(getattr(latents, which), labels, max_cells=max_cells, seed=seed))
            for which in ("salient", "background")
        }
    return result


def perturbation_table(latents, analysis) -> pd.DataFrame:
    """One row per perturbation: cell counts and salient norms from the latents, plus the
    responder and effect columns when those steps ran. Strongest first."""
    perturbed = ~latents.is_control
    cells = pd.DataFrame({"perturbation": latents.perturbation[perturbed],
                          "salient_norm": latents.salient_norm[perturbed]})
    table = cells.groupby("perturbation", sort=True)["salient_norm"].agg(["size", "median"]).reset_index()
    table.columns = ["perturbation", "n_cells", "median_salient_norm"]
    for extra in (analysis.responders, analysis.effects):
        if extra is not None:
            new = [c for c in extra.columns if c not in table.columns or c == "perturbation"]
            table = table.merge(extra[new], on="perturbation", how="left")
    if "energy_pvalue" in table:
        table["energy_padj"] = benjamini_hochberg(table["energy_pvalue"].to_numpy(dtype=float))
    if latents.truth is not None:  # a simulated screen: its truth beside the calls
        truth = latents.truth.reindex(table["perturbation"])
        if "program" in truth:
            table["simulated_program"] = truth["program"].fillna("").astype(str).to_numpy()
        known = truth["has_effect"].notna().to_numpy()  # a perturbation the truth does not name: blank
        has_effect = truth["has_effect"].to_numpy(dtype=object) == True  # noqa: E712 - NaN is not True
        table["simulated_effect"] = np.where(known, np.where(has_effect, "yes", "no"), "")
    table = table[[c for c in TABLE_COLUMNS if c in table.columns]]
    order = "energy_distance" if "energy_distance" in table else "median_salient_norm"
    return table.sort_values(order, ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def effect_column(table: pd.DataFrame) -> str | None:
    """What calls an effect: the responders' detection test, else the energy test."""
    return next((c for c in ("detection_padj", "energy_padj") if c in table), None)


def strength_column(table: pd.DataFrame) -> str:
    return "energy_distance" if "energy_distance" in table else "median_salient_norm"


def strongest(table: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` perturbations with the largest effect (the table is sorted strongest first)."""
    return [str(p) for p in table["perturbation"].head(n)]


def strongest_with_de(table: pd.DataFrame, n: int = 30) -> list[str]:
    """Up to ``n`` of the strongest perturbations that have DE genes called."""
    if "n_de_genes" not in table:
        return []
    return [str(p) for p in table.loc[table["n_de_genes"].fillna(0) > 0, "perturbation"].head(n)]


def norm_separation(latents) -> float:
    """P(norm of a random perturbed cell > norm of a random control): 0.5 = no separation."""
    from scipy.stats import mannwhitneyu

    control = latents.salient_norm[latents.is_control]
    perturbed = latents.salient_norm[~latents.is_control]
    if len(control) == 0 or len(perturbed) == 0:
        return float("nan")
    statistic = mannwhitneyu(perturbed, control, alternative="two-sided").statistic
    return float(statistic / (len(control) * len(perturbed)))


def headline(title: str, latents, removal: dict, table: pd.DataFrame, analysis, model, n_shown: int) -> dict:
    """The numbers of the run summary (one row per screen)."""
    norms = latents.salient_norm
    values = {
        "id": title,
        "n_cells": latents.n_cells,
        "n_cells_shown": int(n_shown),
        "n_perturbations": int(len(table)),
        "n_control_cells": int(latents.is_control.sum()),
        "n_perturbed_cells": int((~latents.is_control).sum()),
        "n_batches": int(len(np.unique(latents.batch))) if latents.batch is not None else None,
        "median_salient_norm_control": _finite(np.median(norms[latents.is_control])),
        "median_salient_norm_perturbed": _finite(np.median(norms[~latents.is_control]))
        if (~latents.is_control).any() else None,
        "salient_norm_auc": _finite(norm_separation(latents)),
        "n_perturbations_with_effect": None,
        "n_perturbations_with_de": None,
        "responder_fraction": None,
    }
    for label in ("phase", "batch"):
        for which in ("salient", "background"):
            values[f"{label}_predictability_{which}"] = removal.get(label, {}).get(which)
    if effect_column(table):
        values["n_perturbations_with_effect"] = int((table[effect_column(table)] <= EFFECT_FDR).sum())
    if "n_de_genes" in table:
        values["n_perturbations_with_de"] = int((table["n_de_genes"].fillna(0) > 0).sum())
    values.update(_truth_numbers(table))
    if "n_responders" in table:
        values["responder_fraction"] = _finite(table["n_responders"].sum() / max(1, table["n_cells"].sum()))
    values.update(_training_numbers(model))
    values["steps"] = {"responders": analysis.responders is not None or latents.responder_call is not None,
                       "de": analysis.de_folder is not None, "effects": analysis.effects is not None}
    return values


def _truth_numbers(table: pd.DataFrame) -> dict:
    """On a simulated screen: how many perturbations truly have an effect, how many of those
    were found and how many without one were called anyway."""
    if "simulated_effect" not in table:
        return {}
    true = (table["simulated_effect"] == "yes").to_numpy()
    false = (table["simulated_effect"] == "no").to_numpy()
    values = {"n_simulated_effects": int(true.sum())}
    if effect_column(table):
        called = (table[effect_column(table)] <= EFFECT_FDR).to_numpy()
        values["n_simulated_effects_found"] = int((called & true).sum())
        values["n_effects_called_without_one"] = int((called & false).sum())
    return values


def _training_numbers(model) -> dict:
    training = model.config.get("training", {})
    from pertcontrast.report.diagnostics import training_warnings

    values = {"epochs_run": training.get("epochs_run"), "best_epoch": training.get("best_epoch"),
              "final_validation_loss": None, "mlflow_run_id": model.run_id,
              "training_warnings": training_warnings(model.config, model.history)}
    history = model.history
    if history is not None and len(history) and "validation_loss" in history:
        values["final_validation_loss"] = _finite(history["validation_loss"].iloc[-1])
    return values


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
