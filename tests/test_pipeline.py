"""`nextflow run . -profile test`, for real: two simulated screens end to end, then -resume.

The three runs share one launch folder: the first does the work, the second (-resume) must
execute nothing, the third (-resume, another --max_epochs) must re-run only TRAIN and what
follows it.
"""

from __future__ import annotations

import json
from importlib.metadata import version

import anndata as ad
import pandas as pd
import pytest
import yaml

SCREENS = ("simulated_0", "simulated_1")
PER_SCREEN = ("SIMULATE", "PREPROCESS", "TRAIN", "EXPORT", "RESPONDERS", "DE", "EFFECTS", "CALIBRATION", "GENERATE",
              "REPORT")
AFTER_TRAIN = ("TRAIN", "EXPORT", "RESPONDERS", "DE", "EFFECTS", "CALIBRATION", "GENERATE", "REPORT", "SUMMARY")
STEPS = PER_SCREEN + ("SUMMARY",)
TEST_EPOCHS = 2  # conf/test.config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(test_profile_run):
    return test_profile_run  # conftest.py: shared with test_containers.py


@pytest.fixture(scope="module")
def launch_dir(first_run):
    return first_run.launch_dir


@pytest.fixture(scope="module")
def resumed_run(first_run, run_nextflow, repo, launch_dir):
    run = run_nextflow(["run", str(repo), "-profile", "test", "--outdir", "results", "-resume"], launch_dir)
    assert run.returncode == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="module")
def retrained_run(resumed_run, run_nextflow, repo, launch_dir):
    args = ["run", str(repo), "-profile", "test", "--outdir", "results", "-resume", "--max_epochs", str(TEST_EPOCHS + 1)]
    run = run_nextflow(args, launch_dir)
    assert run.returncode == 0, run.output[-5000:]
    return run


def test_every_step_ran_once_per_screen(first_run):
    statuses = first_run.statuses()
    assert sorted(statuses) == sorted(STEPS)
    for step in PER_SCREEN:
        assert statuses[step] == ["COMPLETED"] * len(SCREENS), step
    assert statuses["SUMMARY"] == ["COMPLETED"]


@pytest.mark.parametrize("screen", SCREENS)
def test_prepared_screen_is_a_valid_h5ad(first_run, screen):
    prepared = first_run.outdir / screen / "prepared" / f"{screen}.prepared.h5ad"
    adata = ad.read_h5ad(prepared)
    assert adata.n_obs > 1000 and adata.n_vars > 100
    assert "perturbation" in adata.obs
    assert (adata.obs["perturbation"] == "control").sum() > 50


@pytest.mark.parametrize("screen", SCREENS)
def test_model_folder_is_complete(first_run, screen):
    model = first_run.outdir / screen / "model"
    assert {"config.json", "model.pt", "history.csv"} <= {path.name for path in model.iterdir()}
    assert json.loads((model / "config.json").read_text())
    assert (model / "model.pt").stat().st_size > 1000
    assert len(pd.read_csv(model / "history.csv")) == TEST_EPOCHS


@pytest.mark.parametrize("screen", SCREENS)
def test_latents_have_salient_and_background_for_every_cell(first_run, screen):
    prepared = ad.read_h5ad(first_run.outdir / screen / "prepared" / f"{screen}.prepared.h5ad", backed="r")
    latents = ad.read_h5ad(first_run.outdir / screen / "latents" / f"{screen}.latents.h5ad")
    assert latents.obs_names.equals(prepared.obs_names)
    for key in ("X_salient", "X_background"):
        assert key in latents.obsm
        assert latents.obsm[key].shape[0] == prepared.n_obs
        assert latents.obsm[key].shape[1] > 0


@pytest.mark.parametrize("screen", SCREENS)
def test_the_counts_are_written_once(first_run, screen):
    """Only the prepared file holds counts; the step outputs hold what their step added."""
    folder = first_run.outdir / screen
    for step in ("latents", "responders"):
        output = ad.read_h5ad(folder / step / f"{screen}.{step}.h5ad")
        assert output.n_vars == 0 and output.X is None, step
    prepared = (folder / "prepared" / f"{screen}.prepared.h5ad").stat().st_size
    for step in ("latents", "responders"):
        assert (folder / step / f"{screen}.{step}.h5ad").stat().st_size < prepared / 3, step


@pytest.mark.parametrize("screen", SCREENS)
def test_analysis_tables_are_published(first_run, screen):
    folder = first_run.outdir / screen
    responders = ad.read_h5ad(folder / "responders" / f"{screen}.responders.h5ad", backed="r")
    assert {"responder_score", "responder_probability", "responder_call"} <= set(responders.obs)
    assert set(responders.obs["responder_call"].astype(str)) <= {"control", "responder", "non-responder"}
    de = pd.read_parquet(folder / "de" / "de.parquet")
    assert {"perturbation", "gene", "lfc_mean", "prob_de", "is_de", "wilcoxon_padj"} <= set(de.columns)
    prepared = ad.read_h5ad(folder / "prepared" / f"{screen}.prepared.h5ad", backed="r")
    n_perturbations = prepared.obs["perturbation"].astype(str).nunique() - 1
    assert de["perturbation"].nunique() == n_perturbations
    effects = pd.read_csv(folder / "effects" / "effects.csv")
    assert len(effects) == n_perturbations
    assert {"energy_distance", "energy_pvalue", "n_de_genes", "cluster"} <= set(effects.columns)
    clusters = pd.read_csv(folder / "effects" / "perturbation_clusters.csv")
    assert sorted(clusters["leaf_order"]) == list(range(n_perturbations))
    calibration = json.loads((folder / "calibration" / "summary.json").read_text())
    assert calibration["n_groups"] == 3 and isinstance(calibration["passed"], bool)  # conf/test.config
    assert len(pd.read_csv(folder / "calibration" / "calibration.csv")) == 3
    generated = ad.read_h5ad(folder / "generated" / f"{screen}.generated.h5ad")
    assert {"counterfactual", "background_free", "effect"} <= set(generated.layers)
    assert generated.n_obs == 500  # --generate_max_cells of the test profile


@pytest.mark.parametrize("screen", SCREENS)
def test_report_is_self_contained_and_summary_links_it(first_run, screen):
    report = first_run.outdir / screen / "report" / f"{screen}.report.html"
    html = report.read_text()
    assert "data:image/png;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert list((first_run.outdir / screen / "report" / "figures").glob("*.svg"))
    headline = json.loads((first_run.outdir / screen / "report" / f"{screen}.report.json").read_text())
    assert headline["id"] == screen and headline["n_cells"] > 1000
    assert '<section id="calibration">' in html and 'id="calibration-verdict"' in html
    assert isinstance(headline["calibration_passed"], bool)
    summary = (first_run.outdir / "summary" / "index.html").read_text()
    assert f"../{screen}/report/{screen}.report.html" in summary


@pytest.mark.parametrize("screen", SCREENS)
def test_training_is_tracked_in_an_embedded_mlflow_store(first_run, screen):
    model = first_run.outdir / screen / "model"
    record = json.loads((model / "mlflow_run.json").read_text())
    assert record["run_id"]
    assert (model / "mlflow" / "mlflow.db").exists()


def test_software_versions_are_collated(first_run):
    versions = yaml.safe_load((first_run.outdir / "pipeline_info" / "software_versions.yml").read_text())
    for step in STEPS:
        assert versions[step]["pertcontrast"] == version("pertcontrast")
        assert versions[step]["torch"] == version("torch")
        assert versions[step]["pyro-ppl"] == version("pyro-ppl")
    assert versions["Workflow"]["Nextflow"]
    assert versions["Workflow"]["pertcontrast"] == version("pertcontrast")


def test_pipeline_info_has_report_timeline_and_trace(first_run):
    names = [path.name for path in (first_run.outdir / "pipeline_info").iterdir()]
    for prefix in ("execution_report_", "execution_timeline_", "execution_trace_"):
        assert any(name.startswith(prefix) for name in names), prefix
    report = next((first_run.outdir / "pipeline_info").glob("execution_report_*.html"))
    assert "PREPROCESS" in report.read_text()


PROGRESS = {
    # one line per epoch: epoch, steps, both losses, elapsed time and ETA
    "TRAIN": rf"^train: epoch {TEST_EPOCHS}/{TEST_EPOCHS}, step (\d+)/\1 \(100%\), train loss [-\d.e+]+, "
             r"validation loss [-\d.e+]+, elapsed \d+:\d\d:\d\d, ETA 0:00:00$",
    "EXPORT": r"^latents: block (\d+)/\1 \(100%\), elapsed \d+:\d\d:\d\d, ETA 0:00:00$",
    "PREPROCESS": r"^preprocess: QC, cell cycle and gene selection: \d+ cells x \d+ genes kept, elapsed \d+:\d\d:\d\d$",
}


@pytest.mark.parametrize("step", sorted(PROGRESS))
def test_task_logs_show_progress_a_person_can_follow(first_run, step):
    """Without a terminal the steps write plain progress lines, which Nextflow keeps in
    each task's .command.log (the pipeline no longer passes --no-progress)."""
    import re

    folders = first_run.work_dirs(step)
    assert len(folders) == len(SCREENS)
    for folder in folders:
        log = (folder / ".command.log").read_text()
        assert re.search(PROGRESS[step], log, flags=re.MULTILINE), f"{step}: {folder}/.command.log\n{log[-2000:]}"
        assert "\r" not in log  # no progress bar redrawn in place
    if step == "TRAIN":
        epochs = re.findall(r"^train: epoch (\d+)/", log, flags=re.MULTILINE)
        assert epochs == [str(epoch) for epoch in range(1, TEST_EPOCHS + 1)]


def test_resume_runs_no_task(resumed_run):
    statuses = resumed_run.statuses()
    assert sorted(statuses) == sorted(STEPS)
    assert all(set(status) == {"CACHED"} for status in statuses.values()), statuses
    assert resumed_run.output.count("Cached process >") == len(PER_SCREEN) * len(SCREENS) + 1
    assert "Submitted process" not in resumed_run.output


def test_training_parameter_change_reruns_only_train_and_what_follows(retrained_run):
    statuses = retrained_run.statuses()
    assert statuses["SIMULATE"] == ["CACHED"] * len(SCREENS)
    assert statuses["PREPROCESS"] == ["CACHED"] * len(SCREENS)
    for step in AFTER_TRAIN:
        assert set(statuses[step]) == {"COMPLETED"}, step
    for screen in SCREENS:
        history = pd.read_csv(retrained_run.outdir / screen / "model" / "history.csv")
        assert len(history) == TEST_EPOCHS + 1
