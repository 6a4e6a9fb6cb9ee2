"""Bytes each step writes for one screen: the prepared file (the counts) and the step
outputs (what each step adds). A benchmark, not a test: it prints numbers.

Either runs the steps on a simulated screen (simulated once into --workdir and reused),
with light analysis settings (bytes, not quality: 1 epoch, 3 DE samples; generate keeps
the pipeline's default of 20,000 cells):

    python benchmarks/step_outputs_disk.py --n-cells 100000 --workdir /tmp/pertcontrast-disk

or sums the .h5ad files of a finished Nextflow launch folder (task outputs under work/,
staged inputs, which are links, skipped; and the published results/):

    python benchmarks/step_outputs_disk.py --launch-dir /tmp/test-profile-run
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

KINDS = ("prepared", "latents", "responders", "generated")


def cli() -> list[str]:
    return [shutil.which("pertcontrast") or str(Path(sys.executable).with_name("pertcontrast"))]


def run(*args) -> None:
    subprocess.run([*cli(), *map(str, args)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def steps(workdir: Path, n_cells: int, preset: str, generate_max_cells: int) -> dict[str, int]:
    screen = workdir / f"{preset}_{n_cells}.h5ad"
    if not screen.exists():
        print(f"simulating {n_cells} cells into {screen} (once; reused by later runs)", file=sys.stderr)
        run("simulate", "--preset", preset, "--n-cells", n_cells, "--seed", 0, "--output", screen)
    out = workdir / "steps"
    out.mkdir(exist_ok=True)
    prepared, latents, responders = (out / f"s.{kind}.h5ad" for kind in KINDS[:3])
    model = out / "model"
    run("preprocess", screen, "--perturbation-key", "perturbation", "--control-label", "control",
        "--batch-key", "batch", "--output", prepared)
    run("train", prepared, "--output", model, "--max-epochs", 1, "--no-mlflow", "--no-progress")
    run("export", prepared, "--model", model, "--device", "cpu", "--no-progress", "--output", latents)
    run("responders", prepared, "--latents", latents, "--output", responders)
    run("de", prepared, "--model", model, "--responders", responders, "--device", "cpu", "--samples", 3,
        "--no-progress", "--output", out / "de")
    run("effects", prepared, "--latents", latents, "--responders", responders, "--de", out / "de",
        "--permutations", 20, "--output", out / "effects")
    run("generate", prepared, "--model", model, "--device", "cpu", "--max-cells", generate_max_cells,
        "--no-progress", "--output", out / "s.generated.h5ad")
    return {kind: (out / f"s.{kind}.h5ad").stat().st_size for kind in KINDS}


def launch_folder(root: Path) -> dict[str, dict[str, int]]:
    result = {}
    for part in ("work", "results"):
        totals = collections.Counter()
        for path in (root / part).rglob("*.h5ad"):
            if path.is_symlink():
                continue
            kind = next((k for k in KINDS if f".{k}." in path.name), "input")
            totals[kind] += path.stat().st_size
        result[part] = dict(sorted(totals.items()))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-cells", type=int, default=100_000)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--generate-max-cells", type=int, default=20_000)
    parser.add_argument("--workdir", default="/tmp/pertcontrast-disk")
    parser.add_argument("--launch-dir", help="sum the .h5ad files of this Nextflow launch folder instead")
    args = parser.parse_args(argv)
    if args.launch_dir:
        result = launch_folder(Path(args.launch_dir))
        result["work_total_without_inputs"] = sum(v for k, v in result["work"].items() if k != "input")
    else:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        result = steps(workdir, args.n_cells, args.preset, args.generate_max_cells)
        result["total"] = sum(result.values())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
