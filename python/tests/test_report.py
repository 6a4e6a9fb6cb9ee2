"""The report builder and the run summary page, checked on their files (the page in a
real browser: test_report_browser.py)."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from pertcontrast.cli import main
from pertcontrast.io import write_step_output
from pertcontrast.report import markup
from pertcontrast.analysis.multiple_testing import benjamini_hochberg

pytest_plugins = ["report_fixtures"]  # session fixtures shared by the report test modules
# what report_fixtures names one perturbation and one gene
SCRIPT_LABEL = "<script>alert(1)</script>"
IMG_GENE = "<img src=x onerror=alert(1)>"

SECTIONS = ("guides", "latents", "background-removal", "effects", "calibration", "clustering", "de", "training",
            "settings", "provenance")
ALL_FIGURES = {"latents_phase", "latents_condition", "latents_perturbation", "latents_batch",
               "latents_responder_call", "background_removal", "salient_norms", "training_curves", "heatmap",
               "volcano", "top_genes", "de_heatmap"}
GUIDE_FIGURES = {"guide_knockdown"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- the page -------------------------------------------------------------------------
def test_full_report_has_every_section_and_figure_embedded(full_report):
    html = full_report.html.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    names = {p.stem for p in full_report.figures}
    assert names == ALL_FIGURES | GUIDE_FIGURES
    folder = full_report.html.parent / "figures"
    for name in names:
        assert (folder / f"{name}.png").stat().st_size > 1000
        assert (folder / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert html.count('src="data:image/png;base64,') == len(names)
    assert "Not run" not in html
    # nothing to fetch: every src is a data: URI, links are in-page or the figure files
    assert not re.search(r'src="(?!data:)', html)
    assert not re.findall(r'href="(?!data:|#|figures/)', html)
    assert full_report.html.stat().st_size < 3_000_000


def test_headline_numbers(full_report, report_inputs):
    headline = json.loads(full_report.json.read_text())
    latents = ad.read_h5ad(report_inputs.prepared, backed="r")
    controls = int((latents.obs["perturbation"] == "control").sum())
    assert headline["id"] == "screen1" and headline["report_html"] == "screen1.report.html"
    assert headline["n_cells"] == headline["n_cells_shown"] == latents.n_obs
    assert headline["n_control_cells"] == controls
    assert headline["n_perturbations"] == len(report_inputs.perturbations)
    effects = pd.read_csv(report_inputs.effects / "effects.csv")
    assert headline["n_perturbations_with_effect"] == int((benjamini_hochberg(effects["energy_pvalue"].to_numpy())
                                                           <= 0.05).sum())
    assert headline["n_perturbations_with_de"] == int((effects["n_de_genes"] > 0).sum())
    for label in ("phase", "batch"):
        for which in ("salient", "background"):
            assert -1 <= headline[f"{label}_predictability_{which}"] <= 1
    assert headline["median_salient_norm_control"] > 0
    assert headline["steps"] == {"responders": True, "de": True, "effects": True}
    assert headline["epochs_run"] == 3


def test_report_without_analysis_says_what_did_not_run(plain_report, report_inputs):
    html = plain_report.html.read_text()
    assert "Not run: no effects folder given (run &#x27;pertcontrast effects&#x27;)." in html
    assert "Not run: no DE folder given (run &#x27;pertcontrast de&#x27;)." in html
    assert "responders: not run (run &#x27;pertcontrast responders&#x27; and give its output to the report)" in html
    assert "Not run: no guide QC folder given" in html
    assert "Not run: no calibration folder given" in html
    headline = json.loads(plain_report.json.read_text())
    assert headline["calibration_passed"] is None
    assert headline["n_cells_shown"] == 500
    assert f"Showing 500 of {headline['n_cells']:,} cells (a random subsample)" in html
    assert headline["n_perturbations_with_effect"] is None
    assert headline["steps"]["effects"] is False
    # without --responders there are no per-cell calls to colour by
    assert {p.stem for p in plain_report.figures} == ALL_FIGURES - {"heatmap", "volcano", "top_genes", "de_heatmap",
                                                                    "latents_responder_call"}
    assert "No responder calls: give the report the .h5ad written by" in html


def test_guide_section_shows_assignment_cells_and_flags_guides_without_knockdown(full_report, report_inputs):
    html = full_report.html.read_text()
    section = html.split('<section id="guides">')[1].split("</section>")[0]
    summary = json.loads((report_inputs.guide_qc / "summary.json").read_text())
    assert f"{summary['cells']:,} cells; {summary['cells_kept']:,} kept" in section
    assert f"{summary['multiple_targets']:,} with guides of several targets (excluded)" in section
    # the ineffective guide (renamed to the crafted label) is flagged, as text
    assert "1 of 4 measured guides show no on-target knockdown: &lt;script&gt;alert(1)&lt;/script&gt; (LMO2)" in section
    for table in ("perturbation-qc-table", "guide-qc-table", "control-kind-table"):
        assert f'id="{table}"' in section
    perturbations = pd.read_csv(report_inputs.guide_qc / "perturbations.csv")
    assert section.split('id="perturbation-qc-table"')[1].split("</table>")[0].count("<tr>") == len(perturbations) + 1
    assert 'data-figure="guide_knockdown"' in section


def test_calibration_section_shows_the_check_against_its_targets(full_report, report_inputs):
    html = full_report.html.read_text()
    section = html.split('<section id="calibration">')[1].split("</section>")[0]
    summary = json.loads((report_inputs.calibration / "summary.json").read_text())
    verdict = "Within every target" if summary["passed"] else "Outside a target"
    assert verdict in section.split('id="calibration-verdict"')[1].split("</p>")[0]
    groups = section.split('id="calibration-table"')[1].split("</table>")[0]
    assert groups.count("<tr>") == summary["n_groups"] + 1
    assert json.loads(full_report.json.read_text())["calibration_passed"] == summary["passed"]


def test_user_supplied_text_is_escaped(full_report):
    """A crafted label or gene name arrives as text: no tag, no attribute, no script."""
    html = full_report.html.read_text()
    assert SCRIPT_LABEL not in html and IMG_GENE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<script") == 1 and "onerror=" not in html.replace("onerror=alert(1)&gt;", "")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "unsafe-inline" not in csp
    # the figures for papers escape them too
    svg = (full_report.html.parent / "figures" / "latents_perturbation.svg").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and SCRIPT_LABEL not in svg


def test_markup_escapes_children_and_attributes():
    page = markup.tag("a", SCRIPT_LABEL, href='x" onclick="alert(1)', title=IMG_GENE)
    assert page == ('<a href="x&quot; onclick=&quot;alert(1)" title="&lt;img src=x onerror=alert(1)&gt;">'
                    "&lt;script&gt;alert(1)&lt;/script&gt;</a>")
    assert markup.tag("p", markup.tag("b", "x")) == "<p><b>x</b></p>"
    assert markup.safe_url("javascript:alert(1)") is None
    assert markup.safe_url("https://mlflow.example.org") == "https://mlflow.example.org"
    assert markup.format_number(1234567) == "1,234,567"
    assert markup.format_number(float("nan")) == "–"
    assert markup.format_number(0.000123) == "1.23e-04"


def test_benjamini_hochberg_matches_scipy():
    from scipy.stats import false_discovery_control

    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.001])
    adjusted = benjamini_hochberg(p)
    finite = np.isfinite(p)
    np.testing.assert_allclose(adjusted[finite], false_discovery_control(p[finite]))
    assert np.isnan(adjusted[~finite]).all()


def test_mlflow_run_is_linked_only_for_web_servers():
    from pertcontrast.report.page import _mlflow

    def content(uri):
        model = SimpleNamespace(run_id="abc123", tracking_uri=uri, experiment_id="7")
        return SimpleNamespace(model=model, latents=SimpleNamespace(uns={}))

    linked = _mlflow(content("https://mlflow.example.org/"))
    assert 'href="https://mlflow.example.org/#/experiments/7/runs/abc123"' in linked
    assert "href" not in _mlflow(content("javascript:alert(1)//"))
    assert "href" not in _mlflow(content("file:///tmp/mlruns"))


# -- the command line -----------------------------------------------------------------
def test_report_command_and_mlflow_attachment(report_inputs, tmp_path, monkeypatch):
    from pertcontrast import tracking
    from pertcontrast.tracking.record import RunRecord

    model = tmp_path / "model"
    shutil.copytree(report_inputs.model, model)
    RunRecord("pertcontrast", "run", tracking_uri="http://mlflow.example.org:5000", run_id="r1",
              experiment_id="3", status="FINISHED").save(model)
    attached = []
    monkeypatch.setattr(tracking, "log_report", lambda *args: attached.append(args) or True)
    result = invoke("report", report_inputs.prepared, "--latents", report_inputs.latents, "--model", model,
                    "--title", "s1", "--output-dir",
                    tmp_path / "out", "--embedding", "pca", "--max-points", 300, "--mlflow")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "s1.report.html").read_text()
    assert 'href="http://mlflow.example.org:5000/#/experiments/3/runs/r1"' in html
    assert attached == [("r1", str(tmp_path / "out"), "http://mlflow.example.org:5000")]
    assert json.loads((tmp_path / "out" / "s1.report.json").read_text())["mlflow_run_id"] == "r1"


def _copy_h5ad(source, destination, edit):
    shutil.copyfile(source, destination)
    with h5py.File(destination, "r+") as f:
        edit(f)
    return destination


def _bad_inputs(name, inputs, tmp_path):
    """(arguments, message) for one kind of incomplete input."""
    prepared, latents, model = inputs.prepared, inputs.latents, inputs.model
    both = [prepared, "--latents", latents]
    if name == "no_salient":
        path = _copy_h5ad(latents, tmp_path / "x.latents.h5ad", lambda f: f["obsm"].pop("X_salient"))
        return ([prepared, "--latents", path, "--model", model],
                f"{path} has no .obsm['X_salient']; run 'pertcontrast export' first.")
    if name == "no_settings":
        path = _copy_h5ad(prepared, tmp_path / "x.prepared.h5ad", lambda f: f["uns"].pop("pertcontrast"))
        return [path, "--latents", latents, "--model", model], "pass --perturbation-key and --control-label"
    if name == "truncated":
        path = tmp_path / "x.latents.h5ad"
        path.write_bytes(latents.read_bytes()[:2000])
        return [prepared, "--latents", path, "--model", model], "cannot be read as an .h5ad"
    if name == "other_cells":
        path = tmp_path / "x.latents.h5ad"
        ad.read_h5ad(latents)[:100].copy().write_h5ad(path)
        return [prepared, "--latents", path, "--model", model], f"{path}: its 100 cells are not the"
    if name == "wrong_control":
        return [*both, "--model", model, "--control-label", "NTC"], "no cells with the control label 'NTC'"
    if name == "no_config":
        folder = tmp_path / "model"
        shutil.copytree(model, folder)
        (folder / "config.json").unlink()
        return [*both, "--model", folder], f"{folder} has no config.json; give the model folder written by"
    if name == "no_effects_table":
        (tmp_path / "effects").mkdir()
        return ([*both, "--model", model, "--effects", tmp_path / "effects"],
                f"{tmp_path / 'effects'} has no effects.csv; give the folder written by 'pertcontrast effects'.")
    if name == "no_de_table":
        (tmp_path / "de").mkdir()
        return ([*both, "--model", model, "--de", tmp_path / "de"],
                f"{tmp_path / 'de'} has neither de.parquet nor de.csv.gz")
    if name == "responders_without_calls":
        return ([*both, "--model", model, "--responders", latents],
                f"{latents} has no .obs['responder_call']; give the output of 'pertcontrast responders'.")
    if name == "bad_title":
        return [*both, "--model", model, "--title", "../elsewhere"], "cannot be used in a file name"
    raise ValueError(name)


@pytest.mark.parametrize("name", ["no_salient", "no_settings", "truncated", "other_cells", "wrong_control",
                                  "no_config", "no_effects_table", "no_de_table", "responders_without_calls",
                                  "bad_title"])
def test_incomplete_inputs_are_refused_with_one_line(name, report_inputs, tmp_path):
    arguments, message = _bad_inputs(name, report_inputs, tmp_path)
    result = invoke("report", *arguments, "--output-dir", tmp_path / "out", "--embedding", "pca")
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.html"))


# -- the run summary ------------------------------------------------------------------
def _links(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', html)


def test_summary_links_each_report(full_report, plain_report, tmp_path):
    output = tmp_path / "summary" / "index.html"
    result = invoke("summary", "--report-json", full_report.json, "--report-json", plain_report.json,
                    "--output", output)
    assert result.exit_code == 0, result.output
    html = output.read_text()
    links = _links(html)
    assert len(links) == 2
    assert {(output.parent / link).resolve() for link in links} == {full_report.html.resolve(),
                                                                     plain_report.html.resolve()}
    assert html.count("<tr>") == 3  # header + one row per screen
    assert ">screen1<" in html and ">screen2<" in html


def test_summary_link_template_for_the_published_layout(full_report, plain_report, tmp_path):
    output = tmp_path / "index.html"
    result = invoke("summary", "--report-json", full_report.json, "--report-json", plain_report.json,
                    "--output", output, "--link-template", "../{id}/report/{html}")
    assert result.exit_code == 0, result.output
    assert _links(output.read_text()) == ["../screen1/report/screen1.report.html",
                                          "../screen2/report/screen2.report.html"]


def test_summary_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"cells": 3}')
    result = invoke("summary", "--report-json", path, "--output", tmp_path / "index.html")
    assert result.exit_code == 1
    assert f"{path}: has no 'id' and 'report_html'; give a .report.json written by 'pertcontrast report'." \
        in result.output


# -- scale --------------------------------------------------------------------------
def _large_screen(folder: Path, n_cells: int, seed: int = 0) -> tuple[Path, Path]:
    """A screen with many cells: a prepared file (labels, sparse counts) and its latents
    (no model needed)."""
    rng = np.random.default_rng(seed)
    perturbations = np.array(["control"] + [f"P{i:03d}" for i in range(60)])
    index = rng.integers(0, len(perturbations), n_cells)
    labels = perturbations[index]
    phase = rng.choice(["G1", "S", "G2M"], n_cells)
    batch = rng.choice(["b1", "b2", "b3"], n_cells)
    effect = rng.normal(0, 1, (len(perturbations), 10)) * (perturbations != "control")[:, None]
    salient = (effect[index] + rng.normal(0, 0.3, (n_cells, 10))).astype(np.float32)
    background = (rng.normal(0, 1, (n_cells, 10)) + (phase == "S")[:, None]).astype(np.float32)
    counts = sp.random(n_cells, 200, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    counts.data = np.ceil(counts.data * 5)
    adata = ad.AnnData(X=counts, obs=pd.DataFrame({"perturbation": pd.Categorical(labels), "phase": phase,
                                                   "batch": batch}, index=[f"c{i}" for i in range(n_cells)]))
    adata.uns["pertcontrast"] = {"settings": {"perturbation_key": "perturbation", "control_label": "control",
                                              "batch_key": "batch"}}
    adata.write_h5ad(folder / "big.prepared.h5ad")
    write_step_output(folder / "big.latents.h5ad", adata.obs_names,
                      obsm={"X_salient": salient, "X_background": background})
    return folder / "big.prepared.h5ad", folder / "big.latents.h5ad"


def test_large_screen_is_subsampled_for_plots(report_inputs, tmp_path):
    prepared, latents = _large_screen(tmp_path, 40_000)
    result = invoke("report", prepared, "--latents", latents, "--model", report_inputs.model,
                    "--output-dir", tmp_path / "out", "--embedding", "pca", "--max-points", 4000)
    assert result.exit_code == 0, result.output
    headline = json.loads((tmp_path / "out" / "big.report.json").read_text())
    assert headline["n_cells"] == 40_000 and headline["n_cells_shown"] == 4000
    assert headline["n_perturbations"] == 60
    # phase was put in the background only: the summary must say so
    assert headline["phase_predictability_background"] > 0.2 > headline["phase_predictability_salient"]
    html = (tmp_path / "out" / "big.report.html").read_text()
    assert "Showing 4,000 of 40,000 cells (a random subsample)" in html
    assert html.count("<tr>") > 60  # every perturbation in the table
    assert (tmp_path / "out" / "big.report.html").stat().st_size < 2_500_000


@pytest.mark.slow
def test_umap_views(report_inputs, tmp_path):
    from report_fixtures import build

    files = build(report_inputs, tmp_path / "out", analysis=False, embedding="umap", max_points=400)
    html = files.html.read_text()
    assert "by UMAP computed on the shown cells" in html
    assert (tmp_path / "out" / "figures" / "latents_phase.svg").exists()


@pytest.mark.slow
def test_report_reads_the_real_analysis_outputs(report_inputs, tmp_path):
    """responders, de and effects as the analysis commands write them (format drift guard)."""
    model, latents, responders = report_inputs.model, report_inputs.latents, tmp_path / "s.responders.h5ad"
    prepared = shutil.copyfile(report_inputs.folder / "prepared.h5ad", tmp_path / "s.prepared.h5ad")
    steps = [
        ("responders", prepared, "--latents", latents, "--output", responders),
        ("de", prepared, "--model", model, "--responders", responders, "--output", tmp_path / "de", "--samples", 3,
         "--max-cells-per-perturbation", 50, "--device", "cpu"),
        ("effects", prepared, "--latents", latents, "--responders", responders, "--de", tmp_path / "de",
         "--output", tmp_path / "effects", "--permutations", 10),
        ("calibration", prepared, "--latents", latents, "--model", model, "--output", tmp_path / "calibration",
         "--groups", 2, "--no-de", "--device", "cpu"),
        ("report", prepared, "--latents", latents, "--model", model, "--responders", responders,
         "--de", tmp_path / "de", "--effects", tmp_path / "effects", "--calibration", tmp_path / "calibration",
         "--output-dir", tmp_path / "report", "--embedding", "pca"),
    ]
    for step in steps:
        result = invoke(*step)
        assert result.exit_code == 0, result.output
    html = (tmp_path / "report" / "s.report.html").read_text()
    assert "Not run" not in html.replace("Not run: no guide QC folder given", "")
    headline = json.loads((tmp_path / "report" / "s.report.json").read_text())
    assert headline["steps"] == {"responders": True, "de": True, "effects": True}
    # a model of 3 epochs may call no gene: then the DE heatmap is left out, and the page says why
    called = headline["n_perturbations_with_de"] > 0
    assert {p.stem for p in (tmp_path / "report" / "figures").glob("*.png")} == ALL_FIGURES - (
        set() if called else {"de_heatmap"})
    assert called or "No gene called DE in any perturbation" in html


# -- report fixes: truth, training banner, figures ----------------------------------------
def test_a_simulated_screens_truth_is_shown_beside_the_calls(full_report, report_inputs):
    import anndata as ad

    truth = pd.DataFrame(ad.read_h5ad(report_inputs.prepared, backed="r").uns["truth"]["perturbations"])
    has_effect = dict(zip(truth["perturbation"].astype(str), truth["has_effect"].astype(bool)))
    html = full_report.html.read_text()
    table = html.split('id="effect-table"')[1].split("</table>")[0]
    assert "simulated_<wbr>effect" in table and "simulated_<wbr>program" in table
    headline = json.loads(full_report.json.read_text())
    # the perturbation renamed to the crafted label is not in the truth: neither counted nor guessed
    named = [p for p in report_inputs.perturbations if p in has_effect]
    assert headline["n_simulated_effects"] == sum(has_effect[p] for p in named) > 0
    effects = pd.read_csv(report_inputs.effects / "effects.csv")
    called = dict(zip(effects["perturbation"], benjamini_hochberg(effects["energy_pvalue"].to_numpy()) <= 0.05))
    assert headline["n_simulated_effects_found"] == sum(called[p] and has_effect[p] for p in named)
    assert headline["n_effects_called_without_one"] == sum(called[p] and not has_effect[p] for p in named)
    assert f"(simulated: {headline['n_simulated_effects']} have one; " in html


def test_a_short_training_gets_a_banner_at_the_top(full_report):
    html = full_report.html.read_text()
    header = html.split("<header")[1].split("</header>")[0]
    assert 'id="training-warning"' in header and "Trained for 3 epochs only" in header
    assert json.loads(full_report.json.read_text())["training_warnings"][0].startswith("Trained for 3 epochs")


def test_training_warnings_name_each_problem():
    from pertcontrast.report.diagnostics import training_warnings

    def history(loss, train_accuracy=None, validation_accuracy=None):
        table = pd.DataFrame({"epoch": range(1, len(loss) + 1), "validation_loss": loss})
        if train_accuracy is not None:
            table["train_classifier_accuracy"], table["validation_classifier_accuracy"] = train_accuracy, validation_accuracy
        return table

    def config(epochs, stopped_early=False, weight=0.0):
        return {"training": {"epochs_run": epochs, "stopped_early": stopped_early,
                             "settings": {"classification_weight": weight}}}

    flat = [100.0] * 40 + [90.0] * 40  # best epoch early, then flat: converged
    assert training_warnings(config(80), history(flat)) == []
    assert training_warnings(config(80, stopped_early=True), history(np.linspace(100, 50, 80))) == []
    falling = training_warnings(config(80), history(np.linspace(100, 50, 80)))
    assert len(falling) == 1 and "still falling" in falling[0] and "raise max_epochs" in falling[0]
    (short,) = training_warnings(config(2), history([100.0, 90.0]))
    assert short.startswith("Trained for 2 epochs only")
    gap = training_warnings(config(80, weight=1.0), history(flat, [0.5] * 79 + [1.0], [0.4] * 79 + [0.38]))
    assert gap == ["The perturbation classifier is right on 100% of the training cells but on 38% of the "
                   "validation cells: the salient latent memorised the training cells. Lower "
                   "classification_weight or turn the classifier off."]
    assert training_warnings(config(80, weight=0.0), history(flat, [1.0] * 80, [0.38] * 80)) == []


def test_volcano_evidence_orders_genes_the_sampled_bayes_factor_ties():
    from pertcontrast.report.plots_effects import VOLCANO_CAP, evidence

    rows = pd.DataFrame({"lfc_mean": [0.3, 0.6, -0.9, 0.0, 3.0], "lfc_sd": [0.1, 0.1, 0.1, 0.1, 0.01],
                         "bayes_factor": [6.0, 6.0, 6.0, -6.0, 6.0], "prob_de": [1.0, 1.0, 1.0, 0.0, 1.0]})
    values = evidence(rows, delta=0.15)
    assert values[0] < values[1] < values[2] == VOLCANO_CAP  # ordered by the size of the change
    assert values[3] < -0.5 and values[4] == VOLCANO_CAP  # no change: evidence against
    # p(|LFC| > delta) of N(0.3, 0.1) is 1 - Phi(-1.5) + Phi(-4.5)
    from scipy.stats import norm

    p = norm.sf(0.15, 0.3, 0.1) + norm.cdf(-0.15, 0.3, 0.1)
    assert values[0] == pytest.approx(np.log10(p / (1 - p)), rel=1e-6)
    np.testing.assert_array_equal(evidence(rows.drop(columns="lfc_sd"), 0.15), rows["bayes_factor"])


def test_volcano_draws_the_evidence_the_calls_were_made_on():
    from pertcontrast.report.figures import figure_style
    from pertcontrast.report.plots_effects import ADJUSTED_CAP, ADJUSTED_LABEL, EVIDENCE_LABEL, adjusted_evidence, \
        observed_lfc, volcano_figure

    de = pd.DataFrame({"perturbation": "A", "gene": ["g1", "g2", "g3", "g4"], "lfc_mean": [0.01, 0.0, -0.3, np.nan],
                       "lfc_sd": 0.1, "prob_de": [0.0, 0.0, 1.0, np.nan], "residual_lfc": [0.4, 0.0, -0.5, np.nan],
                       "wilcoxon_lfc": [0.5, 0.1, -0.6, 0.9], "de_padj": [1e-8, 0.9, 1e-300, 1e-3],
                       "is_de": [True, False, True, True]})
    # a small but real change the posterior shrank to 0 (g1) is drawn where the test saw it
    np.testing.assert_allclose(observed_lfc(de), [0.4, 0.0, -0.5, 0.9])  # Wilcoxon's outside the model
    np.testing.assert_allclose(adjusted_evidence(de), [8.0, -np.log10(0.9), ADJUSTED_CAP, 3.0])
    with figure_style():
        axis = volcano_figure(de, ["A"], 0.15).axes[0]
        old = volcano_figure(de.drop(columns=["de_padj", "residual_lfc"]), ["A"], 0.15).axes[0]
    np.testing.assert_allclose(axis.collections[0].get_offsets()[:, 0], [0.4, 0.0, -0.5, 0.9])
    assert axis.get_ylabel() == ADJUSTED_LABEL and old.get_ylabel() == EVIDENCE_LABEL
    assert axis.get_title() == "A (3 called)"


def test_figures_are_decoded_with_the_page(full_report):
    html = full_report.html.read_text()
    assert html.count("<img ") == len(full_report.figures) // 2 and "decoding=" not in html


def test_epoch_ticks_are_whole_numbers():
    from pertcontrast.report.figures import figure_style
    from pertcontrast.report.plots_training import curves_figure

    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "validation_loss": [3.1, 2.2, 1.7]})
    with figure_style():
        figure = curves_figure(history)
        figure.canvas.draw()
        ticks = [tick for tick in figure.axes[0].get_xticks() if 1 <= tick <= 3]
    assert ticks and all(float(tick).is_integer() for tick in ticks)


def test_similarity_heatmap_has_readable_labels_and_a_cluster_legend():
    from pertcontrast.report.figures import figure_style
    from pertcontrast.report.plots_effects import heatmap_figure

    names = [f"P{i}" for i in range(12)]
    similarity = pd.DataFrame(np.eye(12), index=names, columns=names)
    clusters = pd.DataFrame({"perturbation": names, "cluster": [1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4],
                             "leaf_order": range(12)})
    with figure_style():
        figure = heatmap_figure(similarity, clusters)
        figure.canvas.draw()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [f"cluster {i}" for i in (1, 2, 3, 4)]
    strip = figure.axes[0]
    assert [label.get_text() for label in strip.get_yticklabels()] == names
    assert min(label.get_fontsize() for label in strip.get_yticklabels()) >= 8


def test_de_heatmap_shows_each_perturbations_called_genes():
    from pertcontrast.report.figures import figure_style
    from pertcontrast.report.plots_effects import called_genes, de_heatmap_figure

    de = pd.DataFrame({"perturbation": ["A"] * 3 + ["B"] * 3, "gene": ["g1", "g2", "g3"] * 2,
                       "lfc_mean": [1.0, 0.8, 0.0, 0.0, -0.1, -1.2], "is_de": [True, True, False, False, False, True],
                       "de_score": [0.99, 0.95, 0.1, 0.2, 0.3, 0.99]})
    assert called_genes(de, ["A", "B"]) == ["g1", "g3", "g2"]  # each perturbation's best first, in turn
    with figure_style():
        figure = de_heatmap_figure(de, ["A", "B"])
        figure.canvas.draw()
    axis = figure.axes[0]
    assert sorted(label.get_text() for label in axis.get_yticklabels()) == ["g1", "g2", "g3"]
    assert [label.get_text() for label in axis.get_xticklabels()] == ["A", "B"]
    assert len(axis.collections[0].get_offsets()) == 3  # a dot per call
    assert de_heatmap_figure(de.assign(is_de=False), ["A", "B"]) is None
