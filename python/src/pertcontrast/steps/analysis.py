"""File-level analysis steps: generate, responders, de, effects (read, compute, write
atomically). Each output format is described in docs/outputs.md."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast import __version__
from pertcontrast.data.reading import read_anndata
from pertcontrast.errors import InputDataError
from pertcontrast.io import atomic_dir, atomic_path, write_h5ad_atomic, write_table_atomic

log = logging.getLogger("pertcontrast")
SALIENT_KEY = "X_salient"
DE_TABLE, DE_CSV, DE_TOP, DE_SETTINGS = "de.parquet", "de.csv.gz", "de_top.csv", "de_settings.json"


def _read(input_path, backed: bool = True):
    input_path = Path(input_path)
    return read_anndata(input_path, backed=backed and input_path.suffix == ".h5ad")


def _close(adata) -> None:
    if getattr(adata, "isbacked", False):
        adata.file.close()


# -- generate -------------------------------------------------------------------------
def generate_file(input_path, model, output, settings, device: str = "auto", model_info: dict | None = None,
                  progress: bool = False):
    """Write ``output``: the generated layers for the cells of ``input_path``."""
    import anndata as ad

    from pertcontrast.analysis.generate import generate_expression, selected_cells

    adata = _read(input_path)
    n_rows = len(selected_cells(adata.n_obs, settings))
    size_gb = n_rows * len(model.registry.gene_names) * 4 * len(settings.modes) / 1e9
    log.info("generate: %d cells x %d genes, %d layer(s), about %.2f GB in memory",
             n_rows, len(model.registry.gene_names), len(settings.modes), size_gb)
    rows, layers = generate_expression(model, adata, settings, device, progress, str(input_path))
    obs = adata.obs.iloc[rows].copy()
    _close(adata)
    var = pd.DataFrame(index=pd.Index(model.registry.gene_names, name="gene"))
    generated = ad.AnnData(obs=obs, var=var, layers=layers)
    generated.uns["pertcontrast_generate"] = {
        "pertcontrast_version": __version__, **settings.to_dict(),
        "max_cells": settings.max_cells or 0, "n_cells_input": int(adata.n_obs), **(model_info or {}),
    }
    write_h5ad_atomic(generated, output)
    return generated


# -- responders -----------------------------------------------------------------------
def _labels_and_control(adata, perturbation_key, control_label, source):
    from pertcontrast.analysis.cells import perturbation_labels
    from pertcontrast.model import perturbation_settings

    key, control = perturbation_settings(adata, perturbation_key, control_label, source)
    labels = perturbation_labels(adata.obs, key, source)
    if not (labels == control).any():
        raise InputDataError(f"{source}: no cells with the control label '{control}' in '{key}'.")
    return labels, control


def _salient(adata, source) -> np.ndarray:
    if SALIENT_KEY not in adata.obsm:
        raise InputDataError(
            f"{source}: no .obsm['{SALIENT_KEY}']; give the output of 'pertcontrast export'."
        )
    return np.asarray(adata.obsm[SALIENT_KEY])


def responders_file(input_path, output, table_path=None, threshold: float = 0.5, seed: int = 0,
                    perturbation_key: str | None = None, control_label: str | None = None):
    """Write ``output`` (the input plus responder columns in ``.obs``) and the
    per-perturbation table (default: ``responders.csv`` beside ``output``)."""
    from pertcontrast.analysis.responders import call_responders

    input_path, source = Path(input_path), str(input_path)
    if input_path.suffix != ".h5ad":
        raise InputDataError(f"{source}: expected the .h5ad written by 'pertcontrast export'.")
    from pertcontrast.analysis.cells import null_controls

    adata = _read(input_path)
    labels, control = _labels_and_control(adata, perturbation_key, control_label, source)
    null = null_controls(adata.obs, labels == control, source)
    result = call_responders(_salient(adata, source), labels, control, null, threshold, seed=seed)
    obs = adata.obs.copy()
    obs["responder_score"] = result.score
    obs["responder_probability"] = result.probability
    obs["responder_call"] = result.call
    _close(adata)
    info = {"pertcontrast_version": __version__, "threshold": threshold, "seed": seed, "control_label": control,
            "n_null_controls": int(null.sum())}
    _write_obs_into_copy(input_path, output, obs, "pertcontrast_responders", info)
    table_path = Path(table_path) if table_path else Path(output).parent / "responders.csv"
    write_table_atomic(result.table, table_path)
    return result


def _write_obs_into_copy(source: Path, output, obs: pd.DataFrame, uns_key: str, info: dict) -> None:
    """Copy ``source`` to ``output`` (atomically) with ``obs`` replaced and ``uns[uns_key]``
    set; the count matrix is copied, never loaded."""
    import h5py
    from anndata.io import read_elem, write_elem

    with atomic_path(output, suffix=".h5ad") as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            del f["obs"]
            write_elem(f, "obs", obs)
            uns = read_elem(f["uns"]) if "uns" in f else {}
            uns[uns_key] = info
            if "uns" in f:
                del f["uns"]
            write_elem(f, "uns", uns)


# -- de -------------------------------------------------------------------------------
def de_file(input_path, model, output, settings, device: str = "auto", model_info: dict | None = None,
            progress: bool = False, perturbations=None):
    """Write the ``de/`` folder: de.parquet, de.csv.gz, de_top.csv, de_settings.json."""
    from pertcontrast.analysis.differential import differential_expression

    from pertcontrast.analysis.cells import null_controls, perturbation_labels

    adata = _read(input_path)
    is_control = perturbation_labels(adata.obs, model.registry.perturbation_key, str(input_path)) \
        == model.registry.control_label
    null = null_controls(adata.obs, is_control, str(input_path))
    result = differential_expression(model, adata, settings, device, progress, str(input_path), perturbations, null)
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
def effects_file(input_path, de_folder, output, settings, perturbation_key: str | None = None,
                 control_label: str | None = None):
    """Write the ``effects/`` folder: effects.csv, perturbation_clusters.csv,
    perturbation_similarity.csv, gene_programs.csv."""
    from pertcontrast.analysis.cells import RESPONDER_COLUMN, null_controls, responder_mask
    from pertcontrast.analysis.clustering import (
        cluster_perturbations,
        gene_programs,
        lfc_profiles,
        salient_profiles,
    )
    from pertcontrast.analysis.effects import effect_table, energy_table

    source = str(input_path)
    adata = _read(input_path)
    labels, control = _labels_and_control(adata, perturbation_key, control_label, source)
    salient = _salient(adata, source)
    if RESPONDER_COLUMN in adata.obs:
        responder = responder_mask(adata.obs, source)
    elif settings.responders_only:
        responder = responder_mask(adata.obs, source)  # raises: names the missing step
    else:
        responder = None
    null = null_controls(adata.obs, labels == control, source)
    _close(adata)
    de_table = read_de_table(de_folder)
    energy = energy_table(salient, labels, control, responder, settings, null)
    if settings.profile == "salient":
        keep = responder if settings.responders_only else None
        profiles = salient_profiles(salient, labels, control, keep, null)
        has_effect = pd.Series(energy["energy_padj"].to_numpy() < settings.fdr, index=energy["perturbation"])
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
