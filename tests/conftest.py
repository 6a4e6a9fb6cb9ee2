"""Fixtures that run the real pipeline: locate Nextflow, run it in a scratch launch folder,
read its trace files."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_NEXTFLOW = REPO / ".tools" / "nextflow" / "nextflow"


@dataclass
class NextflowRun:
    args: list[str]
    launch_dir: Path
    returncode: int
    output: str
    seconds: float
    snapshot: Path | None = None  # a copy of results/ taken right after the run

    @property
    def outdir(self) -> Path:
        return self.launch_dir / "results"

    def trace(self) -> list[dict]:
        """Rows of this run's trace file (the newest one: file names carry the start time)."""
        traces = sorted((self.outdir / "pipeline_info").glob("execution_trace_*.txt"))
        assert traces, f"no trace file under {self.outdir / 'pipeline_info'}\n{self.output[-3000:]}"
        with traces[-1].open() as handle:
            return list(csv.DictReader(handle, delimiter="\t"))

    def work_dirs(self, process: str) -> list[Path]:
        """Work folders of the tasks of PROCESS (short name) in this run's trace."""
        folders = []
        for row in self.trace():
            if row["process"].split(":")[-1] == process:
                folders += sorted((self.launch_dir / "work").glob(f"{row['hash']}*"))
        return folders

    def statuses(self) -> dict[str, list[str]]:
        """Short process name -> statuses of its tasks in this run."""
        result: dict[str, list[str]] = {}
        for row in self.trace():
            result.setdefault(row["process"].split(":")[-1], []).append(row["status"])
        return result


def _find_nextflow() -> str:
    for candidate in (os.environ.get("PERTCONTRAST_NEXTFLOW"), shutil.which("nextflow")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if LOCAL_NEXTFLOW.exists():
        return str(LOCAL_NEXTFLOW)
    setup = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-nextflow.sh")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    assert setup.returncode == 0, f"scripts/setup-nextflow.sh failed:\n{setup.stderr}"
    return setup.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def nextflow() -> str:
    return _find_nextflow()


@pytest.fixture(scope="session")
def pipeline_env() -> dict[str, str]:
    """Tasks run the pertcontrast of this interpreter's environment (no container profile)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NXF_ANSI_LOG"] = "false"
    env.pop("NXF_WORK", None)
    return env


@pytest.fixture(scope="session")
def run_nextflow(nextflow, pipeline_env):
    """Run `nextflow ARGS` in LAUNCH_DIR; returns a NextflowRun (never raises on failure)."""

    def run(args: list[str], launch_dir: Path, timeout: int = 1200, env: dict | None = None) -> NextflowRun:
        launch_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        completed = subprocess.run(
            [nextflow, *args], cwd=launch_dir, env=env or pipeline_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )
        seconds = time.monotonic() - start
        return NextflowRun(args, launch_dir, completed.returncode, completed.stdout + completed.stderr, seconds)

    return run


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def test_profile_run(run_nextflow, repo, tmp_path_factory) -> NextflowRun:
    """`nextflow run . -profile test` without a container, once per session: test_pipeline.py
    checks and then resumes it, test_containers.py compares the image's run with it. Its
    results are copied to run.snapshot first, as the -resume runs rewrite results/."""
    launch_dir = tmp_path_factory.mktemp("test_profile")
    run = run_nextflow(["run", str(repo), "-profile", "test", "--outdir", "results"], launch_dir)
    print(f"nextflow run -profile test: {run.seconds:.0f} s wall")
    assert run.returncode == 0, run.output[-5000:]
    run.snapshot = launch_dir / "first_results"
    shutil.copytree(run.outdir, run.snapshot)
    return run


@pytest.fixture(scope="session")
def deps_only_env(pipeline_env, tmp_path_factory) -> dict[str, str]:
    """A pipeline environment whose python3 has the locked dependencies but not pertcontrast:
    a venv reading the dependencies' site-packages through a .pth line (which does not run
    that folder's own .pth files, so the editable install stays invisible), and no
    `pertcontrast` command anywhere on PATH. Tasks then depend on bin/pertcontrast."""
    import torch

    venv = tmp_path_factory.mktemp("deps_only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "locked_dependencies.pth").write_text(f"{Path(torch.__file__).resolve().parents[1]}\n")
    folders = [folder for folder in pipeline_env["PATH"].split(os.pathsep)
               if folder and not (Path(folder) / "pertcontrast").exists()]
    env = dict(pipeline_env, PATH=os.pathsep.join([str(venv / "bin"), *folders]))
    probe = subprocess.run(
        ["python3", "-c", "import importlib.util as u, torch, pyro, anndata, mlflow; print(u.find_spec('pertcontrast'))"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "None", probe.stdout + probe.stderr
    assert shutil.which("pertcontrast", path=env["PATH"]) is None
    return env
