"""Atomic writes: a killed process never leaves a half-written file that a later step
would accept. Everything is written to a temporary name in the destination folder, then
renamed (``os.replace`` is atomic on POSIX within one file system)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _default_mode(directory: bool) -> int:
    """Permissions a plain open()/mkdir() would give (mkstemp/mkdtemp use 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside ``destination``; rename onto it only on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{suffix}", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _default_mode(directory=False))
        os.replace(tmp_path, destination)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(destination: str | os.PathLike):
    """Yield a temporary folder beside ``destination``; swap it in only on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory=True))
        if destination.exists():
            old = destination.with_name(f".{destination.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(destination, old)
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_h5ad_atomic(adata, path: str | os.PathLike, compression: str | None = None) -> None:
    """Write an AnnData to ``path`` atomically (temp file in the same folder, then rename)."""
    with atomic_path(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp, compression=compression)


def write_table_atomic(df, path: str | os.PathLike) -> None:
    """Write a pandas table as CSV or Parquet, chosen by the file ending."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def write_step_output(path: str | os.PathLike, obs_names, *, obs: dict | None = None, obsm: dict | None = None,
                      uns: dict | None = None, var_names=None, layers: dict | None = None) -> None:
    """Write what one step adds, keyed by cell: ``obs_names`` (the join key to the prepared
    file), the step's obs columns, obsm arrays and uns entries, and, for per-gene layers,
    the genes (``var_names``). No counts: those live in the prepared file only."""
    import anndata as ad
    import pandas as pd

    index = pd.Index(obs_names, name=getattr(obs_names, "name", None)).astype(str)
    frame = pd.DataFrame(obs or {}, index=index)
    var = pd.DataFrame(index=pd.Index(var_names if var_names is not None else [], dtype=str, name="gene"))
    adata = ad.AnnData(obs=frame, var=var, obsm=obsm or None, layers=layers or None, uns=uns or {})
    write_h5ad_atomic(adata, path)


def rewrite_h5ad(source: str | os.PathLike, output: str | os.PathLike, **elements) -> None:
    """Copy the .h5ad ``source`` to ``output`` (atomically) with top-level elements
    (``obs``, ``obsm``, ``uns``, ``layers``...) replaced; the rest, the counts included, is
    copied as bytes, never loaded."""
    import h5py
    from anndata.io import write_elem

    with atomic_path(output, suffix=".h5ad") as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            for key, value in elements.items():
                if key in f:
                    del f[key]
                write_elem(f, key, value)
