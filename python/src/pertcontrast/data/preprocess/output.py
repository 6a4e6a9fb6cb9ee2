"""The prepared screen: the kept cells x kept genes (raw counts, CSR float32) with the obs,
var and uns of a :class:`~.prepare.Preparation`, as an AnnData in memory or written from an
on-disk source block by block (the same file either way)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data.preprocess.rows import blocks, by_rows, counts, row_reader, take
from pertcontrast.data.preprocess.settings import UNS_KEY


def to_anndata(adata, preparation):
    """The prepared AnnData from the input AnnData (in memory)."""
    cells, genes = np.flatnonzero(preparation.cells), np.flatnonzero(preparation.genes)
    prepared = adata[cells, genes].copy()
    prepared.X = sp.csr_matrix(prepared.X, dtype=np.float32)
    for key, values in preparation.obs.items():
        prepared.obs[key] = values
    prepared.var = preparation.var
    prepared.uns[UNS_KEY] = preparation.uns
    return prepared


def _write_blocks(group, key: str, parts, n_rows: int, dataset_kwargs) -> None:
    """Write row blocks (all CSR or all dense) as one element; CSR gets a 64-bit indptr so
    it never overflows past 2^31 stored values."""
    from anndata.io import sparse_dataset, write_elem

    written = 0
    for block in parts:
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


def strings_to_categoricals(frame: pd.DataFrame) -> pd.DataFrame:
    """What AnnData.write_h5ad does to string columns before writing."""
    import anndata as ad

    ad.AnnData().strings_to_categoricals(frame)
    return frame


def _output_column(rows, key, cells, added):
    if key in added:
        return added[key]
    values = take(rows.obs_column(key), np.flatnonzero(cells))
    if isinstance(values, pd.Categorical):
        return values
    return strings_to_categoricals(pd.DataFrame({key: values}, copy=False))[key].values


def _write_obs(rows, f, cells, added: dict, dataset_kwargs) -> None:
    from anndata.io import write_elem

    index_key = rows.index_key
    names = rows.obs_names()[cells]
    index = pd.Index(names, name=None if index_key == "_index" else index_key)
    write_elem(f, "obs", pd.DataFrame(index=index), dataset_kwargs=dataset_kwargs)
    del names, index
    order = rows.obs_columns + [k for k in added if k not in rows.obs_columns]
    for key in order:
        write_elem(f["obs"], key, _output_column(rows, key, cells, added), dataset_kwargs=dataset_kwargs)
    f["obs"].attrs["column-order"] = order


def _copy_other_elements(rows, f, cells, genes, chunk_size, dataset_kwargs) -> None:
    """layers, obsm, varm, obsp, varp subset like ``adata[cells, genes]``: CSR and dense
    cell-by-x elements block by block, others (data frames, CSC, pairwise) in memory."""
    from anndata.io import read_elem, write_elem

    kept, cols, n_rows = np.flatnonzero(cells), np.flatnonzero(genes), int(cells.sum())
    for group, column_mask, subset in (
        ("layers", genes, lambda v: v[kept][:, cols]),
        ("obsm", None, lambda v: v.iloc[kept] if isinstance(v, pd.DataFrame) else v[kept]),
        ("varm", None, lambda v: v.iloc[cols] if isinstance(v, pd.DataFrame) else v[cols]),
        ("obsp", None, lambda v: v[kept][:, kept]),
        ("varp", None, lambda v: v[cols][:, cols]),
    ):
        out = f.create_group(group)
        out.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        for key, element in (rows.file[group].items() if group in rows.file else []):
            if group in ("layers", "obsm") and by_rows(element):
                parts = (b for _, _, b in blocks(row_reader(element), chunk_size, cells, column_mask))
                _write_blocks(out, key, parts, n_rows, dataset_kwargs)
            else:
                write_elem(out, key, subset(read_elem(element)), dataset_kwargs=dataset_kwargs)


def write_from_disk(rows, preparation, output, chunk_size: int, compression: str | None = "gzip") -> None:
    """Write the prepared screen of an on-disk source to ``output`` (atomically), block by
    block: X, then obs one column at a time, var, uns and the other elements."""
    import h5py
    from anndata.io import read_elem, write_elem

    from pertcontrast.io import atomic_path

    kwargs = {"compression": compression} if compression else {}
    cells, genes = preparation.cells, preparation.genes
    with atomic_path(output, suffix=".h5ad") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        parts = (block for _, _, block in counts(rows, chunk_size, cells, genes))
        _write_blocks(f, "X", parts, int(cells.sum()), kwargs)
        _write_obs(rows, f, cells, preparation.obs, kwargs)
        write_elem(f, "var", preparation.var, dataset_kwargs=kwargs)
        uns = read_elem(rows.file["uns"]) if "uns" in rows.file else {}
        uns[UNS_KEY] = preparation.uns
        write_elem(f, "uns", uns, dataset_kwargs=kwargs)
        _copy_other_elements(rows, f, cells, genes, chunk_size, kwargs)
