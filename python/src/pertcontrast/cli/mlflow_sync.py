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
    from pertcontrast.tracking.model_registry import tracking_uri
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


@mlflow_group.command("store")
@click.argument("model_dirs", metavar="MODEL_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True,
              help="Store folder to write (mlflow.db and artifacts/).")
@click.option("--experiment-name", default="pertcontrast", show_default=True, help="Experiment of the runs.")
@click.option("--report", "reports", multiple=True, metavar="SCREEN_ID=PATH",
              help="Attach a screen's report (file or folder) to its run as artifact report/ (repeatable).")
@click.option("--dataset-source", default=None, metavar="URI",
              help="Where each screen's input is kept, '{screen}' standing for its id, recorded as the source of "
                   "the run's dataset (default: the path training read).")
def store_command(model_dirs, output, experiment_name, reports, dataset_source):
    """Put the training runs recorded in MODEL_DIR.../mlflow_run.json into one MLflow store.

    One experiment, one run per model folder (the screen id is tag pertcontrast.screen_id):
    params, metric history, summary metrics, the input dataset, the model folder, plots
    and the MLflow model, all copied into OUTPUT, which can be moved anywhere. The
    pipeline writes results/mlflow/ this way when no tracking server is given.
    """
    from pertcontrast.tracking.run_store import build_store, ui_command

    setup_logging()
    echo_command_line()
    pairs = {}
    for item in reports:
        screen, sep, path = item.partition("=")
        if not sep or not screen or not path:
            raise click.BadParameter(f"'{item}' is not SCREEN_ID=PATH.", param_hint="--report")
        pairs[screen] = path
    records = build_store(model_dirs, output, experiment_name, pairs, dataset_source)
    click.echo(f"{len(records)} run(s) in experiment '{experiment_name}' of {output}; browse with: "
               f"{ui_command(output)}", err=True)


COMMANDS = [mlflow_group]
