"""Preprocessing a screen for training: checks, QC, cell-cycle scores, highly variable
genes. Counts stay raw and sparse (CSR); the settings are recorded in
``uns["pertcontrast"]`` so ``train`` and the analysis need not be told again.

One implementation for screens in memory and on disk: passes over a row source
(:mod:`.rows`: an AnnData in memory, or an ``.h5ad`` read a block of cells at a time), each
keeping a few numbers per cell and per gene (:mod:`.passes`). QC is in :mod:`.qc`, gene
selection in :mod:`.hvg`, cell-cycle scoring in :mod:`.cell_cycle`; :mod:`.prepare` puts
them together and :mod:`.output` writes the result. Results equal scanpy's
``highly_variable_genes(flavor="seurat_v3")`` and ``score_genes_cell_cycle`` (the tests
use scanpy as the oracle; the package does not call it).
"""

from __future__ import annotations

import logging

from pertcontrast.data.preprocess.rows import DEFAULT_CHUNK_SIZE, InMemoryRows, open_h5ad
from pertcontrast.data.preprocess.settings import (
    CONTROL_KIND_COLUMN,
    MERGED_CONTROL_LABEL,
    UNS_KEY,
    PreprocessReport,
    PreprocessSettings,
)

log = logging.getLogger("pertcontrast")
__all__ = [
    "CONTROL_KIND_COLUMN", "DEFAULT_CHUNK_SIZE", "MERGED_CONTROL_LABEL", "UNS_KEY", "PreprocessReport",
    "PreprocessSettings", "preprocess", "preprocess_h5ad",
]


def preprocess(adata, settings: PreprocessSettings, source: str = "input", chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Check and prepare a screen in memory; returns ``(prepared AnnData, PreprocessReport)``."""
    from pertcontrast.data.preprocess.output import to_anndata
    from pertcontrast.data.preprocess.prepare import prepare

    preparation = prepare(InMemoryRows(adata), settings, source, chunk_size)
    return to_anndata(adata, preparation), preparation.report


def preprocess_h5ad(path, output, settings: PreprocessSettings, layer: str | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE, compression: str | None = "gzip") -> PreprocessReport:
    """Check and prepare an ``.h5ad`` on disk a block of cells at a time; writes ``output``
    atomically (memory: one block plus a few numbers per cell and gene)."""
    from pertcontrast.data.preprocess.output import write_from_disk
    from pertcontrast.data.preprocess.prepare import prepare
    from pertcontrast.errors import ParameterError

    if chunk_size < 1:
        raise ParameterError(f"--chunk-size must be at least 1 (got {chunk_size}).")
    with open_h5ad(path, layer) as rows:
        preparation = prepare(rows, settings, str(path), chunk_size)
        report = preparation.report
        log.info("pass 5/5: writing %d cells x %d genes", report.n_cells_out, report.n_genes_out)
        write_from_disk(rows, preparation, output, chunk_size, compression)
    return report
