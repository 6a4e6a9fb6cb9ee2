"""Row sources: what the passes read a screen through, in blocks of cells.

:class:`InMemoryRows` wraps an AnnData in memory; :class:`H5adRows` an ``.h5ad`` on disk,
read a block of rows at a time with obs one column at a time, so memory is set by the
block size and the genes, not by the cells. Both give the same blocks: float32 CSR counts
of the rows ``start:stop`` as stored, subset to the cells and genes asked for.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.errors import InputDataError, ParameterError
from pertcontrast.progress import track

log = logging.getLogger("pertcontrast")
DEFAULT_CHUNK_SIZE = 20_000
IN_MEMORY_LIMIT_BYTES = 1e9  # auto mode: on-disk blocks when the counts would take more in memory


def take(values, rows: np.ndarray | None):
    """``values[rows]``; categoricals lose the categories no kept cell has (as AnnData subsets)."""
    if rows is None:
        return values
    if isinstance(values, pd.Categorical):
        return values[rows].remove_unused_categories()
    return values[rows]


def blocks(matrix, chunk_size: int, rows: np.ndarray | None = None, genes: np.ndarray | None = None):
    """``(start, stop, block)``: rows ``start:stop`` of ``matrix`` as stored, subset to the masks."""
    n_obs = matrix.shape[0]
    # a line per block (at most every 15 s) in the log: passes over a large screen take minutes
    for start in track(range(0, n_obs, chunk_size), "preprocess", "block", write=log.info):
        stop = min(start + chunk_size, n_obs)
        if rows is not None and not rows[start:stop].any():
            continue
        block = matrix[start:stop]
        if rows is not None and not rows[start:stop].all():
            block = block[rows[start:stop]]
        if genes is not None and not genes.all():
            block = block[:, genes]
        yield start, stop, block


class InMemoryRows:
    """An AnnData in memory (counts in ``X``: CSR, CSC or dense)."""

    def __init__(self, adata):
        matrix = adata.X
        if sp.issparse(matrix) and matrix.format != "csr":
            matrix = sp.csr_matrix(matrix)
        self.matrix = matrix
        self.n_obs, self.n_vars = (int(n) for n in adata.shape)
        self.var = adata.var
        self.obs = adata.obs
        self.obs_columns = [str(c) for c in adata.obs.columns]

    def obs_names(self) -> np.ndarray:
        return np.asarray(self.obs.index.astype(str))

    def obs_column(self, key: str):
        values = self.obs[key]
        return values.values if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy()

    def obs_frame(self, keys, rows: np.ndarray | None = None) -> pd.DataFrame:
        return self.obs if rows is None else self.obs.iloc[rows]

    def raw_blocks(self, chunk_size: int, rows=None, genes=None):
        """``(start, stop, block)``, the block as stored (for the count checks)."""
        return blocks(self.matrix, chunk_size, rows, genes)


def _encoding(element) -> str:
    value = element.attrs.get("encoding-type", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def count_element(f, layer: str | None, path):
    if layer is None:
        return f["X"]
    layers = f.get("layers")
    if layers is None or layer not in layers:
        names = ", ".join(layers.keys()) if layers is not None else ""
        raise InputDataError(f"{path}: no layer '{layer}' (layers: {names or 'none'}).")
    return layers[layer]


def row_reader(element):
    """Row slices of an on-disk CSR group or dense dataset."""
    from anndata.io import sparse_dataset

    return sparse_dataset(element) if _encoding(element) == "csr_matrix" else element


def by_rows(element) -> bool:
    """Whether an on-disk element can be read a block of rows at a time."""
    import h5py

    if isinstance(element, h5py.Dataset):
        return element.ndim == 2
    return _encoding(element) == "csr_matrix"


def unsupported_on_disk(path, layer: str | None = None) -> str | None:
    """Why ``path`` cannot be read in blocks of rows from disk (None when it can)."""
    import h5py

    path = Path(path)
    if path.suffix != ".h5ad" or not path.is_file():
        return "reading blocks from disk needs an .h5ad file"
    try:
        with h5py.File(path, "r") as f:
            matrix = count_element(f, layer, path)
            if _encoding(f["obs"]) != "dataframe":
                return "obs is in an old AnnData format (re-save the file with a recent anndata)"
            if not by_rows(matrix):
                return f"the counts are stored as {_encoding(matrix) or 'an unknown type'}, not CSR or dense rows"
    except (OSError, KeyError) as error:
        return f"it cannot be opened ({error})"
    return None


def in_memory_bytes(path, layer: str | None = None) -> int:
    """What the counts would take in memory: stored values x 8 bytes (0 when unknown)."""
    import h5py

    path = Path(path)
    if path.suffix != ".h5ad" or not path.is_file():
        return 0
    try:
        with h5py.File(path, "r") as f:
            matrix = count_element(f, layer, path)
            n = matrix.size if isinstance(matrix, h5py.Dataset) else matrix["data"].shape[0]
            return int(n) * 8
    except (OSError, KeyError, InputDataError):
        return 0


def should_read_from_disk(path, layer: str | None = None) -> bool:
    """Auto mode: blocks from disk for an .h5ad whose counts would take more than ~1 GB."""
    if in_memory_bytes(path, layer) <= IN_MEMORY_LIMIT_BYTES:
        return False
    reason = unsupported_on_disk(path, layer)
    if reason:
        log.warning("%s: reading it into memory: %s", path, reason)
        return False
    return True


class H5adRows:
    """An .h5ad on disk: rows of the counts by block, obs one column at a time, var."""

    def __init__(self, f, path, layer: str | None):
        from anndata.io import read_elem

        self.file, self.path = f, path
        element = count_element(f, layer, path)
        reason = unsupported_on_disk(path, layer)
        if reason:
            raise ParameterError(f"{path}: cannot be read in blocks from disk ({reason}); use {{param:chunked=False}}.")
        self.matrix = row_reader(element)
        self.n_obs, self.n_vars = (int(n) for n in self.matrix.shape)
        self.var = read_elem(f["var"])
        self.obs_columns = [str(c) for c in f["obs"].attrs.get("column-order", [])]

    def obs_column(self, key: str):
        from anndata.io import read_elem

        return read_elem(self.file["obs"][key])

    @property
    def index_key(self) -> str:
        return str(self.file["obs"].attrs["_index"])

    def obs_names(self) -> np.ndarray:
        from anndata.io import read_elem

        return np.asarray(read_elem(self.file["obs"][self.index_key])).astype(str)

    def obs_frame(self, keys, rows: np.ndarray | None = None) -> pd.DataFrame:
        """obs with ``keys`` loaded (at ``rows``) and other columns as empty stand-ins, so the
        checks see every column name; indexed by the cell names."""
        names = self.obs_names() if rows is None else self.obs_names()[rows]
        present = [k for k in keys if k in self.obs_columns]
        loaded = {k: take(self.obs_column(k), rows) for k in present}
        filler = np.zeros(len(names), dtype=bool)
        data = {c: loaded.get(c, filler) for c in self.obs_columns}
        return pd.DataFrame(data, index=pd.Index(names), copy=False)

    def raw_blocks(self, chunk_size: int, rows=None, genes=None):
        """``(start, stop, block)``, the block as stored (for the count checks)."""
        return blocks(self.matrix, chunk_size, rows, genes)


def counts(rows, chunk_size: int, cells: np.ndarray | None = None, genes: np.ndarray | None = None):
    """``(start, stop, block)``: float32 CSR counts of rows ``start:stop``, subset to the masks."""
    for start, stop, block in rows.raw_blocks(chunk_size, cells, genes):
        yield start, stop, sp.csr_matrix(block, dtype=np.float32)


@contextlib.contextmanager
def open_h5ad(path, layer: str | None = None):
    """The on-disk rows of ``path``, closed on exit; one-line errors for unreadable files."""
    import h5py

    from pertcontrast.data.reading import read_failure

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder.")
    if path.suffix != ".h5ad" or path.is_dir():
        raise ParameterError(
            f"{path}: reading blocks from disk ({{param:chunked=True}}) needs an .h5ad file; use "
            "{param:chunked=False} for 10x .h5 "
            "and MatrixMarket input."
        )
    try:
        f = h5py.File(path, "r")
        f["X"], f["obs"], f["var"]
    except (OSError, KeyError, ValueError) as error:
        raise read_failure(path, error) from error
    with f:
        yield H5adRows(f, path, layer)
