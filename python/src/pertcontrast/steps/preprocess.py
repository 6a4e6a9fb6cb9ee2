from __future__ import annotations

from pathlib import Path

from pertcontrast.data.preprocess import PreprocessReport, PreprocessSettings, preprocess
from pertcontrast.data.reading import read_anndata
from pertcontrast.io import write_h5ad_atomic


def preprocess_file(
    input_path: str | Path, output: str | Path, settings: PreprocessSettings, layer: str | None = None
) -> PreprocessReport:
    """Read raw counts, validate, QC, score the cell cycle, select genes, write ``output``."""
    adata = read_anndata(input_path, layer=layer)
    prepared, report = preprocess(adata, settings, source=str(input_path))
    write_h5ad_atomic(prepared, output, compression="gzip")
    return report
