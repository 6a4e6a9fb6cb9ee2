"""Tracking ``ContrastiveModel.train()`` called from Python: the same run as
``pertcontrast train`` records (parameters, per-epoch metrics, summary, the model folder,
the MLflow model, the input dataset), staged in a temporary folder."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("pertcontrast")


def tracked_fit(model, settings, uri: str, experiment_name: str, run_name: str | None, fit):
    """Run ``fit(callbacks)`` as an MLflow run at ``uri``; returns its TrainingResult with
    ``extra["mlflow_run_id"]``. An unreachable server fails before training (as the CLI
    does); one that goes away during training only warns, and the run record is kept in
    the staging folder for ``pertcontrast mlflow sync``."""
    from pertcontrast.tracking.session import TrackingOptions, TrainingTracker

    folder = Path(tempfile.mkdtemp(prefix="pertcontrast-run-"))
    name = run_name or "anndata"
    options = TrackingOptions(uri=uri, experiment_name=experiment_name, run_name=name, screen_id=name,
                              tags={"mlflow.source.name": "ContrastiveModel.train"})
    try:
        tracker = TrainingTracker.connect(options, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    tracker.start(model, model.adata, settings, "AnnData in memory")
    try:
        result = fit((tracker.on_epoch,))
    except BaseException as error:
        tracker.fail(error)
        raise
    model.save(folder, overwrite=True)
    tracker.finish(model, result, model.adata)
    result.extra["mlflow_run_id"] = tracker.record.run_id
    if tracker.offline_reason is None:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        log.warning("the MLflow run is kept in %s (upload it with: pertcontrast mlflow sync %s --mlflow-uri ...)",
                    folder, folder)
    return result
