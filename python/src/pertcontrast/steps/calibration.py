"""The calibration step: the pseudo-perturbation check of one screen, written to a folder
the report reads (docs/outputs.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pertcontrast.versions import __version__
from pertcontrast.data.reading import read_anndata
from pertcontrast.data.screen_files import ScreenFiles
from pertcontrast.io import atomic_dir

log = logging.getLogger("pertcontrast")
CALIBRATION_TABLE, CALIBRATION_SUMMARY = "calibration.csv", "summary.json"


def calibration_file(prepared, latents, model, output, settings, de_settings=None, device: str = "auto",
                     perturbation_key: str | None = None, control_label: str | None = None,
                     model_info: dict | None = None) -> dict:
    """Write the ``calibration/`` folder: calibration.csv (one row per pseudo-perturbation)
    and summary.json (what the report shows, the targets and the settings)."""
    from pertcontrast.analysis.calibration import TARGETS, run_check, summary
    from pertcontrast.steps.analysis import labels_and_control, null_of, salient_means

    with ScreenFiles(prepared, export=latents) as files:
        labels, control = labels_and_control(files, perturbation_key, control_label)
        null = null_of(files, labels == control, model)
        salient = salient_means(files)
    log.info("calibration: %d groups of null controls (%d null controls of %d controls)", settings.n_groups,
             int(null.sum()), int((labels == control).sum()))
    # opened after ScreenFiles closed its handles on the same file (closing those would close it)
    adata = read_anndata(prepared, backed=Path(prepared).suffix == ".h5ad") if settings.de or model is not None else None
    try:
        table = run_check(salient, labels, control, null, settings, model, adata, de_settings, device)
    finally:
        if getattr(adata, "isbacked", False):
            adata.file.close()
    result = summary(table)
    result.update(targets=TARGETS, settings=settings.to_dict(),
                  n_null_controls=int(null.sum()), pertcontrast_version=__version__, **(model_info or {}))
    with atomic_dir(output) as folder:
        table.to_csv(folder / CALIBRATION_TABLE, index=False)
        (folder / CALIBRATION_SUMMARY).write_text(json.dumps(result, indent=2, default=_plain) + "\n")
    log.info("calibration: %s", ", ".join(f"{k} {v}" for k, v in result.items() if k.endswith(("called", "fraction"))))
    return result


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)
