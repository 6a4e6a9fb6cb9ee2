"""The pipeline on a user samplesheet: per-screen overrides, -resume after editing the sheet,
and bad sheets that must stop the run before any work, naming the row and the column."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

HEADER = "id,h5ad,perturbation_key,control_label,batch_key,max_epochs"
# Real-data resources on a 2-core runner: one core per task, a few GB.
LOCAL_CONFIG = "process.resourceLimits = [cpus: 1, memory: 6.GB, time: 1.h]\n"


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    """Two tiny simulated screens in data/, made with the CLI as a user would have them."""
    folder = tmp_path_factory.mktemp("screens")
    pertcontrast = Path(sys.executable).parent / "pertcontrast"
    for name, seed in (("a", 3), ("b", 4)):
        subprocess.run(
            [str(pertcontrast), "simulate", "--preset", "tiny", "--seed", str(seed), "--output", f"data/{name}.h5ad"],
            cwd=folder, check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )
    return folder


def launch_folder(tmp_path: Path, screens: Path, sheet: str) -> Path:
    shutil.copytree(screens / "data", tmp_path / "data")
    (tmp_path / "samplesheet.csv").write_text(sheet)
    (tmp_path / "local.config").write_text(LOCAL_CONFIG)
    return tmp_path


def pipeline_args(repo: Path, *extra: str) -> list[str]:
    return ["run", str(repo), "-c", "local.config", "--input", "samplesheet.csv", "--outdir", "results", *extra]


@pytest.fixture(scope="module")
def sheet_runs(screens, run_nextflow, repo, tmp_path_factory):
    """Run on a sheet, then edit one screen's training override and -resume."""
    folder = launch_folder(
        tmp_path_factory.mktemp("sheet_run"), screens,
        f"{HEADER}\nscreen_a,data/a.h5ad,perturbation,control,batch,1\nscreen_b,data/b.h5ad,perturbation,control,,\n",
    )
    first = run_nextflow(pipeline_args(repo, "--max_epochs", "2"), folder)
    assert first.returncode == 0, first.output[-5000:]
    first_statuses = first.statuses()
    history = {screen: len(pd.read_csv(folder / "results" / screen / "model" / "history.csv")) for screen in ("screen_a", "screen_b")}

    sheet = folder / "samplesheet.csv"
    sheet.write_text(sheet.read_text().replace("screen_b,data/b.h5ad,perturbation,control,,", "screen_b,data/b.h5ad,perturbation,control,,3"))
    edited = run_nextflow(pipeline_args(repo, "--max_epochs", "2", "-resume"), folder)
    assert edited.returncode == 0, edited.output[-5000:]
    return first, first_statuses, history, edited


def test_sheet_screens_run_with_per_screen_overrides(sheet_runs):
    first, statuses, history, _ = sheet_runs
    assert statuses["SAMPLESHEET_CHECK"] == ["COMPLETED"]
    for step in ("PREPROCESS", "TRAIN", "EXPORT"):
        assert statuses[step] == ["COMPLETED", "COMPLETED"], step
    # screen_a's max_epochs column wins over --max_epochs; screen_b has none.
    assert history == {"screen_a": 1, "screen_b": 2}
    for screen in ("screen_a", "screen_b"):
        assert (first.outdir / screen / "latents" / f"{screen}.latents.h5ad").exists()


def test_checked_sheet_is_published_with_absolute_paths(sheet_runs):
    first, *_ = sheet_runs
    checked = pd.read_csv(first.outdir / "pipeline_info" / "samplesheet.valid.csv")
    assert checked["id"].tolist() == ["screen_a", "screen_b"]
    assert checked["h5ad"].tolist() == [str(first.launch_dir / "data" / f"{n}.h5ad") for n in ("a", "b")]


def test_editing_a_training_override_reruns_only_that_screens_training(sheet_runs):
    *_, edited = sheet_runs
    tasks = {(row["process"].split(":")[-1], row["tag"]): row["status"] for row in edited.trace()}
    assert tasks[("PREPROCESS", "screen_a")] == tasks[("PREPROCESS", "screen_b")] == "CACHED"
    assert tasks[("TRAIN", "screen_a")] == tasks[("EXPORT", "screen_a")] == "CACHED"
    assert tasks[("TRAIN", "screen_b")] == tasks[("EXPORT", "screen_b")] == "COMPLETED"
    assert len(pd.read_csv(edited.outdir / "screen_b" / "model" / "history.csv")) == 3


BAD_SHEETS = {
    "missing_file": (
        f"{HEADER}\nscreen_a,data/a.h5ad,perturbation,control,,\nscreen_b,data/nope.h5ad,perturbation,control,,\n",
        ["row 3, column 'h5ad'", "file not found", "data/nope.h5ad"],
    ),
    "duplicate_id": (
        f"{HEADER}\nscreen_a,data/a.h5ad,perturbation,control,,\nscreen_a,data/b.h5ad,perturbation,control,,\n",
        ["row 3, column 'id'", "duplicate value 'screen_a'", "also in row 2"],
    ),
    "unknown_column": (
        "id,h5ad,perturbation_key,control_label,epochs\nscreen_a,data/a.h5ad,perturbation,control,3\n",
        ["row 1, column 'epochs'", "unknown column"],
    ),
    "empty_value": (
        f"{HEADER}\nscreen_a,data/a.h5ad,perturbation,control,,\nscreen_b,data/b.h5ad,perturbation,,,\n",
        ["row 3, column 'control_label'", "empty value"],
    ),
    "invalid_id": (
        f"{HEADER}\nscreen a,data/a.h5ad,perturbation,control,,\n",
        ["row 2, column 'id'", "'screen a'", "only letters, digits"],
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_SHEETS))
def test_bad_sheet_fails_before_any_work(kind, screens, run_nextflow, repo, tmp_path):
    sheet, expected = BAD_SHEETS[kind]
    folder = launch_folder(tmp_path, screens, sheet)
    run = run_nextflow(pipeline_args(repo), folder)
    assert run.returncode != 0
    for part in expected:
        assert part in run.output, f"{part!r} not in output:\n{run.output[-4000:]}"
    assert "samplesheet.csv " + expected[0] in run.output
    # Only the check ran: no PREPROCESS, TRAIN or EXPORT task was started.
    assert run.statuses() == {"SAMPLESHEET_CHECK": ["FAILED"]}
    assert not [path for path in run.outdir.iterdir() if path.name != "pipeline_info"]
