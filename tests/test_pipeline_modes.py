"""The pipeline's other modes, for real: a registered model applied to screens without
training (--model models:/NAME@ALIAS against a real MLflow server), and --sweep training
several settings of a screen and keeping the best."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))
from tracking_fixtures import MlflowServer  # noqa: E402

pytestmark = pytest.mark.slow
# the test profile, lighter still: these runs check modes, not what training finds
LIGHT = ["-profile", "test", "--simulate_seeds", "0", "--max_epochs", "2", "--report_embedding", "pca", "--outdir", "results"]


def cli(*args, env=None):
    result = subprocess.run([sys.executable, "-m", "pertcontrast.cli", *map(str, args)], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_pipeline")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prepare_run(run_nextflow, repo, deps_only_env, tmp_path_factory):
    """Screen simulated_0 through the pipeline (analysis off) in an environment that has the
    locked dependencies but not the package: every task runs bin/pertcontrast."""
    launch = tmp_path_factory.mktemp("prepare")
    run = run_nextflow(["run", str(repo), *LIGHT, "--skip_analysis", "--skip_report", "--mlflow", "false"], launch,
                       env=deps_only_env)
    assert run.returncode == 0, run.output[-4000:]
    return run


@pytest.fixture(scope="module")
def registered(server, prepare_run):
    """Train and register a model on the prepared screen with the CLI and point the alias
    'champion' at it."""
    launch = prepare_run.launch_dir
    prepared = prepare_run.outdir / "simulated_0" / "prepared" / "simulated_0.prepared.h5ad"
    model = launch / "registered_model"
    cli("train", prepared, "--output", model, "--max-epochs", "2", "--n-hidden", "32", "--device", "cpu",
        "--no-progress", "--mlflow-uri", server.uri, "--register-model", "screen-model")
    cli("registry", "promote", "screen-model", "1", "--alias", "champion", "--mlflow-uri", server.uri)
    return prepared, model


@pytest.fixture(scope="module")
def lookup_run(registered, server, run_nextflow, repo, tmp_path_factory):
    launch = tmp_path_factory.mktemp("lookup")
    run = run_nextflow(["run", str(repo), *LIGHT, "--mlflow_uri", server.uri, "--model", "models:/screen-model@champion"],
                       launch)
    assert run.returncode == 0, run.output[-4000:]
    return run


def test_tasks_run_the_repository_source_where_the_package_is_not_installed(prepare_run, repo):
    """bin/pertcontrast (Nextflow puts bin/ on every task's PATH) ran python/src with the
    python3 that has only the dependencies: the commands log where their package came from
    (SIMULATE ran the same way: no other pertcontrast was on PATH)."""
    assert prepare_run.statuses()["SIMULATE"] == ["COMPLETED"]
    for step in ("PREPROCESS", "TRAIN", "EXPORT"):
        (folder,) = prepare_run.work_dirs(step)
        log = (folder / ".command.log").read_text()
        assert f"({repo / 'python' / 'src' / 'pertcontrast'}): {repo / 'bin' / 'pertcontrast'} " in log, log[-2000:]


def test_the_launcher_says_in_one_line_what_is_missing(repo, tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run([str(repo / "bin" / "pertcontrast"), "versions"], capture_output=True, text=True,
                            env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"pertcontrast: {venv / 'bin' / 'python3'} lacks click, numpy, torch")
    assert "pip install -r python/requirements.lock" in line


def test_a_registered_model_replaces_training(lookup_run):
    statuses = lookup_run.statuses()
    assert "TRAIN" not in statuses
    assert statuses["EXPORT"] == ["COMPLETED"]
    assert statuses["REPORT"] == ["COMPLETED"]


def test_lookup_latents_equal_a_direct_export_and_record_the_version(lookup_run, registered, tmp_path):
    prepared, model = registered
    # one thread, as the EXPORT task ran (the test profile's 1 cpu, OMP_NUM_THREADS): another
    # thread count splits torch's sums differently and changes the last bit of the latents
    cli("export", prepared, "--model", model, "--output", tmp_path / "direct.h5ad", "--device", "cpu",
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    direct = ad.read_h5ad(tmp_path / "direct.h5ad")
    looked_up = ad.read_h5ad(lookup_run.outdir / "simulated_0" / "latents" / "simulated_0.latents.h5ad")
    np.testing.assert_array_equal(looked_up.obsm["X_salient"], direct.obsm["X_salient"])
    np.testing.assert_array_equal(looked_up.obsm["X_background"], direct.obsm["X_background"])
    info = looked_up.uns["pertcontrast_export"]
    record = json.loads((model / "mlflow_run.json").read_text())
    assert info["model_name"] == "screen-model" and str(info["model_version"]) == "1"
    assert info["model_alias"] == "champion" and info["model_run_id"] == record["run_id"]
    assert info["lookup_run_id"]
    report = (lookup_run.outdir / "simulated_0" / "report" / "simulated_0.report.html").read_text()
    assert "screen-model" in report and record["run_id"] in report


def test_a_sweep_trains_every_setting_and_keeps_the_best(run_nextflow, repo, tmp_path):
    run = run_nextflow(["run", str(repo), *LIGHT, "--skip_analysis", "--skip_report", "--mlflow", "false",
                        "--sweep", "learning_rate=0.002,0.02;seed=3"], tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    statuses = run.statuses()
    assert statuses["TRAIN"] == ["COMPLETED", "COMPLETED"]
    assert statuses["EXPORT"] == ["COMPLETED"]
    sweep = run.outdir / "simulated_0" / "sweep"
    objectives = {}
    for setting in ("learning_rate-0.002_seed-3", "learning_rate-0.02_seed-3"):
        config = json.loads((sweep / setting / "model" / "config.json").read_text())
        assert config["training"]["settings"]["seed"] == 3
        objectives[setting] = config["training"]["best_validation_objective"]
    best = min(objectives, key=lambda name: objectives[name] if objectives[name] is not None else float("inf"))
    assert objectives[best] is not None
    exported = ad.read_h5ad(run.outdir / "simulated_0" / "latents" / "simulated_0.latents.h5ad").uns["pertcontrast_export"]
    used = json.loads((Path(exported["model_path"]) / "config.json").read_text())
    assert used == json.loads((sweep / best / "model" / "config.json").read_text())


def test_bad_sweep_and_conflicting_parameters_fail_before_any_task(run_nextflow, repo, tmp_path):
    run = run_nextflow(["run", str(repo), *LIGHT, "--sweep", "temperature=1,2"], tmp_path / "a")
    assert run.returncode != 0
    assert "'temperature' cannot be swept" in run.output
    run = run_nextflow(["run", str(repo), *LIGHT, "--model", "models:/x@y", "--register_model", "z",
                        "--mlflow_uri", "http://127.0.0.1:9"], tmp_path / "b")
    assert run.returncode != 0 and "--register_model and --sweep need training" in run.output
    run = run_nextflow(["run", str(repo), *LIGHT, "--mlflow_uri", "http://user:secret@127.0.0.1:9"], tmp_path / "c")
    assert run.returncode != 0 and "must not hold credentials" in run.output
    assert "Submitted process" not in run.output
