"""Preprocessing a screen too large for memory, in passes over row chunks of an ``.h5ad``.

Same steps, settings and output as :func:`pertcontrast.data.preprocess.preprocess`:

1. all cells: count checks, per-cell QC metrics, all-zero and rarely detected genes;
2. kept cells x kept genes: gene means and variances of the counts (seurat_v3) and gene
   means of the log-normalised data (control genes of the cell-cycle scores);
3. clipped sums for seurat_v3's standardised variance, and the cell-cycle scores;
4. write the kept cells x selected genes (CSR, float32) chunk by chunk, then obs one
   column at a time, to a temporary file that is renamed onto the output.

Peak memory is one chunk of rows plus a few numbers per gene and per cell; obs columns
are read and written one at a time. The results equal the in-memory path's: highly
variable ranks are bit-identical (integer count sums are exact, the clipped sums run in
the same order as scanpy's), and the cell-cycle control genes are drawn as in scanpy's
``score_genes`` (25 expression bins, ``random_state=0``); gene means over chunks can
differ from the in-memory means in the last bit, which moves a control gene only if two
genes tie to ~1e-16. Differences: the obs checks run before the count checks (so with
several problems another one may be reported first), ``uns[<key>_colors]`` are not
pruned with unused categories.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data import validate
from pertcontrast.data.preprocess import (
    PHASES,
    UNS_KEY,
    PreprocessReport,
    PreprocessSettings,
    cell_cycle_marker_phases,
    enough_cell_cycle_markers,
    gene_symbols,
    mito_mask,
    recorded_settings,
    target_genes,
    validate_obs,
    validated_obs_keys,
)
from pertcontrast.errors import InputDataError, ParameterError
from pertcontrast.progress import track

log = logging.getLogger("pertcontrast")
DEFAULT_CHUNK_SIZE = 20_000
IN_MEMORY_LIMIT_BYTES = 1e9  # auto mode: chunked when X would take more in memory
N_BINS, SEED, TARGET_SUM, SPAN = 25, 0, 1e4, 0.3


# ----------------------------------------------------------------------------- input


def _count_matrix(f, layer: str | None, path):
    if layer is None:
        return f["X"]
    layers = f.get("layers")
    if layers is None or layer not in layers:
        names = ", ".join(layers.keys()) if layers is not None else ""
        raise InputDataError(f"{path}: no layer '{layer}' (layers: {names or 'none'}).")
    return layers[layer]


def _encoding(elem) -> str:
    value = elem.attrs.get("encoding-type", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def chunked_unsupported(path, layer: str | None = None) -> str | None:
    """Why ``path`` cannot be preprocessed chunk-wise (None when it can)."""
    import h5py

    path = Path(path)
    if path.suffix != ".h5ad" or not path.is_file():
        return "chunk-wise preprocessing needs an .h5ad file"
    try:
        with h5py.File(path, "r") as f:
            matrix = _count_matrix(f, layer, path)
            if _encoding(f["obs"]) != "dataframe":
                return "obs is in an old AnnData format (re-save the file with a recent anndata)"
            if isinstance(matrix, h5py.Dataset) and matrix.ndim == 2:
                return None
            if _encoding(matrix) != "csr_matrix":
                return f"the counts are stored as {_encoding(matrix) or 'an unknown type'}, not CSR or dense rows"
    except (OSError, KeyError) as error:
        return f"it cannot be opened ({error})"
    return None


def in_memory_bytes(path, layer: str | None = None) -> int:
    """What the counts would take in memory: nnz x 8 bytes (0 when unknown)."""
    import h5py

    path = Path(path)
    if path.suffix != ".h5ad" or not path.is_file():
        return 0
    try:
        with h5py.File(path, "r") as f:
            matrix = _count_matrix(f, layer, path)
            n = matrix.size if isinstance(matrix, h5py.Dataset) else matrix["data"].shape[0]
            return int(n) * 8
    except (OSError, KeyError, InputDataError):
        return 0


def should_chunk(path, layer: str | None = None) -> bool:
    """Auto mode: chunk-wise for an .h5ad whose counts would take more than ~1 GB."""
    if in_memory_bytes(path, layer) <= IN_MEMORY_LIMIT_BYTES:
        return False
    reason = chunked_unsupported(path, layer)
    if reason:
        log.warning("%s: reading it into memory: %s", path, reason)
        return False
    return True


class _Screen:
    """An .h5ad on disk: rows of the counts by chunk, obs one column at a time, var."""

    def __init__(self, f, path, layer: str | None):
        from anndata.io import read_elem

        self.file, self.path = f, path
        element = _count_matrix(f, layer, path)
        reason = chunked_unsupported(path, layer)
        if reason:
            raise ParameterError(f"{path}: cannot preprocess chunk-wise ({reason}); use --in-memory.")
        self.matrix = _row_reader(element)
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
        shared checks see every column name; indexed by the cell names."""
        names = self.obs_names() if rows is None else self.obs_names()[rows]
        present = [k for k in keys if k in self.obs_columns]
        loaded = {k: _take(self.obs_column(k), rows) for k in present}
        filler = np.zeros(len(names), dtype=bool)
        data = {c: loaded.get(c, filler) for c in self.obs_columns}
        return pd.DataFrame(data, index=pd.Index(names), copy=False)


def _take(values, rows: np.ndarray | None):
    if rows is None:
        return values
    if isinstance(values, pd.Categorical):
        return values[rows].remove_unused_categories()
    return values[rows]


@contextlib.contextmanager
def _open(path):
    import h5py

    from pertcontrast.data.reading import _read_failure

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder.")
    try:
        f = h5py.File(path, "r")
        f["X"], f["obs"], f["var"]
    except (OSError, KeyError, ValueError) as error:
        raise _read_failure(path, error) from error
    with f:
        yield f


def _row_reader(element):
    """Row slices of an on-disk CSR group or dense dataset."""
    from anndata.io import sparse_dataset

    return sparse_dataset(element) if _encoding(element) == "csr_matrix" else element


def _blocks(reader, chunk_size: int, rows: np.ndarray | None = None, genes: np.ndarray | None = None):
    """Yield ``(start, stop, block)``: rows ``start:stop`` as stored, subset to the masks."""
    n_obs = reader.shape[0]
    # a line per block (at most every 15 s) in the log: passes over a large screen take minutes
    for start in track(range(0, n_obs, chunk_size), "preprocess", "block", write=log.info):
        stop = min(start + chunk_size, n_obs)
        if rows is not None and not rows[start:stop].any():
            continue
        block = reader[start:stop]
        if rows is not None and not rows[start:stop].all():
            block = block[rows[start:stop]]
        if genes is not None and not genes.all():
            block = block[:, genes]
        yield start, stop, block


def _chunks(screen: _Screen, chunk_size: int, rows: np.ndarray | None = None, genes: np.ndarray | None = None):
    """Yield ``(start, stop, counts)``: float32 CSR counts of rows ``start:stop`` (masked)."""
    for start, stop, block in _blocks(screen.matrix, chunk_size, rows, genes):
        yield start, stop, sp.csr_matrix(block, dtype=np.float32)


# ----------------------------------------------------------------------------- passes


def _validate(screen: _Screen, settings: PreprocessSettings, source: str) -> None:
    validate.check_unique_names(pd.Index(screen.obs_names()), "cell", source)
    validate.check_unique_names(screen.var.index, "gene", source)
    if screen.n_obs == 0 or screen.n_vars == 0:
        raise InputDataError(
            f"{source}: the count matrix is empty ({screen.n_obs} cells x {screen.n_vars} genes)."
        )
    validate_obs(screen.obs_frame(validated_obs_keys(settings)), settings, source)


@dataclass
class _QC:
    total_counts: np.ndarray
    n_genes_by_counts: np.ndarray
    pct_counts_mt: np.ndarray
    cells: np.ndarray  # kept cells (bool, all input cells)
    genes: np.ndarray  # kept genes (bool, all input genes)


def _quality_pass(screen: _Screen, settings, report, source: str, chunk_size: int) -> _QC:
    """Pass 1: count checks, QC metrics per cell, detection per gene."""
    mito = mito_mask(gene_symbols(screen.var, settings), settings)
    n = screen.n_obs
    totals = np.zeros(n, dtype=np.float32)
    n_genes = np.zeros(n, dtype=np.int64)
    mito_counts = np.zeros(n, dtype=np.float32)
    detected = np.zeros(screen.n_vars, dtype=np.int64)  # cells with the gene, all cells
    detected_qc = np.zeros(screen.n_vars, dtype=np.int64)  # ... among cells passing QC
    passed = np.zeros(n, dtype=bool)
    kernels = _kernels()
    for start, stop, raw in _blocks(screen.matrix, chunk_size):
        validate.check_count_values(raw, source)
        counts = sp.csr_matrix(raw, dtype=np.float32)
        # integer counts: sums in any order equal the in-memory float32 sums exactly
        row_totals, row_mito = np.zeros(stop - start), np.zeros(stop - start)
        kernels.row_metrics(counts.indptr, counts.indices, counts.data, mito, row_totals, n_genes[start:stop], row_mito)
        totals[start:stop], mito_counts[start:stop] = row_totals, row_mito
        pct = 100.0 * mito_counts[start:stop] / np.maximum(totals[start:stop], 1)
        ok = (totals[start:stop] > 0) & (totals[start:stop] >= settings.min_counts)
        ok &= (n_genes[start:stop] >= settings.min_genes) & (pct <= settings.max_pct_mito)
        passed[start:stop] = ok
        kernels.detection(counts.indptr, counts.indices, counts.data, ok, detected, detected_qc)
    nonempty_cells, nonempty_genes = totals > 0, detected > 0
    report.dropped_empty_cells = int((~nonempty_cells).sum())
    report.dropped_empty_genes = int((~nonempty_genes).sum())
    if report.dropped_empty_cells:
        log.warning("dropped %d all-zero cells", report.dropped_empty_cells)
    if report.dropped_empty_genes:
        log.warning("dropped %d all-zero genes", report.dropped_empty_genes)
    report.dropped_qc_cells = int((nonempty_cells & ~passed).sum())
    common = nonempty_genes & (detected_qc >= settings.min_cells_per_gene)
    report.dropped_rare_genes = int((nonempty_genes & ~common).sum())
    if not (mito & nonempty_genes).any():
        mito_counts = np.zeros(n)  # float64, as in memory when no mitochondrial gene is left
    pct = 100.0 * mito_counts / np.maximum(totals, 1)
    return _QC(totals, n_genes, pct, passed, common)


def _label_codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and string names of a label column (labels compared as strings)."""
    if isinstance(values, pd.Categorical):
        names = np.asarray(values.categories.astype(str))
        if len(set(names)) == len(names):
            return np.asarray(values.codes), names
    as_str = pd.Categorical(pd.Series(np.asarray(values)).astype(str))
    return np.asarray(as_str.codes), np.asarray(as_str.categories.astype(str))


def _drop_small_perturbations(codes, names, cells, settings, report) -> np.ndarray:
    counts = np.bincount(codes[cells], minlength=len(names))
    present = np.flatnonzero(counts)
    sizes = pd.Series(counts[present], index=names[present]).sort_values(ascending=False, kind="stable")
    small = sizes[(sizes < settings.min_cells_per_perturbation) & (sizes.index != settings.control_label)]
    if not len(small):
        return cells
    report.dropped_perturbations = {str(k): int(v) for k, v in small.items()}
    log.warning(
        "dropped %d perturbations with fewer than %d cells: %s",
        len(small), settings.min_cells_per_perturbation, ", ".join(map(str, small.index[:10])),
    )
    return cells & ~np.isin(codes, np.flatnonzero(np.isin(names, small.index)))


def _log_normalise(counts: sp.csr_matrix) -> sp.csr_matrix:
    """scanpy's normalize_total(target_sum=1e4) + log1p, row by row as in memory."""
    import scanpy as sc

    adata = sc.AnnData(X=counts)
    sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
    sc.pp.log1p(adata)
    return adata.X


@dataclass
class _Moments:
    sums: np.ndarray
    squares: np.ndarray
    log_sums: np.ndarray | None


def _moments_pass(screen, cells, genes, chunk_size, cell_cycle: bool) -> _Moments:
    """Pass 2: gene sums and sums of squares of counts; gene sums of log-normalised data."""
    n = int(genes.sum())
    moments = _Moments(np.zeros(n), np.zeros(n), np.zeros(n) if cell_cycle else None)
    kernels = _kernels()
    for _, _, counts in _chunks(screen, chunk_size, cells, genes):
        kernels.add_moments(counts.indices, counts.data, moments.sums, moments.squares)
        if cell_cycle:
            normalised = _log_normalise(counts)
            kernels.add_sums(normalised.indices, normalised.data, moments.log_sums)
    return moments


def _seurat_v3_clip(moments: _Moments, n_cells: int):
    """Mean, variance (as scanpy's _get_mean_var), loess-regularised sd and clip value."""
    from skmisc.loess import loess

    mean = moments.sums / n_cells
    var = moments.squares / n_cells - (moments.sums / n_cells) ** 2
    var *= n_cells / (n_cells - 1)
    not_const = var > 0
    fitted = np.zeros(len(mean), dtype=np.float64)
    model = loess(np.log10(mean[not_const]), np.log10(var[not_const]), span=SPAN, degree=2)
    model.fit()
    fitted[not_const] = model.outputs.fitted_values
    reg_std = np.sqrt(10**fitted)
    return mean, reg_std, reg_std * np.sqrt(n_cells) + mean


@functools.cache
def _kernels():
    """Loops over the stored values of a CSR chunk, accumulating into the given arrays."""
    import numba

    @numba.njit
    def row_metrics(indptr, indices, data, mito, totals, n_genes, mito_counts):
        for row in range(indptr.shape[0] - 1):
            for k in range(indptr[row], indptr[row + 1]):
                totals[row] += data[k]
                n_genes[row] += data[k] > 0
                if mito[indices[k]]:
                    mito_counts[row] += data[k]

    @numba.njit
    def detection(indptr, indices, data, rows_ok, detected, detected_ok):
        for row in range(indptr.shape[0] - 1):
            for k in range(indptr[row], indptr[row + 1]):
                if data[k] > 0:
                    detected[indices[k]] += 1
                    detected_ok[indices[k]] += rows_ok[row]

    @numba.njit
    def add_moments(indices, data, sums, squares):
        for k in range(indices.shape[0]):
            value = np.float64(data[k])
            sums[indices[k]] += value
            squares[indices[k]] += value * value

    @numba.njit
    def add_sums(indices, data, sums):
        for k in range(indices.shape[0]):
            sums[indices[k]] += data[k]

    @numba.njit
    def add_clipped(indices, data, clip_val, squares, sums):
        # scanpy's _sum_and_sum_squares_clipped, accumulating over chunks in the same order
        for i in range(indices.shape[0]):
            j = indices[i]
            element = min(np.float64(data[i]), clip_val[j])
            squares[j] += element**2
            sums[j] += element

    return SimpleNamespace(
        row_metrics=row_metrics, detection=detection, add_moments=add_moments, add_sums=add_sums,
        add_clipped=add_clipped,
    )


def _highly_variable_ranks(mean, reg_std, clipped_sums, clipped_squares, n_cells: int, n_top: int):
    """seurat_v3 ranks (float32, NaN outside the top ``n_top``), as scanpy computes them."""
    norm_gene_var = (1 / ((n_cells - 1) * np.square(reg_std))) * (
        (n_cells * np.square(mean)) + clipped_squares - 2 * clipped_sums * mean
    )
    ranked = np.argsort(np.argsort(-norm_gene_var.reshape(1, -1), axis=1), axis=1).astype(np.float32)
    ranked[ranked >= n_top] = np.nan
    return np.ma.median(np.ma.masked_invalid(ranked), axis=0).filled(np.nan)


def _control_genes(gene_list: pd.Index, means: pd.Series, ctrl_size: int) -> pd.Index:
    """scanpy's score_genes reference set: ``ctrl_size`` genes per expression bin of the list."""
    rng = np.random.RandomState(SEED)  # score_genes seeds numpy's global state with 0
    means = means[np.isfinite(means)]
    n_items = int(np.round(len(means) / (N_BINS - 1)))
    cut = means.rank(method="min") // n_items
    control = pd.Index([], dtype="string")
    for value in np.unique(cut.loc[gene_list]):
        candidates = cut[cut == value].index
        if ctrl_size < len(candidates):
            candidates = candidates.to_series().sample(ctrl_size, random_state=rng).index
        control = control.union(candidates.difference(gene_list))
    if len(control) == 0:
        raise InputDataError("cell-cycle scoring: no control genes found in any expression bin.")
    return control


@dataclass
class _CellCycle:
    s_idx: np.ndarray
    g2m_idx: np.ndarray
    s_control: np.ndarray
    g2m_control: np.ndarray
    scores: np.ndarray  # (n_input_cells, 2): S, G2M


def _cell_cycle_plan(symbols: pd.Series, phases: pd.Series, log_means: np.ndarray, n_obs: int) -> _CellCycle:
    from anndata.utils import make_index_unique

    names = make_index_unique(pd.Index(symbols.to_numpy()).astype(str))
    s_genes = pd.Index(names[(phases == "S").to_numpy()].tolist())
    g2m_genes = pd.Index(names[(phases == "G2M").to_numpy()].tolist())
    ctrl_size = min(len(s_genes), len(g2m_genes))
    pool = pd.Series(log_means, index=names.astype("string"))
    lists = [genes.intersection(names) for genes in (s_genes, g2m_genes)]
    controls = [_control_genes(genes, pool, ctrl_size) for genes in lists]
    return _CellCycle(
        *(names.get_indexer(genes) for genes in lists),
        *(names.get_indexer(genes) for genes in controls),
        np.zeros((n_obs, 2)),
    )


def _mean_of(matrix: sp.csr_matrix, columns: np.ndarray) -> np.ndarray:
    sub = matrix[:, columns]
    return np.asarray(sub.sum(axis=1, dtype="float64")).ravel() / len(columns)


def _score_pass(screen, cells, genes, chunk_size, clip_val, cycle: _CellCycle | None):
    """Pass 3: clipped sums for seurat_v3; S and G2/M scores of each kept cell."""
    add_clipped = _kernels().add_clipped
    n = len(clip_val)
    squares, sums = np.zeros(n), np.zeros(n)
    for start, stop, counts in _chunks(screen, chunk_size, cells, genes):
        add_clipped(counts.indices, counts.data, clip_val, squares, sums)
        if cycle is not None:
            normalised = _log_normalise(counts)
            rows = start + np.flatnonzero(cells[start:stop])
            cycle.scores[rows, 0] = _mean_of(normalised, cycle.s_idx) - _mean_of(normalised, cycle.s_control)
            cycle.scores[rows, 1] = _mean_of(normalised, cycle.g2m_idx) - _mean_of(normalised, cycle.g2m_control)
    return sums, squares


def _phase(scores: np.ndarray) -> pd.Categorical:
    """scanpy's call: S unless G2M scores higher; G1 when both are negative."""
    phase = np.where(scores[:, 1] > scores[:, 0], "G2M", "S").astype(object)
    phase[np.all(scores < 0, axis=1)] = "G1"
    return pd.Categorical(phase, categories=PHASES)


# ----------------------------------------------------------------------------- output


def _write_blocks(group, key: str, blocks, n_rows: int, dataset_kwargs) -> None:
    """Write row blocks (all CSR or all dense) as one element; CSR gets a 64-bit indptr so
    it never overflows past 2^31 stored values."""
    from anndata.io import sparse_dataset, write_elem

    written = 0
    for block in blocks:
        if sp.issparse(block):
            if written == 0:
                write_elem(group, key, block, dataset_kwargs=dict(dataset_kwargs, indptr_dtype=np.int64))
                matrix = sparse_dataset(group[key])
            else:
                matrix.append(block)
        else:
            if written == 0:
                shape = (n_rows, *block.shape[1:])
                dataset = group.create_dataset(key, shape=shape, dtype=block.dtype, **dataset_kwargs)
                dataset.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
            dataset[written : written + block.shape[0]] = block
        written += block.shape[0]


def _strings_to_categoricals(frame: pd.DataFrame) -> pd.DataFrame:
    """What AnnData.write_h5ad does to string columns before writing."""
    import anndata as ad

    ad.AnnData().strings_to_categoricals(frame)
    return frame


def _output_column(screen, key, cells, computed):
    if key in computed:
        return computed[key]
    values = _take(screen.obs_column(key), np.flatnonzero(cells))
    if isinstance(values, pd.Categorical):
        return values
    return _strings_to_categoricals(pd.DataFrame({key: values}, copy=False))[key].values


def _write_obs(screen, f, cells, computed: dict, dataset_kwargs) -> None:
    from anndata.io import write_elem

    index_key = screen.index_key
    names = screen.obs_names()[cells]
    index = pd.Index(names, name=None if index_key == "_index" else index_key)
    write_elem(f, "obs", pd.DataFrame(index=index), dataset_kwargs=dataset_kwargs)
    del names, index
    order = screen.obs_columns + [k for k in computed if k not in screen.obs_columns]
    for key in order:
        values = _output_column(screen, key, cells, computed)
        write_elem(f["obs"], key, values, dataset_kwargs=dataset_kwargs)
    f["obs"].attrs["column-order"] = order


def _by_rows(element) -> bool:
    import h5py

    if isinstance(element, h5py.Dataset):
        return element.ndim == 2
    return _encoding(element) == "csr_matrix"


def _copy_other_elements(screen, f, cells, genes, chunk_size, dataset_kwargs) -> None:
    """layers, obsm, varm, obsp, varp subset like ``adata[cells, genes]``: CSR and dense
    cell-by-x elements chunk by chunk, others (data frames, CSC, pairwise) in memory."""
    from anndata.io import read_elem, write_elem

    rows, cols, n_rows = np.flatnonzero(cells), np.flatnonzero(genes), int(cells.sum())
    for group, column_mask, subset in (
        ("layers", genes, lambda v: v[rows][:, cols]),
        ("obsm", None, lambda v: v.iloc[rows] if isinstance(v, pd.DataFrame) else v[rows]),
        ("varm", None, lambda v: v.iloc[cols] if isinstance(v, pd.DataFrame) else v[cols]),
        ("obsp", None, lambda v: v[rows][:, rows]),
        ("varp", None, lambda v: v[cols][:, cols]),
    ):
        out = f.create_group(group)
        out.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        for key, element in (screen.file[group].items() if group in screen.file else []):
            if group in ("layers", "obsm") and _by_rows(element):
                blocks = (b for _, _, b in _blocks(_row_reader(element), chunk_size, cells, column_mask))
                _write_blocks(out, key, blocks, n_rows, dataset_kwargs)
            else:
                write_elem(out, key, subset(read_elem(element)), dataset_kwargs=dataset_kwargs)


def _write_output(tmp, screen, cells, genes, var, obs_computed, uns, chunk_size, compression) -> None:
    import h5py
    from anndata.io import read_elem, write_elem

    kwargs = {"compression": compression} if compression else {}
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        counts = (block for _, _, block in _chunks(screen, chunk_size, cells, genes))
        _write_blocks(f, "X", counts, int(cells.sum()), kwargs)
        _write_obs(screen, f, cells, obs_computed, kwargs)
        write_elem(f, "var", var, dataset_kwargs=kwargs)
        full_uns = read_elem(screen.file["uns"]) if "uns" in screen.file else {}
        full_uns[UNS_KEY] = uns
        write_elem(f, "uns", full_uns, dataset_kwargs=kwargs)
        _copy_other_elements(screen, f, cells, genes, chunk_size, kwargs)


def _output_var(screen, genes, highly_variable, ranks, is_target) -> tuple[pd.DataFrame, np.ndarray]:
    """var of the selected genes, and which of the kept genes are selected."""
    var = screen.var.iloc[np.flatnonzero(genes)].copy()
    var["highly_variable"] = highly_variable
    var["highly_variable_rank"] = ranks
    var["is_perturbation_target"] = is_target
    keep = highly_variable | is_target
    var = var.iloc[np.flatnonzero(keep)].copy()
    for key in var.columns:
        if isinstance(var[key].dtype, pd.CategoricalDtype):
            var[key] = var[key].cat.remove_unused_categories()
    return _strings_to_categoricals(var), keep


# ----------------------------------------------------------------------------- entry


def preprocess_h5ad(
    input_path,
    output,
    settings: PreprocessSettings,
    layer: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    compression: str | None = "gzip",
) -> PreprocessReport:
    """Validate and prepare an on-disk screen chunk by chunk; write ``output`` atomically."""
    from pertcontrast.io import atomic_path

    if chunk_size < 1:
        raise ParameterError(f"--chunk-size must be at least 1 (got {chunk_size}).")
    source = str(input_path)
    if Path(input_path).suffix != ".h5ad" or Path(input_path).is_dir():
        raise ParameterError(
            f"{input_path}: --chunked needs an .h5ad file; use --in-memory for 10x .h5 and MatrixMarket input."
        )
    with _open(input_path) as f:
        screen = _Screen(f, input_path, layer)
        report = PreprocessReport(n_cells_in=screen.n_obs, n_genes_in=screen.n_vars)
        _validate(screen, settings, source)
        log.info("pass 1/4: QC metrics of %d cells x %d genes", screen.n_obs, screen.n_vars)
        qc = _quality_pass(screen, settings, report, source, chunk_size)
        codes, names = _label_codes(screen.obs_column(settings.perturbation_key))
        cells = _drop_small_perturbations(codes, names, qc.cells, settings, report)
        kept_labels = pd.Categorical.from_codes(codes[cells], names).remove_unused_categories()
        validate.check_perturbations(
            pd.DataFrame({settings.perturbation_key: kept_labels}), settings.perturbation_key,
            settings.control_label, f"{source} (after QC)", settings.min_control_cells,
        )
        del kept_labels
        genes, n_cells = qc.genes, int(cells.sum())
        symbols = gene_symbols(screen.var, settings)[genes].reset_index(drop=True)
        phases = cell_cycle_marker_phases(symbols) if settings.score_cell_cycle else None
        cell_cycle = phases is not None and enough_cell_cycle_markers(symbols, phases, report)
        log.info("pass 2/4: gene moments over %d cells x %d genes", n_cells, int(genes.sum()))
        moments = _moments_pass(screen, cells, genes, chunk_size, cell_cycle)
        mean, reg_std, clip_val = _seurat_v3_clip(moments, n_cells)
        cycle = (
            _cell_cycle_plan(symbols, phases, moments.log_sums / n_cells, screen.n_obs) if cell_cycle else None
        )
        log.info("pass 3/4: highly variable genes%s", " and cell-cycle scores" if cell_cycle else "")
        clipped_sums, clipped_squares = _score_pass(screen, cells, genes, chunk_size, clip_val, cycle)
        n_top = min(settings.n_top_genes, int(genes.sum()))
        ranks = _highly_variable_ranks(mean, reg_std, clipped_sums, clipped_squares, n_cells, n_top)
        highly_variable = ~np.isnan(ranks)
        gene_names = screen.var.index[genes]
        targets = set()
        if settings.keep_target_genes:
            targets = target_genes(
                screen.obs_frame([settings.perturbation_key, settings.target_gene_key], np.flatnonzero(cells)),
                gene_names, settings,
            )
        is_target = gene_names.isin(list(targets))
        report.target_genes_kept = int(is_target.sum())
        var, selected = _output_var(screen, genes, highly_variable, ranks, is_target)
        final_genes = np.zeros(screen.n_vars, dtype=bool)
        final_genes[np.flatnonzero(genes)[selected]] = True

        label_strings = names[codes[cells]]
        is_control = label_strings == settings.control_label
        computed = {
            "total_counts": qc.total_counts[cells],
            "n_genes_by_counts": qc.n_genes_by_counts[cells],
            "pct_counts_mt": qc.pct_counts_mt[cells],
        }
        if cycle is not None:
            scores = cycle.scores[cells]
            computed.update(S_score=scores[:, 0], G2M_score=scores[:, 1], phase=_phase(scores))
        computed[settings.perturbation_key] = pd.Categorical(label_strings)
        computed["is_control"] = is_control
        report.n_cells_out, report.n_genes_out = n_cells, int(final_genes.sum())
        report.n_controls = int(is_control.sum())
        report.n_perturbations = int(len(np.unique(label_strings[~is_control])))
        del label_strings
        uns = recorded_settings(settings, report)
        log.info("pass 4/4: writing %d cells x %d genes", n_cells, report.n_genes_out)
        with atomic_path(output, suffix=".h5ad") as tmp:
            _write_output(tmp, screen, cells, final_genes, var, computed, uns, chunk_size, compression)
    return report
