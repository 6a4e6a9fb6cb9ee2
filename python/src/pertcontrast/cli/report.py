"""Report commands: ``report`` (one screen) and ``summary`` (the run)."""

from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.command("report")
@click.argument("prepared", metavar="PREPARED", type=click.Path(exists=True, dir_okay=False))
@click.option("--latents", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The .h5ad written by 'pertcontrast export' for PREPARED.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder from 'pertcontrast train' (config.json, history.csv).")
@click.option("--responders", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The .h5ad written by 'pertcontrast responders' (per-cell calls, responders per perturbation).")
@click.option("--de", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder from 'pertcontrast de' (volcano plots, top genes).")
@click.option("--effects", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder from 'pertcontrast effects' (effect table, clustering heatmap).")
@click.option("--guide-qc", type=click.Path(exists=True, file_okay=False), default=None,
              help="QC folder from 'pertcontrast assign-guides' (guides, perturbations, knockdown).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder from 'pertcontrast calibration' (the pseudo-perturbation check).")
@click.option("--title", default=None, metavar="ID",
              help="Screen id: the page title and the file names (default: PREPARED without .prepared.h5ad).")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for ID.report.html, ID.report.json and figures/.")
@click.option("--max-points", type=click.IntRange(min=10), default=20_000, show_default=True,
              help="Cells shown in scatter plots (a random subsample; the views are computed on it).")
@click.option("--embedding", type=click.Choice(["umap", "pca"]), default="umap", show_default=True,
              help="2-D view of the latents and counts: UMAP, or the first two principal components (fast).")
@click.option("--top-perturbations", type=click.IntRange(1, 20), default=10, show_default=True,
              help="Perturbations with their own colour (the strongest); the rest are grey.")
@click.option("--volcanoes", type=click.IntRange(1, 24), default=6, show_default=True,
              help="Strongest perturbations with a volcano plot and a top-genes panel.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the subsample and the views.")
@click.option("--perturbation-key", default=None,
              help="Perturbation column (default: recorded by 'pertcontrast preprocess').")
@click.option("--control-label", default=None,
              help="Control label (default: recorded by 'pertcontrast preprocess').")
@click.option("--mlflow/--no-mlflow", "mlflow", default=False, show_default=True,
              help="Attach the report to the model's MLflow training run (when the model folder records one).")
@click.option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", default=None,
              help="Tracking server for --mlflow (default: the one recorded in the model folder).")
def report_command(prepared, latents, model_dir, responders, de, effects, guide_qc, calibration, title, output_dir,
                   max_points, embedding, top_perturbations, volcanoes, seed, perturbation_key, control_label, mlflow, mlflow_uri):
    """Write a self-contained HTML report of one screen.

    PREPARED is the .h5ad from 'pertcontrast preprocess' (labels, phase, batch, counts),
    --latents its export; the analysis outputs (--responders, --de, --effects) are joined
    to it by cell name. Writes ID.report.html (images embedded, opens offline),
    ID.report.json (headline numbers for 'pertcontrast summary') and figures/*.png, *.svg.
    Analysis outputs not given are shown as "not run".
    """
    from pertcontrast.steps.report import ReportSettings, attach_report, build_report

    setup_logging()
    echo_command_line()
    settings = ReportSettings(max_points=max_points, embedding=embedding, top_perturbations=top_perturbations,
                              volcanoes=volcanoes, seed=seed)
    files = build_report(prepared, latents, model_dir, output_dir, responders=responders, de=de, effects=effects,
                         title=title, settings=settings, perturbation_key=perturbation_key,
                         control_label=control_label, guide_qc=guide_qc, calibration=calibration)
    if mlflow:
        attach_report(model_dir, output_dir, mlflow_uri)
    click.echo(f"wrote {files.html}", err=True)


@click.command("summary")
@click.option("--report-json", "report_jsons", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="ID.report.json from 'pertcontrast report' (repeat for each screen).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="HTML page to write, e.g. summary/index.html.")
@click.option("--link-template", default=None, metavar="TEMPLATE",
              help="Link to each report with {id} and {html} filled in, e.g. '../{id}/report/{html}' for the "
                   "pipeline's published layout (default: the path from --output to the HTML beside each JSON).")
@click.option("--title", default="pertcontrast run summary", show_default=True, help="Page title.")
def summary_command(report_jsons, output, link_template, title):
    """Write the run summary page: one row per screen with its headline numbers and a link
    to its report."""
    from pertcontrast.steps.report import build_summary

    setup_logging()
    echo_command_line()
    build_summary(report_jsons, output, link_template, title)
    click.echo(f"wrote {output}", err=True)


COMMANDS = [report_command, summary_command]
