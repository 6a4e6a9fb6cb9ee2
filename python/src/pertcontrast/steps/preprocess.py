from __future__ import annotations

import logging
import time
from pathlib import Path

from pertcontrast.data.preprocess import PreprocessReport, PreprocessSettings, preprocess
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
    """Read raw counts, validate, QC, score the cell cycle, select genes, write ``output``.

    ``chunked``: work in passes over row chunks of an on-disk ``.h5ad`` (memory set by
    ``chunk_size`` and the genes, not the cells); ``None`` chooses it when the counts would
    take more than ~1 GB in memory. Both give the same result.
    """
    from pertcontrast.data import preprocess_chunked as chunkwise

    if chunked is None:
        chunked = chunkwise.should_chunk(input_path, layer)
    if chunked:
        chunk_size = chunk_size or chunkwise.DEFAULT_CHUNK_SIZE
        log.info("preprocessing chunk-wise (%d cells per chunk)", chunk_size)
        return chunkwise.preprocess_h5ad(input_path, output, settings, layer=layer, chunk_size=chunk_size)
    started = time.monotonic()

    def done(what: str) -> None:  # one line per pass, as the chunk-wise passes write
        log.info("preprocess: %s, elapsed %s", what, clock(time.monotonic() - started))

    adata = read_anndata(input_path, layer=layer)
    done(f"read {adata.n_obs} cells x {adata.n_vars} genes")
    prepared, report = preprocess(adata, settings, source=str(input_path))
    done(f"QC, cell cycle and gene selection: {prepared.n_obs} cells x {prepared.n_vars} genes kept")
    write_h5ad_atomic(prepared, output, compression="gzip")
    done(f"wrote {output}")
    return report
