"""The user-facing model, in the shape of scvi-tools:

    model = ContrastiveModel.setup_anndata(adata, layer="counts")  # or from_anndata(adata)
    result = model.train(max_epochs=100)
    salient = model.get_latent_representation()      # or model.latents(adata): both latents
    model.save("model/")
    model = ContrastiveModel.load("model/", adata=adata)

The core (set-up, fitting, latents, save/load) is :class:`pertcontrast.model.BaseContrastiveModel`;
this class adds the analyses as methods (:mod:`pertcontrast.api.analysis`) and ``train``,
tracked in MLflow when a tracking URI is set. It sits above the analysis and tracking
layers, which is why it is not the core itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pertcontrast.api.analysis import AnalysisMixin
from pertcontrast.model import BaseContrastiveModel


class ContrastiveModel(AnalysisMixin, BaseContrastiveModel):
    """Contrastive VAE for a Perturb-seq screen (background and salient latents), with the
    analyses as methods and an MLflow-tracked :meth:`train`."""

    def train(
        self,
        settings=None,
        device: str = "auto",
        checkpoint_dir: str | Path | None = None,
        callbacks=(),
        progress: bool = True,
        tracking_uri: str | None = None,
        experiment_name: str = "pertcontrast",
        run_name: str | None = None,
        **overrides,
    ):
        """Train on the AnnData given to :meth:`from_anndata`; returns a TrainingResult.

        ``settings`` is a :class:`~pertcontrast.train.settings.TrainingSettings`; keyword
        overrides (``max_epochs=50``, ``batch_size=512``...) replace single fields.

        Tracked as an MLflow run (in ``experiment_name``) when ``tracking_uri`` is given or
        ``MLFLOW_TRACKING_URI`` is set; nothing is tracked otherwise. The run id is in
        ``result.extra["mlflow_run_id"]``.
        """
        import os

        from pertcontrast.train.settings import TrainingSettings

        settings = replace(settings or TrainingSettings(), **overrides)
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            return self.fit(settings, device, checkpoint_dir, callbacks, progress)
        from pertcontrast.tracking.python_api import tracked_fit

        return tracked_fit(self, settings, uri, experiment_name, run_name,
                           lambda extra: self.fit(settings, device, checkpoint_dir, (*callbacks, *extra), progress))
