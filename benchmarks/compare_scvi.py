"""pertcontrast vs scvi-tools' ContrastiveVI, side by side on the same simulated screen.

Both train with the same architecture (hidden units, layers, background and salient
latent sizes), the same number of cells per optimizer step and the same number of epochs,
early stopping off, one after the other, each in its own child process so that peak
memory is measured per framework. Prints, for both: cells/second, seconds per epoch,
peak RSS (and peak GPU memory on CUDA), and the same quality metrics (perturbation
program from the salient latent, phase/clone leakage into it); then the ratios.

scvi-tools is a benchmark-only dependency: pip install -e './python[benchmark]'.

    python benchmarks/compare_scvi.py --preset standard --epochs 20 --repeats 3
    python benchmarks/compare_scvi.py --n-cells 200000 --epochs 2 --device cuda

Cells per step: ContrastiveVI draws ``batch_size`` background AND ``batch_size`` target
cells per step, so pertcontrast runs with twice that batch size (same cells per step).
Throughput is compared in cells processed per second, which is independent of how each
framework defines an epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _quality(adata, salient, background) -> dict:
    from pertcontrast.analysis.predictability import knn_predictability

    responders = adata.obs["truth_responder"].to_numpy()
    out = {}
    for name, column in (("program", "truth_program"), ("phase", "truth_phase"), ("clone", "truth_clone")):
        labels = adata.obs[column].to_numpy()[responders]
        out[f"{name}_from_salient"] = round(knn_predictability(salient[responders], labels), 3)
    out["phase_from_background"] = round(
        knn_predictability(background[responders], adata.obs["truth_phase"].to_numpy()[responders]), 3
    )
    return out


def _gpu_peak() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 3)}
    return {}


def run_pertcontrast(args) -> dict:
    import anndata as ad

    from pertcontrast import ContrastiveModel

    adata = ad.read_h5ad(args.data)
    model = ContrastiveModel.from_anndata(
        adata, n_hidden=args.n_hidden, n_layers=args.n_layers, n_background=args.n_background,
        n_salient=args.n_salient, dropout=args.dropout,
    )
    cells_per_step = 2 * args.batch_size
    started = time.perf_counter()
    result = model.train(max_epochs=args.epochs, batch_size=cells_per_step, early_stopping=False,
                         validation_fraction=0.0, device=args.device, progress=False)
    seconds = time.perf_counter() - started
    epoch_seconds = result.history["seconds"].to_numpy()
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    steps = model.training["steps_per_epoch"]
    latents = model.latents(adata, device=args.device)
    return {
        "framework": "pertcontrast",
        "train_seconds": round(seconds, 2),
        "seconds_per_epoch": round(float(steady.mean()), 3),
        "steps_per_epoch": steps,
        "cells_per_epoch": steps * cells_per_step,
        "cells_per_second": round(steps * cells_per_step / float(steady.mean()), 1),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
        **_gpu_peak(),
        **_quality(adata, latents["salient"], latents["background"]),
    }


class _EpochTimer:
    """A Lightning callback recording wall time per training epoch."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class Timer(Callback):
            def __init__(self):
                self.seconds: list[float] = []
                self._start = 0.0

            def on_train_epoch_start(self, trainer, module):
                self._start = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                self.seconds.append(time.perf_counter() - self._start)

        return Timer()


def run_scvi(args) -> dict:
    import anndata as ad
    import numpy as np
    import scvi

    scvi.settings.seed = 0
    adata = ad.read_h5ad(args.data)
    scvi.external.ContrastiveVI.setup_anndata(adata, batch_key="batch")
    model = scvi.external.ContrastiveVI(
        adata, n_hidden=args.n_hidden, n_layers=args.n_layers, n_background_latent=args.n_background,
        n_salient_latent=args.n_salient, dropout_rate=args.dropout, use_observed_lib_size=True,
    )
    is_control = adata.obs["perturbation"].astype(str).to_numpy() == "control"
    background = np.flatnonzero(is_control).tolist()
    target = np.flatnonzero(~is_control).tolist()
    timer = _EpochTimer()
    accelerator = "gpu" if args.device == "cuda" else ("cpu" if args.device == "cpu" else "auto")
    started = time.perf_counter()
    model.train(background_indices=background, target_indices=target, max_epochs=args.epochs,
                batch_size=args.batch_size, early_stopping=False, train_size=1.0, accelerator=accelerator,
                callbacks=[timer], enable_progress_bar=False, logger=False, enable_checkpointing=False)
    seconds = time.perf_counter() - started
    epoch_seconds = np.array(timer.seconds)
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    # ContrastiveVI's loader cycles the smaller group: an epoch is len(larger group) / batch
    # steps, each with batch_size background + batch_size target cells.
    steps = int(np.ceil(max(len(background), len(target)) / args.batch_size))
    salient = model.get_latent_representation(adata, representation_kind="salient")
    background_latent = model.get_latent_representation(adata, representation_kind="background")
    return {
        "framework": "scvi-tools ContrastiveVI",
        "train_seconds": round(seconds, 2),
        "seconds_per_epoch": round(float(steady.mean()), 3),
        "steps_per_epoch": steps,
        "cells_per_epoch": steps * 2 * args.batch_size,
        "cells_per_second": round(steps * 2 * args.batch_size / float(steady.mean()), 1),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
        **_gpu_peak(),
        **_quality(adata, salient, background_latent),
    }


def _child(args) -> int:
    result = run_pertcontrast(args) if args.child == "pertcontrast" else run_scvi(args)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _prepare(args, folder: Path) -> Path:
    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast.io import write_h5ad_atomic

    raw = simulate(args.preset, seed=args.seed, n_cells=args.n_cells)
    prepared, _ = preprocess(raw, PreprocessSettings("perturbation", "control", batch_key="batch",
                                                     n_top_genes=args.n_top_genes))
    path = folder / "prepared.h5ad"
    write_h5ad_atomic(prepared, path)
    return path


def _print_table(results: list[dict]) -> None:
    keys = [k for k in results[0] if k != "framework"]
    width = max(len(k) for k in keys)
    print(f"{'':>{width}}  " + "  ".join(f"{r['framework']:>26}" for r in results))
    for key in keys:
        print(f"{key:>{width}}  " + "  ".join(f"{str(r.get(key, '')):>26}" for r in results))
    ours, theirs = results
    print()
    print(f"throughput ratio (pertcontrast / ContrastiveVI, cells per second): "
          f"{ours['cells_per_second'] / theirs['cells_per_second']:.2f}x")
    print(f"peak RSS ratio (pertcontrast / ContrastiveVI): {ours['peak_rss_gb'] / theirs['peak_rss_gb']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--n-cells", type=int, default=None)
    parser.add_argument("--n-top-genes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128, help="ContrastiveVI batch size (per group)")
    parser.add_argument("--n-hidden", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=1)
    parser.add_argument("--n-background", type=int, default=16, help="background latent size, both frameworks")
    parser.add_argument("--n-salient", type=int, default=10, help="salient latent size, both frameworks")
    parser.add_argument("--dropout", type=float, default=0.0, help="encoder dropout, both frameworks")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["pertcontrast", "scvi"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1,
                        help="run both frameworks this many times, alternating which goes first, and "
                             "report the median throughput ratio (shared machines are noisy)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or str(_prepare(args, Path(tmp)))
        repeats = []
        for repeat in range(args.repeats):
            # ABBA order: a machine that slows down (or speeds up) over the run does not
            # favour the framework that always goes first
            order = ("pertcontrast", "scvi") if repeat % 2 == 0 else ("scvi", "pertcontrast")
            results = {framework: _run_child(framework, data, argv) for framework in order}
            repeats.append([results["pertcontrast"], results["scvi"]])
    settings = {k: getattr(args, k) for k in ("preset", "n_cells", "epochs", "batch_size", "n_hidden",
                                              "n_layers", "n_background", "n_salient", "dropout", "device")}
    ratios = [ours["cells_per_second"] / theirs["cells_per_second"] for ours, theirs in repeats]
    middle = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    print(json.dumps({"settings": settings, "repeats": args.repeats}))
    if len(repeats) > 1:
        print(f"repeat {middle + 1} of {len(repeats)} (the middle throughput ratio):")
    _print_table(repeats[middle])
    if len(repeats) > 1:
        print("throughput ratio per repeat: " + ", ".join(f"{r:.2f}x" for r in ratios)
              + f"; median {float(np.median(ratios)):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"settings": settings, "results": repeats[middle], "repeats": repeats, "ratios": ratios}, indent=2))
    return 0


def _run_child(framework: str, data: str, argv) -> dict:
    """One framework's training in its own process (peak RSS is per process)."""
    command = [sys.executable, __file__, "--child", framework, "--data", data] + [
        a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--data")
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    line = next(l for l in output.splitlines() if l.startswith("RESULT "))
    print(f"finished {framework}", file=sys.stderr, flush=True)
    return json.loads(line[len("RESULT "):])


if __name__ == "__main__":
    sys.exit(main())
