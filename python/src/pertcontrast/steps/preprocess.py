from __future__ import annotations

import logging
import time
from pathlib import Path

from pertcontrast.data.preprocess import DEFAULT_CHUNK_SIZE, PreprocessReport, PreprocessSettings, preprocess
from pertcontrast.data.preprocess.rows import should_read_from_disk
from pertcontrast.data.reading import read_anndata
from pertcontrast.io import write_h5ad_atomic
from pertcontrast.progress import clock

log = logging.getLogger("pertcontrast")


def preprocess_file(
    input_path: str | Path,
    output: str | Path,
    settings: PreprocessSettings,
    layer: str | None = None,
    chunked: bool | None = None,
    chunk_size: int | None = None,
) -> PreprocessReport:
    """Read raw counts, check, QC, score the cell cycle, select genes, write ``output``.

    ``chunked``: read an ``.h5ad`` from disk a block of cells at a time (memory set by
    ``chunk_size`` and the genes, not the cells) or read it whole first; ``None`` reads from
    disk when the counts would take more than ~1 GB in memory. The same passes run either
    way and give the same file.
    """
    from pertcontrast.data.preprocess import preprocess_h5ad

    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    if chunked is None:
        chunked = should_read_from_disk(input_path, layer)
    if chunked:
        log.info("preprocessing from disk (%d cells per block)", chunk_size)
        return preprocess_h5ad(input_path, output, settings, layer=layer, chunk_size=chunk_size)
    started = time.monotonic()

    def done(what: str) -> None:  # the passes log their own lines; these frame them
        log.info("preprocess: %s, elapsed %s", what, clock(time.monotonic() - started))

    adata = read_anndata(input_path, layer=layer)
    done(f"read {adata.n_obs} cells x {adata.n_vars} genes")
    prepared, report = preprocess(adata, settings, source=str(input_path), chunk_size=chunk_size)
    done(f"QC, cell cycle and gene selection: {prepared.n_obs} cells x {prepared.n_vars} genes kept")
    write_h5ad_atomic(prepared, output, compression="gzip")
    done(f"wrote {output}")
    return report
