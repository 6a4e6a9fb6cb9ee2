from __future__ import annotations

import click

from pertcontrast.cli._common import device_option, echo_command_line, progress_lines_option, setup_logging


@click.command("export")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--model", "model_spec", required=True,
              help="Model folder from 'pertcontrast train', or a registry URI models:/NAME@ALIAS or models:/NAME/VERSION.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help=".h5ad to write.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4096, show_default=True, help="Cells per block.")
@click.option("--sample/--no-sample", default=False, show_default=True,
              help="Also write one posterior sample (X_salient_sample, X_background_sample).")
@click.option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", default=None,
              help="Tracking server for models:/ URIs (default: MLFLOW_TRACKING_URI).")
@click.option("--requested-model", default=None, metavar="models:/NAME@ALIAS",
              help="The reference asked for, when --model is the version it was pinned to "
                   "('pertcontrast registry resolve'); recorded in the output and the lookup run.")
@click.option("--experiment-name", default="pertcontrast", show_default=True,
              help="Experiment of the lookup run recorded when --model is a models:/ URI.")
@click.option("--mlflow/--no-mlflow", "mlflow", default=True, show_default=True, envvar="PERTCONTRAST_MLFLOW",
              help="Record a lookup run in MLflow when --model is a models:/ URI.")
@device_option
@progress_lines_option
def export_command(input_path, model_spec, output, batch_size, sample, mlflow_uri, requested_model, experiment_name,
                   mlflow, device, progress):
    """Write the salient and background latents of every cell.

    INPUT is any .h5ad (or 10x file) with the model's genes (matched by name), usually the
    prepared file. The output holds what export adds: .obsm["X_salient"],
    .obsm["X_background"] (posterior means) and .obs["salient_norm"] of every cell, keyed
    by the cell names; no counts (later steps read them from INPUT, and
    'pertcontrast merge' writes one combined file). Cells are streamed in blocks.

    With a registry URI the resolved model name, version and run id are written to
    .uns["pertcontrast_export"], and the export is recorded as an MLflow run of type
    'lookup' in --experiment-name (unless --no-mlflow).
    """
    from pertcontrast.steps.export import export_step

    setup_logging()
    echo_command_line()
    if requested_model and not str(model_spec).startswith("models:/"):
        raise click.UsageError("--requested-model goes with a registry --model (models:/NAME/VERSION).")
    export_step(input_path, model_spec, output, mlflow_uri=mlflow_uri, requested_model=requested_model,
                record_lookup=mlflow, experiment_name=experiment_name, batch_size=batch_size, device=device,
                sample=sample, progress=progress)
    click.echo(f"wrote {output}", err=True)


COMMANDS = [export_command]
