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
