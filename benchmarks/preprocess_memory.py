"""Peak memory and wall time of `pertcontrast preprocess` on a large simulated screen.

A benchmark, not a test: it prints numbers. The screen is simulated once with
`pertcontrast simulate --preset large --n-cells N` (1M cells is ~8 GB on disk and takes
~10 minutes) into --workdir and reused; preprocessing runs in a child process whose own
peak RSS is read with wait4, so simulating in the same run does not count.

    python benchmarks/preprocess_memory.py --n-cells 100000 --workdir /tmp/pertcontrast-bench
    python benchmarks/preprocess_memory.py --n-cells 1000000 --workdir /tmp/pertcontrast-bench
    python benchmarks/preprocess_memory.py --input screen.h5ad --mode in-memory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cli() -> list[str]:
    found = shutil.which("pertcontrast") or str(Path(sys.executable).with_name("pertcontrast"))
    return [found]


def simulated_screen(workdir: Path, n_cells: int) -> Path:
    path = workdir / f"large_{n_cells}.h5ad"
    if not path.exists():
        print(f"simulating {n_cells} cells into {path} (once; reused by later runs)", file=sys.stderr)
        subprocess.run([*cli(), "simulate", "--preset", "large", "--n-cells", str(n_cells), "-o", str(path)],
                       check=True)
    return path


def counts_shape(path: Path) -> tuple[int, int, int]:
    import h5py

    with h5py.File(path, "r") as f:
        X = f["X"]
        shape = tuple(int(n) for n in X.attrs["shape"]) if "shape" in X.attrs else X.shape
        nnz = X["data"].shape[0] if "data" in X else X.size
    return shape[0], shape[1], int(nnz)


def run_child(command: list[str]) -> tuple[int, float, float, str]:
    """Exit status, wall seconds and peak RSS (GB) of one child process (not its siblings)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024**2, output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-cells", type=int, default=100_000, help="cells of the simulated screen")
    parser.add_argument("--input", help="an existing raw .h5ad instead of a simulated screen")
    parser.add_argument("--workdir", default="/tmp/pertcontrast-bench", help="where screens and outputs go")
    parser.add_argument("--mode", choices=["chunked", "in-memory"], default="chunked")
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--keep-output", action="store_true", help="keep the prepared file")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    screen = Path(args.input) if args.input else simulated_screen(workdir, args.n_cells)
    n_cells, n_genes, nnz = counts_shape(screen)
    output = workdir / f"{screen.stem}.prepared.{args.mode}.h5ad"
    command = [*cli(), "preprocess", str(screen), "--perturbation-key", "perturbation", "--control-label",
               "control", "--batch-key", "batch", f"--{args.mode}", "--chunk-size", str(args.chunk_size),
               "--output", str(output)]
    code, seconds, peak_gb, log = run_child(command)
    if code != 0:
        print(log, file=sys.stderr)
        return code
    result = {
        "input": str(screen), "cells": n_cells, "genes": n_genes, "nnz": nnz,
        "input_gb": round(screen.stat().st_size / 1e9, 2), "mode": args.mode, "chunk_size": args.chunk_size,
        "wall_seconds": round(seconds, 1), "peak_rss_gb": round(peak_gb, 3),
        "output_gb": round(output.stat().st_size / 1e9, 2),
        "summary": [line for line in log.splitlines() if line.startswith(("cells:", "genes:"))],
    }
    if not args.keep_output:
        output.unlink()
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(command))
        for key, value in result.items():
            print(f"{key:>12}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
