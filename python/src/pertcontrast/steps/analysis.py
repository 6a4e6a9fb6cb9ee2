"""File-level analysis steps: generate, responders, de, effects (read, compute, write
atomically). Each reads the prepared file and the outputs of the steps before it, joined
by cell (:class:`~pertcontrast.data.screen_files.ScreenFiles`), and writes only what it
adds. Each output format is described in docs/outputs.md."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.versions import __version__
from pertcontrast.data.screen_files import ScreenFiles
from pertcontrast.errors import InputDataError
from pertcontrast.io import atomic_dir, write_step_output, write_table_atomic

log = logging.getLogger("pertcontrast")
SALIENT_KEY = "X_salient"
RESPONDERS_KEY, GENERATE_KEY = "pertcontrast_responders", "pertcontrast_generate"
DE_TABLE, DE_CSV, DE_TOP, DE_SETTINGS = "de.parquet", "de.csv.gz", "de_top.csv", "de_settings.json"


def _close(adata) -> None:
    if getattr(adata, "isbacked", False):
        adata.file.close()


# -- generate -------------------------------------------------------------------------
def generate_file(prepared, model, output, settings, device: str = "auto", model_info: dict | None = None,
                  progress: bool = False):
    """Write ``output``: the generated layers (cells x model genes) for the cells of
    ``prepared`` (all, or a subsample with ``settings.max_cells``)."""
    from pertcontrast.analysis.generate import generate_expression, selected_cells
    from pertcontrast.data.reading import read_anndata

    adata = read_anndata(prepared, backed=Path(prepared).suffix == ".h5ad")
    try:
        n_rows = len(selected_cells(adata.n_obs, settings))
        size_gb = n_rows * len(model.encoding.gene_names) * 4 * len(settings.modes) / 1e9
        log.info("generate: %d cells x %d genes, %d layer(s), about %.2f GB in memory",
                 n_rows, len(model.encoding.gene_names), len(settings.modes), size_gb)
        rows, layers = generate_expression(model, adata, settings, device, progress, str(prepared))
        obs_names, n_cells = adata.obs_names[rows], int(adata.n_obs)
    finally:
        _close(adata)
    info = {
        "pertcontrast_version": __version__, **settings.to_dict(),
        "max_cells": settings.max_cells or 0, "n_cells_input": n_cells, **(model_info or {}),
    }
    write_step_output(output, obs_names, var_names=model.encoding.gene_names, layers=layers,
                      uns={GENERATE_KEY: info})
    return rows, layers


# -- responders -----------------------------------------------------------------------
def labels_and_control(files: ScreenFiles, perturbation_key=None, control_label=None):
    """Each cell's perturbation label (str) and the control label: as given, else as
    'pertcontrast preprocess' recorded them in the prepared file."""
    labels, control, _ = files.labels_and_control(perturbation_key, control_label)
    return labels, control


def salient_means(files: ScreenFiles) -> np.ndarray:
    if not files.has("obsm", SALIENT_KEY):
        where = files.path("export") or files.prepared
        raise InputDataError(
            f"{where}: no .obsm['{SALIENT_KEY}']; give the output of 'pertcontrast export' with {{param:latents}}."
        )
    return np.asarray(files.read("obsm", SALIENT_KEY))


def cell_split(files: ScreenFiles, model=None) -> np.ndarray | None:
    """Each cell's role in training (train, validation, decoy, new): as 'pertcontrast
    export' wrote it, else from the model's own record of its cells (None without either)."""
    from pertcontrast.analysis.cells import SPLIT_COLUMN, training_split

    recorded = files.read("obs", SPLIT_COLUMN) if files.has("obs", SPLIT_COLUMN) else None
    return training_split(recorded, model, files.obs_names)


def null_of(files: ScreenFiles, is_control: np.ndarray, model=None, split=None) -> np.ndarray:
    """The null controls (decoys and controls the model never saw), from the split that
    'pertcontrast export' wrote, else from the model's own record of its cells (or the
    ``split`` of :func:`cell_split`, when the caller has read it already)."""
    from pertcontrast.analysis.cells import SPLIT_COLUMN, null_controls

    split = cell_split(files, model) if split is None else split
    split = {} if split is None else {SPLIT_COLUMN: split}
    source = str(files.path("export") or files.prepared)
    return null_controls(pd.DataFrame(split, index=files.obs_names), is_control, source)


def responder_calls(files: ScreenFiles, required: bool) -> np.ndarray | None:
    """True for cells called responders, from the output of 'pertcontrast responders'
    (None when it was not given and is not ``required``)."""
    from pertcontrast.analysis.cells import RESPONDER_COLUMN, responder_mask

    if files.has("obs", RESPONDER_COLUMN):
        calls = pd.DataFrame({RESPONDER_COLUMN: files.read("obs", RESPONDER_COLUMN)})
        return responder_mask(calls, str(files.path("responders")))
    if required:
        raise InputDataError(
            f"{files.prepared}: no responder calls; run 'pertcontrast responders' first and pass its output "
            "with {param:responders}, or drop {param:responders_only}."
        )
    return None


def responders_file(prepared, latents, output, table_path=None, null_quantile: float = 0.875, seed: int = 0,
                    perturbation_key: str | None = None, control_label: str | None = None, model=None,
                    device: str = "auto", model_info: dict | None = None):
    """Write ``output`` (the cells with their responder columns in ``.obs``) and the
    per-perturbation table (default: ``responders.csv`` beside ``output``). With the
    ``model`` the scores are taken in gene space on the model's residuals (see
    ``analysis.responders``); without it, on the salient latents alone."""
    from pertcontrast.analysis.cells import unmatched_cells
    from pertcontrast.analysis.decode import ExpressionResiduals
    from pertcontrast.analysis.responders import call_responders
    from pertcontrast.data.reading import read_anndata

    with ScreenFiles(prepared, export=latents) as files:
        labels, control = labels_and_control(files, perturbation_key, control_label)
        split = cell_split(files, model)
        null = null_of(files, labels == control, model, split)
        salient = salient_means(files)
        obs_names = files.obs_names
    residuals = None
    # opened after ScreenFiles closed its handles on the same file (closing those would close it)
    adata = read_anndata(prepared, backed=Path(prepared).suffix == ".h5ad") if model is not None else None
    try:
        if model is not None:
            residuals = ExpressionResiduals(model, adata, device, str(prepared))
            log.info("responders: scores on the model's residuals over %d genes", residuals.n_genes)
        else:
            log.info("responders: no model given, scores on the salient latents only")
        result = call_responders(salient, labels, control, null, seed=seed, null_quantile=null_quantile,
                                 residuals=residuals,
                                 unmatched=unmatched_cells(split, labels == control))
    finally:
        if residuals is not None:
            residuals.release()
        if adata is not None:
            _close(adata)
    obs = {"responder_score": result.score, "responder_probability": result.probability,
           "responder_call": result.call}
    info = {"pertcontrast_version": __version__, "null_quantile": null_quantile, "seed": seed, "control_label": control,
            "n_null_controls": int(null.sum()), "score_space": "salient" if model is None else "expression",
            # what 'pertcontrast effects' calls an effect, so both steps call the same perturbations
            "detection": {"perturbation": result.table["perturbation"].astype(str).to_numpy(),
                          "pvalue": result.table["detection_pvalue"].to_numpy(float),
                          "padj": result.table["detection_padj"].to_numpy(float)},
            **(model_info or {})}
    write_step_output(output, obs_names, obs=obs, uns={RESPONDERS_KEY: info})
    table_path = Path(table_path) if table_path else Path(output).parent / "responders.csv"
    write_table_atomic(result.table, table_path)
    return result


# -- de -------------------------------------------------------------------------------
def de_file(prepared, model, output, settings, device: str = "auto", model_info: dict | None = None,
            progress: bool = False, perturbations=None, responders=None):
    """Write the ``de/`` folder: de.parquet, de.csv.gz, de_top.csv, de_settings.json.
    ``responders``: the output of 'pertcontrast responders' (needed by ``responders_only``)."""
    from pertcontrast.analysis.cells import RESPONDER_COLUMN
    from pertcontrast.analysis.differential import differential_expression

    with ScreenFiles(prepared, responders=responders) as files:
        adata = files.anndata(obs_keys=[RESPONDER_COLUMN])
        is_control = labels_and_control(files, model.encoding.perturbation_key, model.encoding.control_label)[0] \
            == model.encoding.control_label
        null = null_of(files, is_control, model)
    try:
        result = differential_expression(model, adata, settings, device, progress, str(prepared), perturbations,
                                         null)
    finally:
        _close(adata)
    info = {
        "pertcontrast_version": __version__, **settings.to_dict(), "samples": settings.n_samples,
        "cells_used": result.cells_used, "n_controls": result.n_controls, **(model_info or {}),
    }
    with atomic_dir(output) as folder:
        result.table.to_parquet(folder / DE_TABLE, index=False)
        result.table.to_csv(folder / DE_CSV, index=False)
        result.top.to_csv(folder / DE_TOP, index=False)
        (folder / DE_SETTINGS).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return result


def read_de_table(folder) -> pd.DataFrame:
    folder = Path(folder)
    if (folder / DE_TABLE).exists():
        return pd.read_parquet(folder / DE_TABLE)
    if (folder / DE_CSV).exists():
        return pd.read_csv(folder / DE_CSV)
    raise InputDataError(f"{folder}: no {DE_TABLE} or {DE_CSV}; give the folder written by 'pertcontrast de'.")


# -- effects --------------------------------------------------------------------------
def with_detection(energy: pd.DataFrame, detection: dict | None) -> pd.DataFrame:
    """The energy table with the detection test of 'pertcontrast responders' (its
    ``uns`` record) as ``detection_pvalue``/``detection_padj``; the energy test's own where
    the responders were not given or predate the record."""
    energy = energy.copy()
    if detection:
        found = pd.DataFrame({"perturbation": np.asarray(detection["perturbation"]).astype(str),
                              "detection_pvalue": np.asarray(detection["pvalue"], dtype=float),
                              "detection_padj": np.asarray(detection["padj"], dtype=float)})
        return energy.merge(found, on="perturbation", how="left")
    energy["detection_pvalue"], energy["detection_padj"] = energy["energy_pvalue"], energy["energy_padj"]
    return energy


def effects_file(prepared, latents, de_folder, output, settings, responders=None,
                 perturbation_key: str | None = None, control_label: str | None = None):
    """Write the ``effects/`` folder: effects.csv, perturbation_clusters.csv,
    perturbation_similarity.csv, gene_programs.csv. ``responders``: the output of
    'pertcontrast responders' (responder columns; needed by ``responders_only``)."""
    from pertcontrast.analysis.clustering import (
        cluster_perturbations,
        gene_programs,
        lfc_profiles,
        salient_profiles,
    )
    from pertcontrast.analysis.effects import effect_table, energy_table

    with ScreenFiles(prepared, export=latents, responders=responders) as files:
        labels, control = labels_and_control(files, perturbation_key, control_label)
        salient = salient_means(files)
        responder = responder_calls(files, required=settings.responders_only)
        null = null_of(files, labels == control)
        detection = files.uns(RESPONDERS_KEY, "responders").get("detection") if responders is not None else None
    de_table = read_de_table(de_folder)
    energy = with_detection(energy_table(salient, labels, control, responder, settings, null), detection)
    if settings.profile == "salient":
        keep = responder if settings.responders_only else None
        profiles = salient_profiles(salient, labels, control, keep, null)
        has_effect = pd.Series(energy["detection_padj"].to_numpy() < settings.fdr, index=energy["perturbation"])
    else:
        profiles, has_effect = lfc_profiles(de_table)
    clusters, similarity = cluster_perturbations(profiles, has_effect)
    programs = gene_programs(de_table, clusters)
    table = effect_table(energy, de_table, clusters, settings.top_n)
    with atomic_dir(output) as folder:
        table.to_csv(folder / "effects.csv", index=False)
        clusters.to_csv(folder / "perturbation_clusters.csv", index=False)
        similarity.to_csv(folder / "perturbation_similarity.csv")
        programs.to_csv(folder / "gene_programs.csv", index=False)
    return table
