"""Training throughput of pertcontrast: cells/second, seconds per epoch, peak memory.

A benchmark, not a test: it prints numbers. Run it on an idle machine and compare
ratios measured side by side.

    python benchmarks/train_throughput.py --preset standard --epochs 5 --batch-size 256
    python benchmarks/train_throughput.py --input prepared.h5ad --epochs 3 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def peak_rss_gb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="prepared .h5ad (default: simulate --preset and preprocess it)")
    parser.add_argument("--preset", default="standard", choices=["tiny", "standard", "large"])
    parser.add_argument("--n-cells", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-hidden", type=int, default=128)
    parser.add_argument("--n-latent", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backed", action="store_true", help="read counts from disk (out-of-core)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(argv)

    import anndata as ad
    import torch

    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast import ContrastiveModel

    if args.input:
        adata = ad.read_h5ad(args.input, backed="r" if args.backed else None)
    else:
        raw = simulate(args.preset, seed=0, n_cells=args.n_cells)
        adata, _ = preprocess(raw, PreprocessSettings("perturbation", "control", batch_key="batch"))
    rss_before = peak_rss_gb()
    model = ContrastiveModel.from_anndata(adata, n_hidden=args.n_hidden, n_background=args.n_latent, n_salient=args.n_latent)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = model.train(max_epochs=args.epochs, batch_size=args.batch_size, early_stopping=False,
                         validation_fraction=0.0, device=args.device, progress=False)
    seconds = time.perf_counter() - started
    epoch_seconds = result.history["seconds"].to_numpy()
    n_train = model.training["n_train"]
    steps = model.training["steps_per_epoch"]
    cells_per_epoch = steps * args.batch_size
    # the first epoch carries warm-up costs (allocations, kernel selection): report the rest
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    numbers = {
        "cells": int(adata.n_obs),
        "genes": int(adata.n_vars),
        "train_cells": int(n_train),
        "device": model.training["device"],
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seconds_total": round(seconds, 2),
        "seconds_per_epoch": round(float(steady.mean()), 3),
        "cells_per_second": round(cells_per_epoch / float(steady.mean()), 1),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "peak_rss_before_training_gb": round(rss_before, 3),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        numbers["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    if args.json:
        print(json.dumps(numbers))
    else:
        for key, value in numbers.items():
            print(f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
