"""The set-up scripts, the README's two commands and the CI entry point."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pinned_nextflow_version() -> str:
    match = re.search(r"^NEXTFLOW_VERSION=(\S+)$", (REPO / "scripts" / "versions.env").read_text(), flags=re.MULTILINE)
    assert match
    return match.group(1)


def test_nextflow_runs_and_is_the_pinned_version_when_set_up_locally(nextflow, pipeline_env):
    result = subprocess.run([nextflow, "-version"], env=pipeline_env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    if Path(nextflow) == REPO / ".tools" / "nextflow" / "nextflow":
        assert f"version {pinned_nextflow_version()}" in result.stdout


def test_setup_nextflow_is_idempotent_and_prints_the_launcher(pipeline_env):
    result = subprocess.run(["bash", str(REPO / "scripts" / "setup-nextflow.sh")], env=pipeline_env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    launcher = Path(result.stdout.strip().splitlines()[-1])
    assert os.access(launcher, os.X_OK)
    if launcher.parent == REPO / ".tools" / "nextflow":
        text = launcher.read_text()
        assert "NXF_OFFLINE" in text and "NXF_HOME" in text and "--add-opens=java.base/$module=ALL-UNNAMED" in text
        assert (launcher.parent / "lib" / f"nextflow-{pinned_nextflow_version()}.jar").exists()


def test_the_nextflow_version_is_pinned_in_one_place():
    mentions = [
        path for path in (REPO / "scripts").iterdir()
        if path.is_file() and pinned_nextflow_version() in path.read_text()
    ]
    assert mentions == [REPO / "scripts" / "versions.env"]


def test_readme_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0].startswith("# ")
    body = [line for line in lines[1:] if line.strip()]
    assert body[:4] == ["```bash", "bash scripts/demo.sh", "bash scripts/test.sh", "```"]


def test_ci_runs_the_readme_test_command():
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    commands = [line for line in ci.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1] == "bash scripts/test.sh"


def test_test_script_fails_when_no_tests_run():
    text = (REPO / "scripts" / "test.sh").read_text()
    assert "rc -eq 5" in text and "python/tests" in text and "</dev/null" in text


def test_setup_python_is_a_no_op_when_up_to_date():
    result = subprocess.run(["bash", str(REPO / "scripts" / "setup-python.sh")], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, check=False, timeout=1800)
    assert result.returncode == 0, result.stderr
    again = subprocess.run(["bash", str(REPO / "scripts" / "setup-python.sh")], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, check=False, timeout=60)
    assert again.returncode == 0
    assert "is up to date" in again.stderr
