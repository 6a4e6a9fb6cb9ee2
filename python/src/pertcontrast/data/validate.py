"""Checks on user data, each failing with one actionable line that names what is wrong."""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.errors import InputDataError

MIN_CONTROL_CELLS = 50


def _values(block) -> np.ndarray:
    if sp.issparse(block):
        return np.asarray(block.data)
    return np.asarray(block).ravel()


def check_count_values(block, source: str) -> None:
    """Raw counts only: finite, non-negative and integer-valued."""
    values = _values(block)
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.number):
        raise InputDataError(f"{source}: the count matrix is not numeric ({values.dtype}).")
    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite][0]
        raise InputDataError(
            f"{source}: the count matrix has {int((~finite).sum())} NaN or infinite values "
            f"(e.g. {bad}); pass raw UMI counts."
        )
    if (values < 0).any():
        raise InputDataError(
            f"{source}: the count matrix has negative values (min {values.min():.3g}); it looks "
            "scaled or centred. pertcontrast needs raw UMI counts (e.g. layers['counts'])."
        )
    if np.issubdtype(values.dtype, np.integer):
        return
    fractional = values != np.round(values)
    if fractional.any():
        example = values[fractional][0]
        raise InputDataError(
            f"{source}: the count matrix has non-integer values (e.g. {example:.4g}); it looks "
            "log-normalised or scaled. pertcontrast needs raw UMI counts: use the raw layer "
            "({param:layer=counts}) or the original count file."
        )


def check_counts(matrix, source: str, chunk_rows: int = 20_000) -> None:
    """Check a whole matrix chunk by chunk (works on backed data without loading it)."""
    n_obs, n_vars = matrix.shape
    if n_obs == 0 or n_vars == 0:
        raise InputDataError(f"{source}: the count matrix is empty ({n_obs} cells x {n_vars} genes).")
    for start in range(0, n_obs, chunk_rows):
        check_count_values(matrix[start : start + chunk_rows], source)


def suggest(value: str, options) -> str:
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(value), options, n=3, cutoff=0.5)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[v] for v in lowered if str(value).lower() in v][:3]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_obs_column(obs: pd.DataFrame, key: str, source: str, role: str, param: str) -> None:
    """``param``: the setting that named ``key`` (the CLI phrases it as its flag)."""
    if key not in obs.columns:
        raise InputDataError(
            f"{source}: obs has no {role} column '{key}'.{suggest(key, obs.columns)} "
            f"Pass the right name with {{param}} (columns: {', '.join(map(str, obs.columns[:12]))}).", param=param
        )
    missing = obs[key].isna()
    if missing.any():
        raise InputDataError(
            f"{source}: {role} column '{key}' is empty for {int(missing.sum())} cells "
            f"(e.g. {obs.index[missing][0]!r}); fill or drop them."
        )
    if not pd.api.types.is_numeric_dtype(obs[key]):
        blank = obs[key].astype(str).str.strip().eq("").to_numpy()
        if blank.any():
            rows = ", ".join(str(i + 1) for i in np.flatnonzero(blank)[:5])
            raise InputDataError(
                f"{source}: {role} column '{key}' is blank for {int(blank.sum())} cells (rows {rows}"
                f"{', ...' if blank.sum() > 5 else ''}; e.g. cell {obs.index[blank][0]!r}); give every cell a "
                "label (controls included) or drop those cells."
            )


def check_perturbations(
    obs: pd.DataFrame,
    perturbation_key: str,
    control_label,
    source: str,
    min_control_cells: int = MIN_CONTROL_CELLS,
) -> None:
    """The perturbation column, the control label(s) in it (one str or several), enough
    control cells (all kinds together) and at least one perturbed cell."""
    check_obs_column(obs, perturbation_key, source, "perturbation", "perturbation_key")
    control_labels = [control_label] if isinstance(control_label, str) else list(control_label)
    labels = obs[perturbation_key].astype(str)
    counts = labels.value_counts()
    for label in control_labels:
        if label not in counts.index:
            raise InputDataError(
                f"{source}: control label '{label}' not found in column '{perturbation_key}'."
                f"{suggest(label, counts.index)} Pass it with {{param}}.", param="control_label"
            )
    n_controls = int(counts[control_labels].sum())
    if n_controls < min_control_cells:
        named = ", ".join(f"'{label}'" for label in control_labels)
        raise InputDataError(
            f"{source}: only {n_controls} control cells ({named}); at least "
            f"{min_control_cells} are needed to learn the background ({{param}}).", param="min_control_cells"
        )
    if len(counts) <= len(control_labels):
        raise InputDataError(f"{source}: column '{perturbation_key}' has no perturbed cells, only controls.")


def check_unique_names(names: pd.Index, what: str, source: str) -> None:
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise InputDataError(
            f"{source}: {len(duplicated)} duplicate {what} names (e.g. {duplicated[0]!r}); "
            f"make them unique (AnnData.{'obs' if what == 'cell' else 'var'}_names_make_unique())."
        )
