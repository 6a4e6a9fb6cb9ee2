"""Reading count files: ``.h5ad``, 10x ``.h5`` and 10x MatrixMarket folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pertcontrast.errors import InputDataError

H5AD_SUFFIXES = (".h5ad",)


def read_failure(path: Path, error: Exception) -> InputDataError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return InputDataError(
        f"{path}: cannot be read as {'an .h5ad' if path.suffix == '.h5ad' else 'a count'} file "
        f"({reason}); it may be truncated or corrupt. Re-copy or re-create it."
    )


def read_anndata(path, backed: bool = False, layer: str | None = None):
    """Read counts as AnnData; with ``backed=True`` an ``.h5ad`` stays on disk."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder.")
    try:
        if path.is_dir():
            adata = _read_mtx_folder(path)
        elif path.suffix in H5AD_SUFFIXES:
            adata = ad.read_h5ad(path, backed="r" if backed else None)
        elif path.suffix == ".h5":
            adata = _read_10x_h5(path)
        else:
            raise InputDataError(
                f"{path}: unknown file type '{path.suffix}'; use .h5ad, a 10x .h5, or a 10x "
                "MatrixMarket folder (matrix.mtx[.gz], barcodes, features)."
            )
    except InputDataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise read_failure(path, error) from error
    if layer is not None:
        if layer not in adata.layers:
            raise InputDataError(
                f"{path}: no layer '{layer}' (layers: {', '.join(adata.layers.keys()) or 'none'})."
            )
        if backed:
            raise InputDataError(f"{path}: {{param}} cannot be combined with on-disk reading; drop one.", param="layer")
        adata.X = adata.layers[layer]
    if not backed:
        adata.X = compact_index(adata.X)
    return adata


def _read_10x_h5(path: Path):
    import scanpy as sc

    try:
        return sc.read_10x_h5(path)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        raise
    except Exception as error:  # noqa: BLE001 - scanpy raises a bare Exception for missing datasets
        raise read_failure(path, error) from error


def compact_index(matrix):
    """A sparse matrix with 32-bit row pointers and column indices when it fits (files
    written chunk-wise carry 64-bit pointers; several scanpy/sklearn kernels take 32-bit
    only). Other matrices are returned as they are."""
    import scipy.sparse as sp

    if not sp.issparse(matrix) or matrix.format not in ("csr", "csc"):
        return matrix
    limit = np.iinfo(np.int32).max
    if matrix.indptr.dtype == np.int32 and matrix.indices.dtype == np.int32:
        return matrix
    if matrix.nnz >= limit or max(matrix.shape) >= limit:
        return matrix
    matrix.indptr = matrix.indptr.astype(np.int32)
    matrix.indices = matrix.indices.astype(np.int32)
    return matrix


def _read_mtx_folder(path: Path):
    import scanpy as sc

    matrices = list(path.glob("matrix.mtx*"))
    if not matrices:
        raise InputDataError(f"{path}: folder has no matrix.mtx or matrix.mtx.gz (10x MatrixMarket layout).")
    return sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=False)


def in_memory_bytes(path) -> int:
    """What reading an .h5ad's X into memory would take (0 when unknown or not .h5ad)."""
    import h5py

    path = Path(path)
    if path.suffix not in H5AD_SUFFIXES or not path.is_file():
        return 0
    try:
        with h5py.File(path, "r") as f:
            X = f["X"]
            if isinstance(X, h5py.Dataset):
                return int(X.size * X.dtype.itemsize)
            return int(X["data"].shape[0] * (X["data"].dtype.itemsize + X["indices"].dtype.itemsize))
    except (OSError, KeyError):
        return 0


def should_read_backed(path, backed: str | bool = "auto", limit_bytes: float = 1e9) -> bool:
    """``auto``: keep counts on disk when they would take more than ``limit_bytes``."""
    if backed == "auto":
        return in_memory_bytes(path) > limit_bytes
    return bool(backed)
