"""Where a training step's time goes: minibatch, forward, backward, optimizer.

A benchmark, not a test: it prints milliseconds per step (the median over several passes
of the same minibatches, so slow moments of a shared machine show as spread, not as a
shift). The same step is then timed on the first ``--overhead-genes`` genes only: with
every tensor tiny, what is left is the per-operation cost (Python, dispatch, autograd
bookkeeping) that the full step pays on top of its arithmetic.

    python benchmarks/step_breakdown.py --preset standard
    python benchmarks/step_breakdown.py --input prepared.h5ad --batch-size 512 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

PHASES = ("minibatch", "forward", "backward", "optimizer")


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(adata, batch_size: int, steps: int, passes: int, device_name: str) -> dict[str, float]:
    """Median milliseconds per step of each phase, training ``adata``'s model from scratch."""
    import numpy as np
    import pyro
    import torch

    from pertcontrast.data.loader import CellArrays, CountRows, StratifiedBatches, make_batch
    from pertcontrast import ContrastiveModel
    from pertcontrast.module.contrastive import TermWeights
    from pertcontrast.module.objective import NamedTermsELBO
    from pertcontrast.train.host_memory import reuse_freed_host_memory
    from pertcontrast.train.settings import TrainingSettings
    from pertcontrast.train.trainer import clip_gradients, resolve_device

    reuse_freed_host_memory()  # as the trainer does
    settings = TrainingSettings(batch_size=batch_size)  # the training defaults: lr, clipping, mix
    torch.manual_seed(0)
    device = resolve_device(device_name)
    model = ContrastiveModel.from_anndata(adata)
    module = model.module.to(device)
    cells = CellArrays.from_encoded(model.encoding.encode_obs(adata.obs))
    counts = CountRows(adata.X)
    rows = np.arange(adata.n_obs)
    sampler = StratifiedBatches(rows[cells.is_control], rows[~cells.is_control], batch_size,
                                settings.control_fraction, np.random.default_rng(0))
    plans = [sampler.next_batch() for _ in range(steps)]
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                 fused=True)
    weights, n_cells, elbo = TermWeights(), adata.n_obs, NamedTermsELBO()
    per_pass = {phase: [] for phase in PHASES}
    with pyro.validation_enabled(False):
        for index in range(passes + 1):  # the first pass warms up allocator and kernels
            totals = dict.fromkeys(PHASES, 0.0)
            for batch_rows, stratum_weight in plans:
                ticks = [time.perf_counter()]
                batch = make_batch(counts, cells, batch_rows, stratum_weight, batch_rows, device)
                _synchronize(device)
                ticks.append(time.perf_counter())
                objective, terms, _ = elbo.loss_and_terms(module.model, module.guide, batch, n_cells, weights)
                loss = objective / n_cells
                _synchronize(device)
                ticks.append(time.perf_counter())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                _synchronize(device)
                ticks.append(time.perf_counter())
                clip_gradients(parameters, settings.gradient_clip_norm)
                optimizer.step()
                ticks.append(time.perf_counter())
                for phase, start, stop in zip(PHASES, ticks, ticks[1:]):
                    totals[phase] += stop - start
            if index:
                for phase in PHASES:
                    per_pass[phase].append(totals[phase] / steps * 1000)
    medians = {phase: round(statistics.median(values), 2) for phase, values in per_pass.items()}
    medians["step"] = round(statistics.median(map(sum, zip(*per_pass.values()))), 2)
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="prepared .h5ad (default: simulate --preset and preprocess it)")
    parser.add_argument("--preset", default="standard", choices=["tiny", "standard", "large"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="minibatches per pass")
    parser.add_argument("--passes", type=int, default=6, help="timed passes over the same minibatches")
    parser.add_argument("--overhead-genes", type=int, default=16,
                        help="genes of the second, tiny-tensor run (0: skip it)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(argv)

    import anndata as ad
    import torch

    if args.input:
        adata = ad.read_h5ad(args.input)
    else:
        from pertcontrast.data.preprocess import PreprocessSettings, preprocess
        from pertcontrast.data.simulate import simulate

        adata, _ = preprocess(simulate(args.preset, seed=0), PreprocessSettings("perturbation", "control",
                                                                                  batch_key="batch"))
    runs = {f"{adata.n_vars} genes": time_steps(adata, args.batch_size, args.steps, args.passes, args.device)}
    if args.overhead_genes:
        tiny = adata[:, : args.overhead_genes].copy()
        runs[f"{tiny.n_vars} genes"] = time_steps(tiny, args.batch_size, args.steps, args.passes, args.device)
    numbers = {"cells": int(adata.n_obs), "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
               "ms_per_step": runs}
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(f"{adata.n_obs} cells, {args.batch_size} cells per step, {torch.get_num_threads()} torch threads; "
          f"milliseconds per step (median of {args.passes} passes)")
    print(f"{'':>14}" + "".join(f"{phase:>11}" for phase in (*PHASES, "step")))
    for name, medians in runs.items():
        print(f"{name:>14}" + "".join(f"{medians[phase]:>11.2f}" for phase in (*PHASES, "step")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
