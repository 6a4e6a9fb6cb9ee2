from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.group("mlflow")
def mlflow_group():
    """MLflow helpers (see docs/mlflow.md)."""


@mlflow_group.command("sync")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--mlflow-uri", default=None,
              help="Server to upload to (default: MLFLOW_TRACKING_URI). Credentials only via "
                   "MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN.")
@click.option("--experiment-name", default=None, help="Experiment to upload into (default: the recorded one).")
def sync_command(model_dir, mlflow_uri, experiment_name):
    """Upload a training run recorded in MODEL_DIR/mlflow_run.json.

    For runs trained while the tracking server was unreachable (--mlflow-offline-ok) or
    went away: params, the metric history, summary metrics, artifacts, the MLflow model
    and the registration asked for at training time. Safe to repeat: only what the server
    does not have yet is sent.
    """
    from pertcontrast.tracking.registry import tracking_uri
    from pertcontrast.tracking.sync import sync_run
    from pertcontrast.tracking.uris import redact

    setup_logging()
    echo_command_line()
    uri = tracking_uri(mlflow_uri)
    record = sync_run(model_dir, uri, experiment_name)
    registered = ""
    if record.uploaded.registered_version:
        registered = f"; registered models:/{record.register_model}/{record.uploaded.registered_version}"
    click.echo(f"run {record.run_id} ('{record.run_name}') is on {redact(uri)}{registered}", err=True)


COMMANDS = [mlflow_group]
