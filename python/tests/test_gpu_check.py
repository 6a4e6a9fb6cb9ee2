"""benchmarks/gpu_check.sh --dry-run: the GPU check's steps at tiny sizes on the CPU print
their numbers, and the ContrastiveVI comparison says honestly whether it ran."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
NUMBER = r"[\d,]+(?:\.\d+)?"


def test_the_gpu_check_dry_run_prints_every_number():
    env = dict(os.environ, PYTHON=sys.executable, PERTCONTRAST_GPU_CHECK_DRY_RUN="1")
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert "CPU (dry run: tiny sizes)" in out
    assert re.search(rf"^data: 2,000 cells x {NUMBER} genes \(", out, re.MULTILINE)
    for label, settings in (("fastest settings", "batch_size 512, resident on, precision bf16-mixed"),
                            ("defaults", "batch_size 256, resident auto, precision 32")):
        assert re.search(rf"^epoch, {label} \({settings}\): {NUMBER} s, {NUMBER} cells/s, peak GPU memory", out,
                         re.MULTILINE), out
    assert re.search(rf"^export: latents of 2,000 cells in {NUMBER} s, {NUMBER} cells/s", out, re.MULTILINE), out
    if importlib.util.find_spec("scvi") is None:
        assert "ContrastiveVI: not run: scvi-tools is not installed" in out and "ratio:" not in out
    else:
        assert re.search(rf"^ContrastiveVI \(scvi-tools .*\): {NUMBER} s per epoch, {NUMBER} cells/s$", out, re.MULTILINE)
        assert re.search(rf"^ratio: pertcontrast fastest / ContrastiveVI = {NUMBER}x cells/s$", out, re.MULTILINE)
    assert re.search(r"^gpu_check: done in \d+ s$", out, re.MULTILINE)
