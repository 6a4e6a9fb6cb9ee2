"""Checks on a screen before any work (names, the obs columns the settings name) and the
small lookups the passes share (gene symbols, mitochondrial genes, perturbation targets)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pertcontrast.data import validate
from pertcontrast.data.preprocess.settings import PreprocessSettings
from pertcontrast.errors import InputDataError

CELL_CYCLE_COLUMNS = ("S_score", "G2M_score")


def check_shape_and_names(obs_names: pd.Index, var_names: pd.Index, source: str) -> None:
    validate.check_unique_names(obs_names, "cell", source)
    validate.check_unique_names(var_names, "gene", source)
    if len(obs_names) == 0 or len(var_names) == 0:
        raise InputDataError(
            f"{source}: the count matrix is empty ({len(obs_names)} cells x {len(var_names)} genes)."
        )


def validated_obs_keys(settings: PreprocessSettings) -> list[str]:
    """The obs columns that :func:`check_obs` reads."""
    keys = [settings.perturbation_key, *settings.all_categorical_keys]
    computed = CELL_CYCLE_COLUMNS if settings.score_cell_cycle else ()
    keys += [k for k in settings.continuous_covariate_keys if k not in computed]
    return list(dict.fromkeys(keys))


def check_obs(obs: pd.DataFrame, settings: PreprocessSettings, source: str) -> None:
    """The perturbation column, the controls and the covariate columns."""
    validate.check_perturbations(
        obs, settings.perturbation_key, settings.control_labels, source, settings.min_control_cells
    )
    labels = set(obs[settings.perturbation_key].astype(str))
    if len(settings.control_labels) > 1 and settings.control_label in labels - set(settings.control_labels):
        raise InputDataError(
            f"{source}: '{settings.control_label}' is a perturbation in column '{settings.perturbation_key}', "
            "but several control labels ({param}) are merged under that name; rename that perturbation.",
            param="control_labels",
        )
    for key in settings.all_categorical_keys:
        param = "batch_key" if key == settings.batch_key else "categorical_covariate_keys"
        validate.check_obs_column(obs, key, source, "covariate", param)
    for key in settings.continuous_covariate_keys:
        if key in CELL_CYCLE_COLUMNS and settings.score_cell_cycle:
            continue  # computed here; usable as covariates ("regress out" the cycle)
        validate.check_obs_column(obs, key, source, "covariate", "continuous_covariate_keys")
        values = pd.to_numeric(obs[key], errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
            raise InputDataError(
                f"{source}: continuous covariate column '{key}' has non-numeric or infinite "
                "values; fix them or pass it as {param}.", param="categorical_covariate_keys"
            )


def gene_symbols(var: pd.DataFrame, settings: PreprocessSettings) -> pd.Series:
    """Gene symbols (``gene_symbol_key`` or the var names), positionally indexed."""
    if settings.gene_symbol_key:
        if settings.gene_symbol_key not in var:
            raise InputDataError(
                f"var has no column '{settings.gene_symbol_key}' ({{param}}); "
                f"var columns: {', '.join(var.columns) or 'none'}.", param="gene_symbol_key"
            )
        return var[settings.gene_symbol_key].astype(str).reset_index(drop=True)
    return pd.Series(var.index.astype(str))


def mito_mask(symbols: pd.Series, settings: PreprocessSettings) -> np.ndarray:
    return symbols.str.upper().str.startswith(settings.mito_prefix.upper()).to_numpy()


def target_genes(obs: pd.DataFrame, var_names: pd.Index, settings: PreprocessSettings) -> set[str]:
    """The perturbations' target genes present among ``var_names``."""
    if settings.target_gene_key:
        validate.check_obs_column(obs, settings.target_gene_key, "input", "target gene", "target_gene_key")
        candidates = set(obs[settings.target_gene_key].astype(str))
    else:
        candidates = set(obs[settings.perturbation_key].astype(str))
    candidates -= set(settings.control_labels)
    return candidates & set(var_names.astype(str))


def label_codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and string names of a label column (labels compared as strings)."""
    if isinstance(values, pd.Categorical):
        names = np.asarray(values.categories.astype(str))
        if len(set(names)) == len(names):
            return np.asarray(values.codes), names
    as_str = pd.Categorical(pd.Series(np.asarray(values)).astype(str))
    return np.asarray(as_str.codes), np.asarray(as_str.categories.astype(str))
