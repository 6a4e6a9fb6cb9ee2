"""The trained model as an MLflow pyfunc: ``predict`` maps a cells x genes count table
to the salient and background coordinates.

Logged with MLflow's "models from code" (``model_code.py`` is the logged code), so no
pickle is written or read: the model's artifact is the plain model folder (JSON config,
``weights_only`` torch weights) that :meth:`ContrastiveModel.load` reads.

Input: a DataFrame, one row per cell, columns named by gene (matched to the model's
genes by name; extra columns are ignored, missing genes are an error naming them), plus
one column per covariate the model was trained with (e.g. ``batch``). Counts are raw, as
integer or float columns, dense or pandas sparse (``pd.DataFrame.sparse.from_spmatrix``).
Output: a DataFrame with ``salient_1..k`` and ``background_1..k``, index kept.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from pertcontrast.tracking.latent_table import latent_table

MODEL_ARTIFACT = "model"


class LatentModel(mlflow.pyfunc.PythonModel):
    """Loads the model folder from the ``model`` artifact; predicts latent coordinates."""

    def load_context(self, context):
        from pertcontrast.model import BaseContrastiveModel

        self.model = BaseContrastiveModel.load(context.artifacts[MODEL_ARTIFACT])

    # The DataFrame hints carry no schema (the signature does); MLflow only checks the type.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return latent_table(self.model, model_input)
