"""The report page: one self-contained HTML file (inline CSS, a small inline script,
images as data URIs, a Content-Security-Policy that allows nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pertcontrast.report.figures import SavedFigure
from pertcontrast.report.markup import Html, format_number, join, key_value_table, safe_url, tag
from pertcontrast.report.tables import sortable_table
from pertcontrast.report.templating import render_page

SECTIONS = (
    ("guides", "Guides and perturbations"),
    ("latents", "Latent spaces"),
    ("background-removal", "Background removal"),
    ("effects", "Perturbation effects"),
    ("calibration", "Calibration check"),
    ("clustering", "Perturbation clustering"),
    ("de", "Differential expression"),
    ("training", "Training"),
    ("settings", "Settings"),
    ("provenance", "Software and provenance"),
)


@dataclass
class ReportContent:
    """Everything the page shows, computed beforehand (no I/O here)."""

    title: str
    created: str
    headline: dict
    latents: object
    model: object
    analysis: object
    removal: dict
    table: pd.DataFrame
    strength: str
    figures: dict[str, SavedFigure]
    colourings: list
    method: str
    versions: dict[str, str]
    inputs: dict[str, str]
    options: dict = field(default_factory=dict)
    guide_qc: object = None  # report.guide_qc.GuideQC, when the guide step ran
    calibration: object = None  # report.calibration.Calibration, when the check ran


def render(content: ReportContent) -> str:
    sections = {
        "guides": _guides, "latents": _latents, "background-removal": _background_removal, "effects": _effects,
        "calibration": _calibration,
        "clustering": _clustering, "de": _de, "training": _training, "settings": _settings,
        "provenance": _provenance,
    }
    body = [_header(content), _nav()]
    body.append(tag("main", *[
        tag("section", tag("h2", name), sections[key](content), id=key) for key, name in SECTIONS
    ]))
    body.append(tag("footer", "Self-contained report: images are embedded, nothing is fetched. Every figure is "
                              "also in figures/ beside this file, as PNG and SVG."))
    return render_page(f"{content.title}: pertcontrast report", join(body, "\n"),
                       generator=f"pertcontrast {content.versions.get('pertcontrast', '')}")


# -- header ---------------------------------------------------------------------------
def _header(content: ReportContent) -> Html:
    h = content.headline
    facts = [f"{format_number(h['n_cells'])} cells", f"{format_number(h['n_perturbations'])} perturbations",
             f"{format_number(h['n_control_cells'])} control cells"]
    if h.get("n_batches"):
        facts.append(f"{format_number(h['n_batches'])} batches")
    cards = [
        ("phase predictability: salient / background", _pair(h, "phase_predictability")),
        ("batch predictability: salient / background", _pair(h, "batch_predictability")),
        ("median salient norm: control / perturbed",
         f"{_fixed(h['median_salient_norm_control'])} / {_fixed(h['median_salient_norm_perturbed'])}"),
        ("perturbations with an effect (detection test, BH ≤ 0.05)", _effects_found(h)),
        ("responder fraction", _fixed(h["responder_fraction"], "not run")),
        ("calibration check (pseudo-perturbations)",
         {None: "not run", True: "within targets", False: "OUTSIDE targets"}[h.get("calibration_passed")]),
    ]
    return tag("header",
               tag("h1", content.title),
               tag("p", " · ".join(facts)),
               tag("p", f"generated {content.created} by pertcontrast {content.versions.get('pertcontrast', '?')}"),
               _training_banner(h.get("training_warnings") or []),
               tag("div", *[tag("div", tag("div", value, class_="value"), tag("div", label, class_="label"),
                                class_="card") for label, value in cards], class_="cards"),
               class_="page")


def _training_banner(warnings: list[str]) -> Html:
    """Training looks under-trained or memorised: said first, as every number depends on it."""
    if not warnings:
        return Html("")
    return tag("div", tag("b", "Check the training before reading the results: "),
               tag("ul", *[tag("li", text) for text in warnings]), class_="banner", id="training-warning",
               role="alert")


def _effects_found(h: dict) -> str:
    found = _num(h["n_perturbations_with_effect"], "not run")
    if h.get("n_simulated_effects") is None or h["n_perturbations_with_effect"] is None:
        return found
    return (f"{found} (simulated: {h['n_simulated_effects']} have one; {h['n_simulated_effects_found']} found, "
            f"{h['n_effects_called_without_one']} called without one)")


def _pair(h: dict, prefix: str) -> str:
    return f"{_fixed(h.get(prefix + '_salient'))} / {_fixed(h.get(prefix + '_background'))}"


def _num(value, missing: str = "–") -> str:
    return missing if value is None else format_number(value)


def _fixed(value, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.2f}"


def _nav() -> Html:
    return tag("nav", *[tag("a", name, href=f"#{key}") for key, name in SECTIONS])


# -- sections -------------------------------------------------------------------------
def _figure(saved: SavedFigure | None, alt: str | None = None) -> Html:
    if saved is None:
        return Html("")
    caption = [tag("b", saved.title)]
    if saved.caption:
        caption.append(" " + saved.caption)
    caption.append(Html(" ") + tag("a", "PNG", href=f"figures/{saved.name}.png") + " · "
                   + tag("a", "SVG", href=f"figures/{saved.name}.svg"))
    return tag("figure",
               # decoded with the page (no decoding="async"): printed or captured pages show every figure
               tag("img", src=saved.data_uri(), alt=alt or saved.title, width=saved.width, height=saved.height,
                   data_figure=saved.name),
               tag("figcaption", *caption))


def _not_run(text: str) -> Html:
    return tag("p", text, class_="not-run")


def _guides(c: ReportContent) -> Html:
    from pertcontrast.report.guide_qc import section

    return section(c.guide_qc, _figure(c.figures["guide_knockdown"]) if "guide_knockdown" in c.figures else None)


def _calibration(c: ReportContent) -> Html:
    from pertcontrast.report.calibration import section

    return section(c.calibration)


def _latents(c: ReportContent) -> Html:
    h = c.headline
    shown, total = h["n_cells_shown"], h["n_cells"]
    which = f"all {format_number(total)} cells" if shown == total else \
        f"{format_number(shown)} of {format_number(total)} cells (a random subsample)"
    views = "the salient latent, the background latent and log-normalised counts" if c.latents.has_counts \
        else "the salient latent and the background latent"
    parts = [tag("p", f"Showing {which} in {views}, "
                      f"by {c.method.upper()} computed on the shown cells. Cell-cycle phase and batch should "
                      "shape the background latent and not the salient one; perturbations should separate in "
                      "the salient latent, with controls near its origin.", class_="note", id="cells-shown")]
    if not c.latents.has_counts:
        parts.append(_not_run("No counts in the prepared file (.X is empty): the count-based views are left out."))
    for colouring in c.colourings:
        parts.append(_figure(c.figures.get(f"latents_{colouring.name}")))
    if c.latents.phase is None:
        parts.append(_not_run("No .obs['phase'] (cell-cycle scoring was skipped by preprocess)."))
    if c.latents.responder_call is None:
        parts.append(_not_run("No responder calls: give the report the .h5ad written by "
                              "'pertcontrast responders' to colour cells by responder call."))
    return join(parts)


def _background_removal(c: ReportContent) -> Html:
    parts = [tag("p", "How well a cross-validated 15-nearest-neighbour classifier predicts each label from "
                      "each latent (balanced accuracy minus chance: 0 = no information). A good model keeps "
                      "phase and batch in the background latent and out of the salient one.", class_="note")]
    if c.removal:
        rows = []
        for label, values in c.removal.items():
            salient, background = values.get("salient"), values.get("background")
            verdict = _verdict(salient, background)
            rows.append(tag("tr", tag("th", label), tag("td", _fixed(salient), class_="num"),
                            tag("td", _fixed(background), class_="num"),
                            tag("td", verdict[0], class_=verdict[1])))
        parts.append(tag("table", tag("thead", tag("tr", tag("th", "label"), tag("th", "salient", class_="num"),
                                                   tag("th", "background", class_="num"), tag("th", "reading"))),
                         tag("tbody", *rows), id="removal-table"))
        parts.append(_figure(c.figures.get("background_removal")))
    else:
        parts.append(_not_run("Neither a phase nor a batch column: nothing to measure."))
    h = c.headline
    parts.append(tag("p", f"Median salient norm: {_fixed(h['median_salient_norm_control'])} in controls, "
                          f"{_fixed(h['median_salient_norm_perturbed'])} in perturbed cells; a random perturbed "
                          f"cell has the larger norm with probability {_fixed(h['salient_norm_auc'])} "
                          "(0.5 = no difference).", class_="note"))
    parts.append(_figure(c.figures.get("salient_norms")))
    return join(parts)


def _verdict(salient, background) -> tuple[str, str]:
    if salient is None or background is None:
        return "not measurable", "note"
    if salient <= max(0.05, background / 2):
        return "kept out of the salient latent", "good"
    return "leaks into the salient latent", "bad"


def _effects(c: ReportContent) -> Html:
    a = c.analysis
    ran = []
    for step, given in (("responders", a.responders is not None), ("effects", a.effects is not None)):
        ran.append(tag("li", f"{step}: " + ("included" if given else f"not run (run 'pertcontrast {step}' and give "
                                                                      "its output to the report)")))
    simulated = (" A simulated screen: simulated_program and simulated_effect are its truth, beside the calls."
                 if "simulated_effect" in c.table else "")
    parts = [tag("p", f"One row per perturbation, strongest first by {c.strength.replace('_', ' ')}. Click a "
                      "header to sort; type to filter (matches any column, e.g. a gene in top_up)." + simulated,
                 class_="note"),
             tag("ul", *ran, class_="note")]
    parts.append(sortable_table(c.table, "effect-table"))
    return join(parts)


def _clustering(c: ReportContent) -> Html:
    if c.analysis.effects is None:
        return _not_run("Not run: no effects folder given (run 'pertcontrast effects').")
    if "heatmap" not in c.figures:
        return _not_run("The effects folder has no perturbation_similarity.csv.")
    return _figure(c.figures["heatmap"])


def _de(c: ReportContent) -> Html:
    if c.analysis.de_folder is None:
        return _not_run("Not run: no DE folder given (run 'pertcontrast de').")
    parts = [_figure(c.figures.get("volcano"))]
    if "de_heatmap" in c.figures:
        parts.append(_figure(c.figures["de_heatmap"]))
    else:
        parts.append(_not_run("No gene called DE in any perturbation: no gene × perturbation heatmap."))
    if "top_genes" in c.figures:
        parts.append(_figure(c.figures["top_genes"]))
    else:
        parts.append(_not_run("The DE folder has no de_top.csv: top genes not shown."))
    return join(parts)


def _training(c: ReportContent) -> Html:
    training = {k: v for k, v in c.model.config.get("training", {}).items() if k != "settings"}
    parts = []
    if "training_curves" in c.figures:
        parts.append(_figure(c.figures["training_curves"]))
    else:
        parts.append(_not_run(f"No history.csv in {c.model.path}: no training curves."))
    parts.append(tag("h3", "Run"))
    parts.append(key_value_table(training))
    return join(parts)


def _settings(c: ReportContent) -> Html:
    config = c.model.config
    registry = {k: v for k, v in config.get("registry", {}).items() if k not in ("gene_names", "perturbations")}
    registry["n_genes"] = len(config.get("registry", {}).get("gene_names", []))
    registry["n_perturbations"] = len(config.get("registry", {}).get("perturbations", []))
    preprocess = c.latents.uns.get("pertcontrast", {})
    de_settings = {k: v for k, v in c.analysis.de_settings.items() if k != "cells_used"}
    groups = [
        ("Training settings", config.get("training", {}).get("settings", {})),
        ("Architecture", config.get("architecture", {})),
        ("Data registry", registry),
        ("Preprocessing", {"settings": preprocess.get("settings", {}), "report": preprocess.get("report", {})}),
        ("Export", c.latents.uns.get("pertcontrast_export", {})),
        # the per-perturbation detection record is in the tables, not a setting
        ("Responders", {k: v for k, v in c.latents.uns.get("pertcontrast_responders", {}).items()
                        if k != "detection"}),
        ("Differential expression", de_settings),
        ("This report", c.options),
    ]
    return join(tag("details", tag("summary", name), key_value_table(values), open=(i == 0))
                for i, (name, values) in enumerate(groups) if values)


def _provenance(c: ReportContent) -> Html:
    recorded = {
        "preprocess": c.latents.uns.get("pertcontrast", {}).get("version"),
        "train": c.model.config.get("pertcontrast_version"),
        "export": c.latents.uns.get("pertcontrast_export", {}).get("pertcontrast_version"),
        "de": c.analysis.de_settings.get("pertcontrast_version"),
    }
    parts = [tag("div",
                 tag("div", tag("h3", "Software (this report)"), key_value_table(c.versions)),
                 tag("div", tag("h3", "pertcontrast version of each input"),
                     key_value_table({k: v for k, v in recorded.items() if v})),
                 tag("div", tag("h3", "Inputs"), key_value_table(c.inputs)),
                 class_="columns"),
             tag("h3", "MLflow"), _mlflow(c)]
    return join(parts)


def _mlflow(c: ReportContent) -> Html:
    model = c.model
    export = c.latents.uns.get("pertcontrast_export", {})
    if not model.run_id and not export.get("model_run_id"):
        return _not_run("Not tracked: the model folder has no MLflow run record.")
    items = []
    if model.run_id:
        url = safe_url(model.tracking_uri)
        link = None
        if url and model.experiment_id:
            link = f"{url.rstrip('/')}/#/experiments/{model.experiment_id}/runs/{model.run_id}"
        run = tag("a", model.run_id, href=link, id="mlflow-link") if link else tag("code", model.run_id)
        items.append(tag("li", "training run ", run, f" on {model.tracking_uri or 'an unknown server'}"))
    if export.get("model_run_id"):
        items.append(tag("li", f"registered model {export.get('model_name', '?')} version "
                               f"{export.get('model_version', '?')} (run {export['model_run_id']})"))
    return tag("ul", *items)

