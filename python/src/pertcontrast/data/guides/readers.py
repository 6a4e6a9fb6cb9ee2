"""Reading a screen as it comes off the sequencer.

* Counts with both feature types: a Cell Ranger ``filtered_feature_bc_matrix.h5`` (10x HDF5
  v3), its MatrixMarket folder (``matrix.mtx.gz``, ``features.tsv.gz`` with a feature-type
  column, ``barcodes.tsv.gz``), or an ``.h5ad`` whose ``var["feature_types"]`` says which
  rows are "Gene Expression" and which "CRISPR Guide Capture".
* A separate guide x cell UMI matrix: ``.h5ad``, 10x ``.h5``, a MatrixMarket folder or
  ``*matrix.mtx[.gz]`` file (names beside it), or a ``.csv``/``.tsv`` table (either
  orientation: the side whose names are the guide table's guides is the guide side).
* A calls table: Cell Ranger's ``crispr_analysis/protospacer_calls_per_cell.csv``
  (``cell_barcode``, ``num_features``, ``feature_call`` and ``num_umis``, '|'-separated) or
  a plain table with a cell and a guide column (one call per row, or '|'-separated).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.reading import compact_index
from pertcontrast.errors import InputDataError

log = logging.getLogger("pertcontrast")
GENE_EXPRESSION = "Gene Expression"
GUIDE_CAPTURE = "CRISPR Guide Capture"
CELL_COLUMNS = ("cell_barcode", "cell", "barcode")
GUIDE_COLUMNS = ("feature_call", "guide", "grna", "sgrna")
UMI_COLUMNS = ("num_umis", "umis", "umi_count")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")


@dataclass
class GuideMatrix:
    """Guide UMIs: ``umis`` is cells x guides (CSR, integers)."""

    cells: pd.Index
    guides: pd.Index
    umis: sp.csr_matrix
    source: str


def read_counts(path) -> tuple[object, GuideMatrix | None]:
    """The Gene Expression counts (AnnData, gene symbols made unique) and, when the file has
    them, the CRISPR Guide Capture UMIs."""
    path = Path(path)
    adata = _read_features(path)
    if "feature_types" not in adata.var:
        return _expression(adata, path), None
    types = adata.var["feature_types"].astype(str)
    if not (types == GENE_EXPRESSION).any():
        raise InputDataError(
            f"{path}: no '{GENE_EXPRESSION}' features (feature types: {', '.join(sorted(set(types)))})."
        )
    guides = None
    if (types == GUIDE_CAPTURE).any():
        capture = adata[:, (types == GUIDE_CAPTURE).to_numpy()]
        guides = GuideMatrix(pd.Index(capture.obs_names), pd.Index(capture.var_names), _integers(capture.X, path),
                             str(path))
    expression = adata[:, (types == GENE_EXPRESSION).to_numpy()].copy()
    expression.var = expression.var.drop(columns=["feature_types"])
    return _expression(expression, path), guides


def read_guides(path, known_guides: pd.Index) -> GuideMatrix | pd.DataFrame:
    """A guide UMI matrix, or a calls table (columns ``cell``, ``guide``, ``umis``)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder.")
    if path.name.lower().endswith(TABLE_SUFFIXES):
        return _read_guide_text(path, known_guides)
    if path.is_file() and ".mtx" in path.suffixes:
        path = _matrix_market_file(path)
    adata = _read_features(path)
    if "feature_types" in adata.var and (adata.var["feature_types"] == GUIDE_CAPTURE).any():
        adata = adata[:, (adata.var["feature_types"] == GUIDE_CAPTURE).to_numpy()]
    cells, guides, matrix = _oriented(pd.Index(adata.obs_names), pd.Index(adata.var_names), adata.X,
                                      known_guides, path)
    return GuideMatrix(cells, guides, _integers(matrix, path), str(path))


def _read_features(path: Path):
    """Every feature of a 10x .h5, MatrixMarket folder or .h5ad, with its feature type when known."""
    import anndata as ad
    import scanpy as sc

    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder.")
    try:
        if path.is_dir():
            if not list(path.glob("*matrix.mtx*")):
                raise InputDataError(f"{path}: folder has no matrix.mtx or matrix.mtx.gz (10x MatrixMarket layout).")
            prefix = next(path.glob("*matrix.mtx*")).name.split("matrix.mtx")[0] or None
            return sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=False, gex_only=False, prefix=prefix)
        if path.suffix == ".h5":
            return sc.read_10x_h5(path, gex_only=False)
        if path.suffix == ".h5ad":
            return ad.read_h5ad(path)
    except InputDataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputDataError(f"{path}: cannot be read as a count file ({reason}); it may be truncated or corrupt, "
                             "or not in the 10x layout.") from error
    raise InputDataError(f"{path}: unknown file type '{path.suffix}'; use a 10x .h5, a 10x MatrixMarket folder "
                         "or an .h5ad.")


def _matrix_market_file(path: Path) -> Path:
    if "matrix.mtx" not in path.name:
        raise InputDataError(
            f"{path}: a MatrixMarket guide matrix must be named *matrix.mtx[.gz], with barcodes.tsv[.gz] and "
            "features.tsv[.gz] (same prefix) beside it; or give the folder."
        )
    return path.parent


def _expression(adata, path: Path):
    adata.X = compact_index(sp.csr_matrix(adata.X) if not sp.issparse(adata.X) else adata.X.tocsr())
    blank = [c for c in adata.var.columns if adata.var[c].dtype == object and (adata.var[c] == "").all()]
    adata.var = adata.var.drop(columns=blank)  # guide-capture fields (read, pattern...) are empty for genes
    if adata.var_names.has_duplicates:
        n = int(adata.var_names.duplicated().sum())
        adata.var_names_make_unique()
        log.info("%s: %d duplicate gene names made unique (e.g. NAME-1); var['gene_ids'] keeps the ids", path.name, n)
    return adata


def _integers(matrix, path: Path) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, copy=True)
    data = matrix.data
    if data.size and (not np.isfinite(data).all() or (data < 0).any() or (data != np.round(data)).any()):
        raise InputDataError(f"{path}: guide UMI counts must be whole numbers of 0 or more.")
    return sp.csr_matrix((data.astype(np.int64), matrix.indices, matrix.indptr), shape=matrix.shape)


def _oriented(rows: pd.Index, columns: pd.Index, matrix, known: pd.Index, path: Path):
    """(cells, guides, cells x guides): the side named like the guide table is the guides."""
    in_columns, in_rows = columns.isin(known).sum(), rows.isin(known).sum()
    if in_columns == 0 and in_rows == 0:
        raise InputDataError(
            f"{path}: no guide name matches the guide table (e.g. {', '.join(map(repr, columns[:3]))} here, "
            f"{', '.join(map(repr, known[:3]))} in the table); the names must be the same."
        )
    if in_columns >= in_rows:
        return rows, columns, matrix
    return columns, rows, sp.csr_matrix(matrix).T


def _read_guide_text(path: Path, known: pd.Index) -> GuideMatrix | pd.DataFrame:
    sep = "\t" if ".tsv" in path.suffixes or path.suffix == ".txt" else ","
    try:
        header = pd.read_csv(path, sep=sep, nrows=0).columns
        lowered = [str(c).strip().lower() for c in header]
        if any(c in CELL_COLUMNS for c in lowered) and any(c in GUIDE_COLUMNS for c in lowered):
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
            table.columns = lowered
            return _calls(table, path)
        table = pd.read_csv(path, sep=sep, index_col=0)
    except InputDataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot be read as a guide table ({_first_line(error)}).") from error
    try:
        values = sp.csr_matrix(table.to_numpy(dtype=float))
    except ValueError as error:
        raise InputDataError(f"{path}: a guide matrix table must hold only numbers after its first column "
                             f"({_first_line(error)}).") from error
    cells, guides, matrix = _oriented(table.index.astype(str), table.columns.astype(str), values, known, path)
    return GuideMatrix(pd.Index(cells), pd.Index(guides), _integers(matrix, path), str(path))


def _calls(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per (cell, guide) call; UMIs 0 where the table has none."""
    cell = next(c for c in CELL_COLUMNS if c in table.columns)
    guide = next(c for c in GUIDE_COLUMNS if c in table.columns)
    umi = next((c for c in UMI_COLUMNS if c in table.columns), None)
    guides = table[guide].str.split("|")
    umis = table[umi].str.split("|") if umi else guides.map(lambda g: ["0"] * len(g))
    lengths = guides.map(len) != umis.map(len)
    if lengths.any():
        row = int(lengths.to_numpy().argmax())
        raise InputDataError(
            f"{path.name} row {row + 2}, column '{umi}': {len(umis.iloc[row])} UMI counts for "
            f"{len(guides.iloc[row])} guides in '{guide}'; give one count per guide, '|'-separated."
        )
    calls = pd.DataFrame({"cell": table[cell].repeat(guides.map(len)).to_numpy(),
                          "guide": np.concatenate(guides.to_numpy()) if len(guides) else [],
                          "umis": np.concatenate(umis.to_numpy()) if len(umis) else []})
    calls["guide"] = calls["guide"].str.strip()
    calls = calls[calls["guide"] != ""]
    numbers = pd.to_numeric(calls["umis"].replace("", "0"), errors="coerce")
    if numbers.isna().any() or (numbers < 0).any():
        bad = calls["umis"][numbers.isna() | (numbers < 0)].iloc[0]
        raise InputDataError(f"{path.name}, column '{umi}': {bad!r} is not a UMI count (a whole number).")
    calls["umis"] = numbers.astype(np.int64)
    log.info("%s: %d guide calls in %d cells (calls table)", path.name, len(calls), calls["cell"].nunique())
    calls = calls.reset_index(drop=True)
    calls.attrs["source"] = str(path)
    return calls


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
