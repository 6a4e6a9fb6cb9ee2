"""Read what the report needs from a latents ``.h5ad`` without loading the file.

Only a few ``.obs`` columns, the two latent means and the recorded settings are read;
counts are read later for the plotted subsample only. A 300k-cell screen therefore costs
a few tens of MB, whatever the size of its count matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError

SALIENT, BACKGROUND = "X_salient", "X_background"
PHASE, RESPONDER_CALL, IS_CONTROL, SALIENT_NORM = "phase", "responder_call", "is_control", "salient_norm"
UNS_KEYS = ("pertcontrast", "pertcontrast_export", "pertcontrast_responders")


@dataclass
class Latents:
    """The cells of one screen as the report sees them (all cells, few columns)."""

    path: Path
    salient: np.ndarray
    background: np.ndarray
    perturbation: np.ndarray  # labels as str
    control_label: str
    perturbation_key: str
    is_control: np.ndarray
    salient_norm: np.ndarray
    phase: np.ndarray | None = None
    batch: np.ndarray | None = None
    batch_key: str | None = None
    responder_call: np.ndarray | None = None
    uns: dict = field(default_factory=dict)
    has_counts: bool = False
    # a simulated screen's truth per perturbation (program, has_effect), else None
    truth: pd.DataFrame | None = None

    @property
    def n_cells(self) -> int:
        return len(self.perturbation)

    def counts(self, rows: np.ndarray):
        """Raw counts (CSR) of ``rows`` (sorted), read from the file."""
        import h5py
        import scipy.sparse as sp
        from anndata.io import sparse_dataset

        with _open(self.path) as f:
            node = f["X"]
            if isinstance(node, h5py.Dataset):
                return sp.csr_matrix(node[np.asarray(rows), :])
            matrix = sparse_dataset(node)
            return sp.csr_matrix(matrix[np.asarray(rows)])


def read_latents(path, perturbation_key: str | None = None, control_label: str | None = None) -> Latents:
    """Read ``path``; fails with a one-line message naming what is missing and what to run."""
    path = Path(path)
    if path.suffix != ".h5ad":
        raise InputDataError(f"{path}: expected the .h5ad written by 'pertcontrast export'.")
    with _open(path) as f:
        try:
            return _read(f, path, perturbation_key, control_label)
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise InputDataError(
                f"{path}: cannot be read as an .h5ad ({_first_line(error)}); it may be truncated or "
                "corrupt. Re-create it with 'pertcontrast export'."
            ) from error


def _read(f, path: Path, perturbation_key, control_label) -> Latents:
    obsm = f["obsm"] if "obsm" in f else {}
    for key in (SALIENT, BACKGROUND):
        if key not in obsm:
            raise InputDataError(f"{path} has no .obsm['{key}']; run 'pertcontrast export' first.")
    uns = _read_uns(f)
    settings = uns.get("pertcontrast", {}).get("settings", {})
    perturbation_key = perturbation_key or settings.get("perturbation_key")
    control_label = control_label or settings.get("control_label")
    if not perturbation_key or not control_label:
        raise InputDataError(
            f"{path} has no .uns['pertcontrast']['settings'] naming the perturbation column and the "
            "control label; pass --perturbation-key and --control-label (or run 'pertcontrast preprocess')."
        )
    obs = f["obs"]
    if perturbation_key not in obs:
        raise InputDataError(
            f"{path} has no .obs['{perturbation_key}'] (the perturbation column); pass --perturbation-key."
        )
    salient = np.asarray(obsm[SALIENT][...], dtype=np.float32)
    background = np.asarray(obsm[BACKGROUND][...], dtype=np.float32)
    labels = _column(obs, perturbation_key).astype(str)
    if not (len(salient) == len(background) == len(labels)):
        raise InputDataError(
            f"{path}: .obsm['{SALIENT}'] has {len(salient)} rows, .obsm['{BACKGROUND}'] {len(background)} "
            f"and .obs {len(labels)}; re-run 'pertcontrast export'."
        )
    if not (labels == control_label).any():
        raise InputDataError(
            f"{path}: no cells with the control label '{control_label}' in .obs['{perturbation_key}']; "
            "pass --control-label."
        )
    batch_key = settings.get("batch_key") or None
    latents = Latents(
        path=path, salient=salient, background=background, perturbation=labels,
        control_label=str(control_label), perturbation_key=str(perturbation_key),
        is_control=labels == control_label,
        salient_norm=(_column(obs, SALIENT_NORM).astype(np.float32) if SALIENT_NORM in obs
                      else np.linalg.norm(salient, axis=1)),
        phase=_column(obs, PHASE).astype(str) if PHASE in obs else None,
        batch=_column(obs, batch_key).astype(str) if batch_key and batch_key in obs else None,
        batch_key=batch_key if batch_key and batch_key in obs else None,
        responder_call=_column(obs, RESPONDER_CALL).astype(str) if RESPONDER_CALL in obs else None,
        uns=uns, has_counts="X" in f and _n_stored(f["X"]) > 0, truth=_read_truth(f),
    )
    return latents


def _read_truth(f) -> pd.DataFrame | None:
    """What ``pertcontrast simulate`` recorded about each perturbation (only its small
    per-perturbation table is read, not the true fold changes)."""
    from anndata.io import read_elem

    if "uns/truth/perturbations" not in f:
        return None
    table = pd.DataFrame(_plain(read_elem(f["uns/truth/perturbations"])))
    if not {"perturbation", "has_effect"} <= set(table.columns):
        return None
    table["perturbation"] = table["perturbation"].astype(str)
    table["has_effect"] = table["has_effect"].astype(bool)
    return table.set_index("perturbation")


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputDataError(
            f"{path}: cannot be read as an .h5ad ({_first_line(error)}); it may be truncated or corrupt. "
            "Re-create it with 'pertcontrast export'."
        ) from error


def _column(obs, key: str) -> np.ndarray:
    from anndata.io import read_elem

    values = read_elem(obs[key])
    if isinstance(values, pd.Categorical):
        return np.asarray(values.astype(object))  # missing values become "nan" with .astype(str)
    return np.asarray(values)


def _read_uns(f) -> dict:
    from anndata.io import read_elem

    if "uns" not in f:
        return {}
    return {key: _plain(read_elem(f["uns"][key])) for key in UNS_KEYS if key in f["uns"]}


def _plain(value):
    """Recorded settings as JSON-friendly Python values (arrays become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _n_stored(node) -> int:
    import h5py

    if isinstance(node, h5py.Dataset):
        return int(node.size)
    shape = node.attrs.get("shape")
    return int(np.prod(shape)) if shape is not None else 0


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
