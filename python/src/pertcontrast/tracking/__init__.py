"""MLflow tracking, the MLflow model and the model registry.

The only package that imports ``mlflow``, always inside functions (except in
``pyfunc.py`` and ``model_code.py``, which MLflow itself loads), so importing
pertcontrast stays fast and works without a tracking server.

* ``session``: a tracked training run (local record first, server second).
* ``sync``: upload a run recorded locally while the server was unreachable.
* ``model_registry``: resolve ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``, list,
  show, promote.
* ``side_runs``: the runs beside a training run: the lookup run of an export;
  ``log_report`` for later steps.
* ``training_summary``: what a training run records (parameters, metrics, curves).
* ``pyfunc``/``model_code``: the pyfunc model (models from code, no pickle).
"""

from pertcontrast.tracking.model_registry import list_versions, load_registered_model, promote, show_version
from pertcontrast.tracking.side_runs import log_report, lookup_run, recorded_run
from pertcontrast.tracking.session import TrackingOptions, TrainingTracker
from pertcontrast.tracking.sync import sync_run

__all__ = [
    "TrackingOptions",
    "TrainingTracker",
    "list_versions",
    "load_registered_model",
    "log_report",
    "lookup_run",
    "promote",
    "recorded_run",
    "show_version",
    "sync_run",
]
