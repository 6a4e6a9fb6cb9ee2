"""MLflow "models from code" entry point: this file is logged with the model and run
by ``mlflow.pyfunc.load_model``. Never imported by pertcontrast itself."""

from mlflow.models import set_model

from pertcontrast.tracking.pyfunc import LatentModel

set_model(LatentModel())
