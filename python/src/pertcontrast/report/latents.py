"""Read what the report needs from a screen's files without loading them: the prepared
file (labels, phase, batch, recorded settings; counts later, for the plotted subsample
only), the export (the two latent means) and, when it ran, the responder calls.

Only a few ``.obs`` columns and the latents are read, so a 300k-cell screen costs a few
tens of MB whatever the size of its count matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.data.screen_files import ScreenFiles
from pertcontrast.errors import InputDataError

SALIENT, BACKGROUND = "X_salient", "X_background"
PHASE, RESPONDER_CALL, IS_CONTROL, SALIENT_NORM = "phase", "responder_call", "is_control", "salient_norm"
UNS_KEYS = {"pertcontrast": "prepared", "pertcontrast_export": "export", "pertcontrast_responders": "responders"}


@dataclass
class Latents:
    """The cells of one screen as the report sees them (all cells, few columns)."""

    path: Path  # the prepared file (counts)
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
        """Raw counts (CSR) of ``rows`` (sorted), read from the prepared file."""
        import h5py
        import scipy.sparse as sp
        from anndata.io import sparse_dataset

        with h5py.File(self.path, "r") as f:
            node = f["X"]
            if isinstance(node, h5py.Dataset):
                return sp.csr_matrix(node[np.asarray(rows), :])
            matrix = sparse_dataset(node)
            return sp.csr_matrix(matrix[np.asarray(rows)])


def read_latents(prepared, latents, responders=None, perturbation_key: str | None = None,
                 control_label: str | None = None) -> Latents:
    """Read the screen; fails with a one-line message naming what is missing and what to run."""
    for path, step in ((prepared, "preprocess"), (latents, "export"), (responders, "responders")):
        if path is not None and Path(path).suffix != ".h5ad":
            raise InputDataError(f"{path}: expected the .h5ad written by 'pertcontrast {step}'.")
    with ScreenFiles(prepared, export=latents, responders=responders) as files:
        try:
            return _read(files, Path(latents), perturbation_key, control_label)
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise InputDataError(
                f"{latents}: cannot be read as an .h5ad ({_first_line(error)}); it may be truncated or "
                "corrupt. Re-create it with 'pertcontrast export'."
            ) from error


def _column(files: ScreenFiles, key: str) -> np.ndarray:
    values = files.read("obs", key)
    if isinstance(values, pd.Categorical):
        return np.asarray(values.astype(object))  # missing values become "nan" with .astype(str)
    return np.asarray(values)


def _read(files: ScreenFiles, latents_path: Path, perturbation_key, control_label) -> Latents:
    for key in (SALIENT, BACKGROUND):
        if not files.has("obsm", key, step="export"):
            raise InputDataError(f"{latents_path} has no .obsm['{key}']; run 'pertcontrast export' first.")
    uns = {key: _plain(files.uns(key, step)) for key, step in UNS_KEYS.items() if files.uns(key, step)}
    settings = uns.get("pertcontrast", {}).get("settings", {})
    labels, control_label, perturbation_key = files.labels_and_control(perturbation_key, control_label)
    salient = np.asarray(files.read_from("export", "obsm", SALIENT), dtype=np.float32)
    background = np.asarray(files.read_from("export", "obsm", BACKGROUND), dtype=np.float32)
    batch_key = settings.get("batch_key") or None
    has_batch = bool(batch_key) and files.has("obs", batch_key)
    called = files.has("obs", RESPONDER_CALL, step="responders")
    return Latents(
        path=files.prepared, salient=salient, background=background, perturbation=labels,
        control_label=str(control_label), perturbation_key=str(perturbation_key),
        is_control=labels == control_label,
        salient_norm=(_column(files, SALIENT_NORM).astype(np.float32) if files.has("obs", SALIENT_NORM)
                      else np.linalg.norm(salient, axis=1)),
        phase=_column(files, PHASE).astype(str) if files.has("obs", PHASE) else None,
        batch=_column(files, batch_key).astype(str) if has_batch else None,
        batch_key=batch_key if has_batch else None,
        responder_call=np.asarray(pd.Series(files.read_from("responders", "obs", RESPONDER_CALL)).astype(str))
        if called else None,
        uns=uns, has_counts=_has_counts(files.prepared), truth=_read_truth(files.prepared),
    )


def _read_truth(path: Path) -> pd.DataFrame | None:
    """What ``pertcontrast simulate`` recorded about each perturbation, in the prepared
    file (only its small per-perturbation table is read, not the true fold changes)."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if "uns/truth/perturbations" not in f:
            return None
        table = pd.DataFrame(_plain(read_elem(f["uns/truth/perturbations"])))
    if not {"perturbation", "has_effect"} <= set(table.columns):
        return None
    table["perturbation"] = table["perturbation"].astype(str)
    table["has_effect"] = table["has_effect"].astype(bool)
    return table.set_index("perturbation")


def _has_counts(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return "X" in f and _n_stored(f["X"]) > 0


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
