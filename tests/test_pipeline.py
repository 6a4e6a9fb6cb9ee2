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
PER_RUN = ("SUMMARY", "MLFLOW_STORE")
AFTER_TRAIN = ("TRAIN", "EXPORT", "RESPONDERS", "DE", "EFFECTS", "CALIBRATION", "GENERATE", "REPORT") + PER_RUN
STEPS = PER_SCREEN + PER_RUN
TEST_MAX_EPOCHS = 150  # conf/test.config: early stopping ends training before
RETRAIN_EPOCHS = 3  # the -resume run with another --max_epochs

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
    args = ["run", str(repo), "-profile", "test", "--outdir", "results", "-resume", "--max_epochs", str(RETRAIN_EPOCHS)]
    run = run_nextflow(args, launch_dir)
    assert run.returncode == 0, run.output[-5000:]
    return run


def test_every_step_ran_once_per_screen(first_run):
    statuses = first_run.statuses()
    assert sorted(statuses) == sorted(STEPS)
    for step in PER_SCREEN:
        assert statuses[step] == ["COMPLETED"] * len(SCREENS), step
    for step in PER_RUN:
        assert statuses[step] == ["COMPLETED"], step


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
    training = json.loads((model / "config.json").read_text())["training"]
    assert training["stopped_early"] and 20 < training["epochs_run"] < TEST_MAX_EPOCHS
    assert len(pd.read_csv(model / "history.csv")) == training["epochs_run"]


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
def test_the_report_shows_the_method_working(first_run, screen):
    """The embedded default is what a newcomer sees first: the effects of the simulated
    screen found and nothing else, phase and batch out of the salient latent, UMAP views,
    no training warning."""
    headline = json.loads((first_run.outdir / screen / "report" / f"{screen}.report.json").read_text())
    assert headline["n_simulated_effects"] == 6  # the tiny preset: 3 programs x 2 perturbations
    assert headline["n_simulated_effects_found"] == headline["n_perturbations_with_effect"] == 6
    assert headline["n_effects_called_without_one"] == 0
    assert headline["n_perturbations_with_de"] == 6 and headline["responder_fraction"] > 0.4
    assert headline["phase_predictability_salient"] < headline["phase_predictability_background"] / 2
    assert headline["batch_predictability_salient"] < 0.05
    assert headline["training_warnings"] == []
    html = (first_run.outdir / screen / "report" / f"{screen}.report.html").read_text()
    assert "by UMAP computed on the shown cells" in html and 'id="training-warning"' not in html


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


def test_every_screen_is_a_run_of_one_relocatable_mlflow_store(first_run, tmp_path):
    """Without a tracking server the run's training runs land in one store, results/mlflow,
    that holds its artifacts: a copy elsewhere has everything (nothing points into work/)."""
    import shutil

    from mlflow import MlflowClient

    copy = tmp_path / "moved"
    shutil.copytree(first_run.outdir / "mlflow", copy)
    assert str(first_run.launch_dir / "work").encode() not in (copy / "mlflow.db").read_bytes()
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pertcontrast").experiment_id])
    by_screen = {run.data.tags["pertcontrast.screen_id"]: run for run in runs}
    assert sorted(by_screen) == list(SCREENS)
    for screen, run in by_screen.items():
        model = first_run.outdir / screen / "model"
        assert not (model / "mlflow").exists()  # no store per screen
        assert json.loads((model / "mlflow_run.json").read_text())["run_id"] is None  # recorded, then stored
        epochs = json.loads((model / "config.json").read_text())["training"]["epochs_run"]
        assert run.info.status == "FINISHED" and run.data.metrics["summary.epochs_run"] == epochs
        dataset = run.inputs.dataset_inputs[0].dataset
        prepared = first_run.outdir / screen / "prepared" / f"{screen}.prepared.h5ad"
        assert dataset.name == screen and json.loads(dataset.source)["uri"] == prepared.as_uri()
        artifacts = copy / "artifacts" / run.info.artifact_uri.split(":/", 1)[1]
        config = json.loads((artifacts / "model_folder" / "config.json").read_text())
        assert config == json.loads((model / "config.json").read_text())
        assert (artifacts / "report" / f"{screen}.report.html").exists()
    assert "open the run's summary: results/summary/index.html" in first_run.output
    assert f"mlflow ui --backend-store-uri sqlite:///{first_run.outdir / 'mlflow' / 'mlflow.db'}" in first_run.output


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
    "TRAIN": rf"^train: epoch \d+/{TEST_MAX_EPOCHS}, step \d+/\d+ \(\d+%\), train loss [-\d.e+]+, "
             r"validation loss [-\d.e+]+, elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$",
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
    if step == "TRAIN":  # one line per epoch, up to where early stopping ended training
        epochs = re.findall(r"^train: epoch (\d+)/", log, flags=re.MULTILINE)
        run = re.search(r"^trained (\d+) epochs in", log, flags=re.MULTILINE)
        assert run and epochs == [str(epoch) for epoch in range(1, int(run[1]) + 1)]


def test_resume_runs_no_task(resumed_run):
    statuses = resumed_run.statuses()
    assert sorted(statuses) == sorted(STEPS)
    assert all(set(status) == {"CACHED"} for status in statuses.values()), statuses
    assert resumed_run.output.count("Cached process >") == len(PER_SCREEN) * len(SCREENS) + len(PER_RUN)
    assert "Submitted process" not in resumed_run.output


def test_training_parameter_change_reruns_only_train_and_what_follows(retrained_run):
    statuses = retrained_run.statuses()
    assert statuses["SIMULATE"] == ["CACHED"] * len(SCREENS)
    assert statuses["PREPROCESS"] == ["CACHED"] * len(SCREENS)
    for step in AFTER_TRAIN:
        assert set(statuses[step]) == {"COMPLETED"}, step
    for screen in SCREENS:
        history = pd.read_csv(retrained_run.outdir / screen / "model" / "history.csv")
        assert len(history) == RETRAIN_EPOCHS
