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

    @property
    def outdir(self) -> Path:
        return self.launch_dir / "results"

    def trace(self) -> list[dict]:
        """Rows of this run's trace file (the newest one: file names carry the start time)."""
        traces = sorted((self.outdir / "pipeline_info").glob("execution_trace_*.txt"))
        assert traces, f"no trace file under {self.outdir / 'pipeline_info'}\n{self.output[-3000:]}"
        with traces[-1].open() as handle:
            return list(csv.DictReader(handle, delimiter="\t"))

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

    def run(args: list[str], launch_dir: Path, timeout: int = 1200) -> NextflowRun:
        launch_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        completed = subprocess.run(
            [nextflow, *args], cwd=launch_dir, env=pipeline_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )
        seconds = time.monotonic() - start
        return NextflowRun(args, launch_dir, completed.returncode, completed.stdout + completed.stderr, seconds)

    return run


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
