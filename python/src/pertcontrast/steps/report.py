"""The report steps: read the exported files, compute, draw, write
``<id>.report.html``, ``<id>.report.json`` and ``figures/`` (formats in docs/outputs.md);
and the run summary page across screens."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pertcontrast.versions import REPORT_PACKAGES, __version__, package_versions
from pertcontrast.errors import InputDataError, ParameterError
from pertcontrast.io import write_json_atomic, write_text_atomic

log = logging.getLogger("pertcontrast")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
PREPARED_SUFFIXES = (".prepared.h5ad", ".h5ad")
@dataclass
class ReportSettings:
    max_points: int = 20_000
    embedding: str = "umap"
    top_perturbations: int = 10
    volcanoes: int = 6
    predictability_cells: int = 10_000
    seed: int = 0

    def check(self) -> None:
        from pertcontrast.report.embedding import METHODS

        problems = [
            (self.max_points >= 10, "max_points", "must be at least 10"),
            (self.embedding in METHODS, "embedding", f"must be one of {', '.join(METHODS)}"),
            (1 <= self.top_perturbations <= 20, "top_perturbations", "must be between 1 and 20"),
            (1 <= self.volcanoes <= 24, "volcanoes", "must be between 1 and 24"),
        ]
        for ok, param, message in problems:
            if not ok:
                raise ParameterError(message + ".", param=param)


@dataclass
class ReportFiles:
    html: Path
    json: Path
    figures: list[Path] = field(default_factory=list)
    headline: dict = field(default_factory=dict)


def report_id(prepared_path, title: str | None) -> str:
    """``title``, or the prepared file name without its ending; must be usable in a file name."""
    if title is None:
        name = Path(prepared_path).name
        title = next((name[: -len(s)] for s in PREPARED_SUFFIXES if name.endswith(s) and len(name) > len(s)), name)
    if not ID_PATTERN.match(title):
        raise ParameterError(
            f"'{title}' cannot be used in a file name; use letters, digits, '.', '_' or '-' "
            "(not starting with '.' or '-').", param="title"
        )
    return title


def build_report(prepared_path, latents_path, model_dir, output_dir, responders=None, de=None, effects=None,
                 title: str | None = None, settings: ReportSettings | None = None,
                 perturbation_key: str | None = None, control_label: str | None = None,
                 guide_qc=None, calibration=None) -> ReportFiles:
    """Write the report of one screen into ``output_dir``; the HTML is written last.
    ``prepared_path``: the prepared file; ``latents_path``: its export; ``responders``: the
    output of 'pertcontrast responders' (per-cell calls), when it ran; ``guide_qc``: the QC
    folder of 'pertcontrast assign-guides' and ``calibration`` the folder of 'pertcontrast
    calibration' (their sections say "not run" without them)."""
    from pertcontrast.report import embedding, metrics
    from pertcontrast.report.calibration import read_calibration
    from pertcontrast.report.guide_qc import read_guide_qc
    from pertcontrast.report.inputs import read_analysis, read_model_folder, responder_table
    from pertcontrast.report.latents import read_latents

    settings = settings or ReportSettings()
    settings.check()
    identifier = report_id(prepared_path, title)
    started = time.perf_counter()
    # Read (and check) every input before any long computation.
    model = read_model_folder(model_dir)
    latents = read_latents(prepared_path, latents_path, responders, perturbation_key, control_label)
    if responders is not None and latents.responder_call is None:
        raise InputDataError(
            f"{responders} has no .obs['responder_call']; give the output of 'pertcontrast responders'."
        )
    table_of_responders = responder_table(latents.perturbation, latents.is_control, latents.responder_call)
    analysis = read_analysis(de, effects, table_of_responders)
    guides = read_guide_qc(guide_qc) if guide_qc is not None else None
    calibrated = read_calibration(calibration) if calibration is not None else None
    log.info("report: %s cells, %d perturbations", f"{latents.n_cells:,}", len(set(latents.perturbation)) - 1)

    table = metrics.perturbation_table(latents, analysis)
    strength = metrics.strength_column(table)
    rows = metrics.subsample(latents.n_cells, settings.max_points, settings.seed)
    views = embedding.views(latents, rows, settings.embedding, settings.seed)
    log.info("report: background-removal summary")
    removal = metrics.background_removal(latents, settings.predictability_cells, settings.seed)
    headline = metrics.headline(identifier, latents, removal, table, analysis, model, len(rows))
    headline["calibration_passed"] = calibrated.summary["passed"] if calibrated is not None else None

    output_dir = Path(output_dir)
    figures, colourings = _draw(output_dir / "figures", latents, model, analysis, table, strength, rows, views,
                                removal, settings, guides)
    inputs = {"prepared": prepared_path, "latents": latents_path, "model": model_dir, "responders": responders,
              "de": de, "effects": effects, "guide_qc": guides.folder if guides is not None else None,
              "calibration": calibration}
    content = _content(identifier, headline, latents, model, analysis, removal, table, strength, figures,
                       colourings, settings, inputs, guides)
    content.calibration = calibrated
    from pertcontrast.report.page import render

    html_path, json_path = output_dir / f"{identifier}.report.html", output_dir / f"{identifier}.report.json"
    headline = {**headline, "report_html": html_path.name, "created": content.created,
                "pertcontrast_version": __version__}
    write_json_atomic(json_path, headline)
    write_text_atomic(html_path, render(content))
    log.info("report: wrote %s (%.1f MB) in %.0f s", html_path, html_path.stat().st_size / 1e6,
             time.perf_counter() - started)
    return ReportFiles(html_path, json_path, sorted((output_dir / "figures").glob("*.*")), headline)


def _draw(folder, latents, model, analysis, table, strength, rows, views, removal, settings, guides):
    from pertcontrast.report import metrics, plots_cells, plots_effects, plots_training
    from pertcontrast.report.figures import FigureWriter, figure_style
    from pertcontrast.report.guide_qc import knockdown_figure
    from pertcontrast.report.inputs import read_de_rows

    writer = FigureWriter(folder)
    shown = "all" if len(rows) == latents.n_cells else f"{len(rows):,} randomly chosen"
    strongest = metrics.strongest(table, settings.top_perturbations)
    with figure_style():
        knockdown = knockdown_figure(guides) if guides is not None else None
        if knockdown is not None:
            writer.save(knockdown, "guide_knockdown", "On-target knockdown per guide.",
                        "The target gene in each guide's single-guide cells against the controls; green: "
                        "knockdown (BH q < FDR), red: none.")
        colourings = plots_cells.colourings(latents, rows, strongest, strength)
        for colouring in colourings:
            figure = plots_cells.scatter_figure(views, colouring, settings.embedding, settings.seed)
            caption = f"{shown} of {latents.n_cells:,} cells." + (f" Colours: {colouring.note}." if colouring.note else "")
            writer.save(figure, f"latents_{colouring.name}", f"Coloured by {colouring.title}.", caption)
        if removal:
            writer.save(plots_cells.removal_figure(removal), "background_removal",
                        "Phase and batch predictability from each latent.",
                        "Low bars for the salient latent mean the background was removed from it.")
        writer.save(plots_cells.norms_figure(latents, strongest), "salient_norms", "Salient norms.",
                    "Controls should sit near zero; perturbations with an effect above them. All cells.")
        if model.history is not None and len(model.history):
            writer.save(plots_training.curves_figure(model.history), "training_curves", "Training curves.",
                        "Train (blue) and validation (orange) per epoch; the dotted line marks the best epoch.")
        if analysis.similarity is not None and len(analysis.similarity):
            writer.save(plots_effects.heatmap_figure(analysis.similarity, analysis.clusters), "heatmap",
                        "Perturbation similarity.",
                        "Correlation between perturbations' mean effect profiles, in dendrogram leaf order.")
        if analysis.de_folder is not None:
            chosen = metrics.strongest(table, settings.volcanoes)
            de = read_de_rows(analysis.de_folder, chosen)
            delta = analysis.de_settings.get("delta")
            writer.save(plots_effects.volcano_figure(de, chosen, delta), "volcano",
                        f"Volcano plots of the {len(chosen)} strongest perturbations.",
                        "Genes called DE (posterior expected FDR) in colour; dashed lines at ±delta. Evidence: "
                        "log10 Bayes factor of |LFC| > delta from each gene's posterior mean and sd (the table's "
                        "bayes_factor, counted from a few posterior samples, is the same for every called gene).")
            _draw_de_heatmap(writer, analysis, table, strongest_with_de=metrics.strongest_with_de(table))
            if analysis.de_top is not None:
                writer.save(plots_effects.top_genes_figure(analysis.de_top, chosen), "top_genes",
                            "Top genes per perturbation.", "Up (red) and down (blue), from de_top.csv.")
    return {saved.name: saved for saved in writer.saved}, colourings


def _draw_de_heatmap(writer, analysis, table, strongest_with_de: list[str]) -> None:
    from pertcontrast.report import plots_effects
    from pertcontrast.report.inputs import read_de_rows

    if not strongest_with_de:
        return
    order = strongest_with_de
    if analysis.clusters is not None:  # the clustering's leaf order groups similar perturbations
        leaf = dict(zip(analysis.clusters["perturbation"].astype(str), analysis.clusters["leaf_order"]))
        order = sorted(order, key=lambda p: leaf.get(p, len(leaf)))
    figure = plots_effects.de_heatmap_figure(read_de_rows(analysis.de_folder, order), order)
    if figure is not None:
        writer.save(figure, "de_heatmap", "Genes called DE across perturbations.",
                    f"Posterior mean log2 fold change of each perturbation's strongest called genes (up to "
                    f"{plots_effects.MAX_HEATMAP_GENES}); a dot: called for that perturbation. Perturbations with "
                    "called genes, in the clustering's leaf order; genes in hierarchical-clustering order.")


def _content(identifier, headline, latents, model, analysis, removal, table, strength, figures, colourings,
             settings, inputs, guides):
    from dataclasses import asdict

    from pertcontrast.report.page import ReportContent

    return ReportContent(
        title=identifier, created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), headline=headline,
        latents=latents, model=model, analysis=analysis, removal=removal, table=table, strength=strength,
        figures=figures, colourings=colourings, method=settings.embedding,
        versions=package_versions(REPORT_PACKAGES),
        inputs={k: str(v) for k, v in inputs.items() if v is not None}, options=asdict(settings), guide_qc=guides,
    )


def attach_report(model_dir, output_dir, mlflow_uri: str | None = None) -> bool:
    """Log ``output_dir`` as the ``report`` artifact of the MLflow run that trained the
    model in ``model_dir`` (its run id and server from the model's run record, the server
    overridable). Without a recorded run or server it warns and attaches nothing."""
    from pertcontrast.tracking import log_report, recorded_run

    run_id, recorded_uri = recorded_run(model_dir)
    uri = mlflow_uri or recorded_uri
    if not run_id or not uri:
        log.warning("%s records no MLflow run (or no server); the report was not attached", model_dir)
        return False
    attached = log_report(run_id, output_dir, uri)
    if attached:
        log.info("report attached to MLflow run %s", run_id)
    return attached


def build_summary(report_jsons, output, link_template: str | None = None, title: str = "pertcontrast run summary"):
    """Write the run summary page: one row per screen, linking to its report."""
    from pertcontrast.report.summary_page import read_headlines, render_summary

    output = Path(output)
    headlines = read_headlines(report_jsons, output.parent, link_template)
    write_text_atomic(output, render_summary(headlines, title))
    log.info("summary: wrote %s (%d screens)", output, len(headlines))
    return output
