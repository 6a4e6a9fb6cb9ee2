"""The guide step: read counts with guide capture (or counts plus guide data) and a guide
table, call the guides, write the kept cells' counts and the QC folder (docs/outputs.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pertcontrast.data.guides.guide_table import read_guide_table
from pertcontrast.data.guides.readers import read_counts, read_guides
from pertcontrast.data.guides.screen import GuideResult, assign_screen
from pertcontrast.data.guides.settings import GuideSettings
from pertcontrast.errors import InputDataError
from pertcontrast.io import atomic_dir, write_h5ad_atomic, write_json_atomic

log = logging.getLogger("pertcontrast")
QC_FILES = ("guides.csv", "perturbations.csv", "control_kinds.csv", "cells.csv.gz", "summary.json")


@dataclass
class GuideFiles:
    h5ad: Path
    qc_dir: Path
    result: GuideResult

    def lines(self) -> list[str]:
        s = self.result.summary
        multiple = "kept as combinations" if s["multiple_targets_kept"] else "excluded"
        return [
            f"cells: {s['cells']:,} in, {s['cells_kept']:,} kept ({s['single_guide']:,} with one guide, "
            f"{s['several_guides_one_target']:,} with several guides of one target)",
            f"not kept: {s['no_guide']:,} without a guide; {s['multiple_targets']:,} with several targets ({multiple})",
            f"guides: {s['guides_with_cells']} of {s['guides_in_table']} with cells; "
            f"{s['guides_without_knockdown']} measured without on-target knockdown",
        ]


def assign_guides_file(counts, guide_table, output, qc_dir=None, guides=None,
                       settings: GuideSettings = GuideSettings()) -> GuideFiles:
    """``output``: the kept cells (.h5ad); ``qc_dir`` (default ``guide_qc/`` beside it): the tables."""
    output = Path(output)
    qc_dir = Path(qc_dir) if qc_dir is not None else output.parent / "guide_qc"
    table = read_guide_table(guide_table)
    expression, capture = read_counts(counts)
    if guides is not None:
        if capture is not None:
            log.info("%s: its CRISPR Guide Capture features are not used; the guides come from %s", counts, guides)
        guide_data = read_guides(guides, table.guides)
    elif capture is None:
        raise InputDataError(
            f"{counts}: no 'CRISPR Guide Capture' features; give the guide UMIs or calls with {{param:guides}} "
            "(a guide x cell matrix, or protospacer_calls_per_cell.csv)."
        )
    else:
        guide_data = capture
    result = assign_screen(expression, guide_data, table, settings, source=str(counts))
    write_qc_folder(result, qc_dir)
    write_h5ad_atomic(result.adata, output, compression="gzip")
    return GuideFiles(output, qc_dir, result)


def write_qc_folder(result: GuideResult, qc_dir: Path) -> None:
    with atomic_dir(qc_dir) as tmp:
        result.guides.to_csv(tmp / "guides.csv", index=False)
        result.perturbations.to_csv(tmp / "perturbations.csv", index=False)
        result.control_kinds.to_csv(tmp / "control_kinds.csv", index=False)
        cells = result.cells.drop(columns=["n_targets"]).rename_axis("cell").reset_index()
        cells.to_csv(tmp / "cells.csv.gz", index=False)
        write_json_atomic(tmp / "summary.json", result.summary)
