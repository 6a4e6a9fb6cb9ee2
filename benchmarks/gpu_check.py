"""The GPU check behind benchmarks/gpu_check.sh: prints numbers, asserts nothing.

1. data: a simulated screen (preset "large", --base-cells cells), preprocessed to
   --genes genes, tiled to --cells cells (copies of the same cells: an epoch costs the
   same, and making 1,000,000 distinct cells would take most of the time budget);
2. one training epoch over all cells with the fastest settings (counts resident on the
   device, bf16-mixed, --batch-size cells per step) and with the defaults: seconds,
   cells/s, peak GPU memory (epoch 2 of 2: epoch 1 carries the warm-up);
3. the export of those cells (posterior means, --export-batch cells per block);
4. scvi-tools' ContrastiveVI on --peer-cells of the cells, same architecture, same cells
   per step (half background, half target), epoch 2 of 2: cells/s and the ratio.

--dry-run: the same steps at tiny sizes on the CPU (the suite runs it).
"""

from __future__ import annotations

import argparse
import sys
import time

ARCHITECTURE = {"n_hidden": 128, "n_layers": 1, "n_background": 16, "n_salient": 10, "dropout": 0.0}


def say(text: str) -> None:
    print(text, flush=True)


def make_cells(args):
    import anndata as ad

    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate

    started = time.perf_counter()
    raw = simulate("large", seed=0, n_cells=args.base_cells, n_genes=args.genes)
    prepared, _ = preprocess(raw, PreprocessSettings("perturbation", "control", batch_key="batch",
                                                     n_top_genes=args.genes))
    del raw
    copies, rest = divmod(args.cells, prepared.n_obs)
    parts = [prepared] * copies + ([prepared[:rest]] if rest else [])
    tiled = ad.concat(parts, index_unique="-")
    tiled.uns = prepared.uns
    say(f"data: {tiled.n_obs:,} cells x {tiled.n_vars:,} genes ({len(parts)} copies of a simulated "
        f"{prepared.n_obs:,}-cell screen, {tiled.X.nnz / tiled.n_obs:.0f} counts per cell stored), "
        f"made in {time.perf_counter() - started:.1f} s")
    return tiled


def peak_memory(device: str) -> str:
    import torch

    if device != "cuda":
        return "peak GPU memory: no GPU"
    return f"peak GPU memory {torch.cuda.max_memory_allocated() / 1024**3:.2f} GB"


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_epoch(adata, device: str, label: str, **settings):
    """Two epochs; prints the second. Returns (cells/s, the model)."""
    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(adata, **ARCHITECTURE)
    reset_peak(device)
    model.train(max_epochs=2, early_stopping=False, validation_fraction=0.0, device=device, progress=False,
                **settings)
    seconds = float(model.history["seconds"].iloc[-1])
    cells = model.training["steps_per_epoch"] * model.training["settings"]["batch_size"]
    rate = cells / seconds
    shown = ", ".join(f"{key} {value}" for key, value in model.training["settings"].items()
                      if key in ("batch_size", "resident", "precision"))
    say(f"epoch, {label} ({shown}): {seconds:.2f} s, {rate:,.0f} cells/s, {peak_memory(device)} "
        f"(epoch 1: {float(model.history['seconds'].iloc[0]):.2f} s)")
    return rate, model


def export(model, adata, device: str, batch_size: int) -> None:
    reset_peak(device)
    started = time.perf_counter()
    model.latents(adata, batch_size=batch_size, device=device)
    seconds = time.perf_counter() - started
    say(f"export: latents of {adata.n_obs:,} cells in {seconds:.2f} s, {adata.n_obs / seconds:,.0f} cells/s "
        f"(batch {batch_size}), {peak_memory(device)}")


def contrastive_vi(adata, device: str, cells_per_step: int) -> float | None:
    try:
        import scvi
        from lightning.pytorch.callbacks import Callback
    except ImportError:
        say("ContrastiveVI: not run: scvi-tools is not installed (pip install -e './python[benchmark]'); "
            "no ratio")
        return None
    import numpy as np

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds, self.started = [], 0.0

        def on_train_epoch_start(self, trainer, module):
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self.started)

    adata = adata.copy()
    scvi.settings.seed = 0
    scvi.external.ContrastiveVI.setup_anndata(adata, batch_key="batch")
    model = scvi.external.ContrastiveVI(
        adata, n_hidden=ARCHITECTURE["n_hidden"], n_layers=ARCHITECTURE["n_layers"],
        n_background_latent=ARCHITECTURE["n_background"], n_salient_latent=ARCHITECTURE["n_salient"],
        dropout_rate=ARCHITECTURE["dropout"], use_observed_lib_size=True,
    )
    is_control = adata.obs["perturbation"].astype(str).to_numpy() == "control"
    background, target = np.flatnonzero(is_control).tolist(), np.flatnonzero(~is_control).tolist()
    per_group = cells_per_step // 2
    timer = EpochTimer()
    model.train(background_indices=background, target_indices=target, max_epochs=2, batch_size=per_group,
                early_stopping=False, train_size=1.0, accelerator="gpu" if device == "cuda" else "cpu",
                callbacks=[timer], enable_progress_bar=False, logger=False, enable_checkpointing=False)
    # its loader cycles the smaller group: an epoch is len(larger group) / batch steps
    steps = int(np.ceil(max(len(background), len(target)) / per_group))
    rate = steps * 2 * per_group / timer.seconds[-1]
    say(f"ContrastiveVI (scvi-tools {scvi.__version__}, same architecture, {per_group}+{per_group} cells "
        f"per step, {adata.n_obs:,} cells): {timer.seconds[-1]:.2f} s per epoch, {rate:,.0f} cells/s")
    return rate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what the suite runs)")
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--base-cells", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=8192, help="cells per step, fastest settings")
    parser.add_argument("--export-batch", type=int, default=65536)
    parser.add_argument("--peer-cells", type=int, default=200_000)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    if args.dry_run:
        args.cells, args.genes, args.base_cells, args.peer_cells = 2000, 1000, 1000, 1000
        args.batch_size, args.export_batch, args.device = 512, 1024, "cpu"

    import torch

    import pertcontrast

    if args.device == "cuda" and not torch.cuda.is_available():
        say("gpu_check: no CUDA device visible (run with --dry-run for the CPU check)")
        return 1
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (dry run: tiny sizes)"
    say(f"gpu_check: pertcontrast {pertcontrast.__version__}, torch {torch.__version__}, {name}")
    adata = make_cells(args)
    fastest, model = train_epoch(adata, args.device, "fastest settings", resident="on",
                                 precision="bf16-mixed", batch_size=args.batch_size)
    train_epoch(adata, args.device, "defaults")
    export(model, adata, args.device, args.export_batch)
    peer = contrastive_vi(adata[: args.peer_cells], args.device, args.batch_size)
    if peer:
        say(f"ratio: pertcontrast fastest / ContrastiveVI = {fastest / peer:.1f}x cells/s")
    say(f"gpu_check: done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
