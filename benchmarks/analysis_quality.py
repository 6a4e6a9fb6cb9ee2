"""Analysis quality on a simulated screen with known truth: the numbers behind
python/tests/test_analysis_quality.py, with timings, for tuning the model.

A benchmark, not a test: it prints numbers (and one JSON line at the end).

    # simulate + train (defaults) + analyse; keep the model for later runs
    python benchmarks/analysis_quality.py --save /tmp/standard
    # analyse a saved model again (after changing analysis code)
    python benchmarks/analysis_quality.py --load /tmp/standard
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "tests"))


def prepare(args):
    import anndata as ad

    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate
    from pertcontrast.model import ContrastiveModel

    if args.load:
        return ad.read_h5ad(f"{args.load}.prepared.h5ad"), ContrastiveModel.load(f"{args.load}.model"), 0.0
    overrides = {"n_cells": args.n_cells, "program_strength": args.program_strength}
    screen = simulate(args.preset, seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
    prepared, _ = preprocess(screen, PreprocessSettings("perturbation", "control", batch_key="batch"))
    model = ContrastiveModel.from_anndata(prepared)
    start = time.time()
    model.train(max_epochs=args.max_epochs, progress=False, device=args.device)
    seconds = time.time() - start
    if args.save:
        prepared.write_h5ad(f"{args.save}.prepared.h5ad")
        model.save(f"{args.save}.model")
    return prepared, model, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", help="prefix of a saved run (<prefix>.prepared.h5ad, <prefix>.model)")
    parser.add_argument("--save", help="prefix to save the prepared screen and the model under")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--n-cells", type=int, default=None, help="default: the preset's")
    parser.add_argument("--program-strength", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: chosen from the data size")
    parser.add_argument("--de-seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from analysis_truth import cluster_ari, de_metrics, escaper_auroc, false_discoveries, truth_table
    from pertcontrast.analysis.clustering import cluster_perturbations, lfc_profiles, salient_profiles
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression
    from pertcontrast.analysis.responders import call_responders

    torch.set_num_threads(args.threads)
    prepared, model, train_seconds = prepare(args)
    timings = {"train": round(train_seconds, 1)}
    start = time.time()
    latents = model.latents(prepared, device=args.device)
    labels = prepared.obs["perturbation"].astype(str).to_numpy()
    responders = call_responders(latents["salient"], labels, "control")
    prepared.obs["responder_probability"] = responders.probability
    prepared.obs["responder_call"] = responders.call
    timings["latents_and_responders"] = round(time.time() - start, 1)
    print(responders.table.round(3).to_string())

    start = time.time()
    de = differential_expression(model, prepared, DESettings(seed=0), device=args.device).table
    timings["de_all_cells"] = round(time.time() - start, 1)
    metrics = de_metrics(de, prepared)
    print(metrics.round(3).to_string())
    start = time.time()
    de_responders = differential_expression(model, prepared, DESettings(seed=0, responders_only=True),
                                            device=args.device).table
    timings["de_responders"] = round(time.time() - start, 1)
    metrics_responders = de_metrics(de_responders, prepared)
    print(metrics_responders.round(3).to_string())

    truth = truth_table(prepared)
    nulls = [p for p in truth.index if not truth.loc[p, "has_effect"]]
    false = {"all_cells": {}, "responders_only": {}}
    for seed in range(args.de_seeds):
        for mode, only in (("all_cells", False), ("responders_only", True)):
            table = differential_expression(model, prepared, DESettings(seed=seed, responders_only=only),
                                            device=args.device, perturbations=nulls).table
            false[mode][seed] = false_discoveries(table, prepared)
    salient_clusters, _ = cluster_perturbations(*salient_profiles(latents["salient"], labels, "control"))
    lfc_clusters, _ = cluster_perturbations(*lfc_profiles(de))
    mean, mean_r = metrics.loc["mean"], metrics_responders.loc["mean"]
    summary = {
        "escaper_auroc": round(escaper_auroc(prepared.obs), 4),
        "null_responder_fraction": {p: round(float(responders.table.set_index("perturbation").loc[p, "responder_fraction"]), 3)
                                    for p in nulls},
        "model_auroc": round(mean.model_auroc, 4), "model_auprc": round(mean.model_auprc, 4),
        "lfc_auroc": round(mean.lfc_auroc, 4), "lfc_auprc": round(mean.lfc_auprc, 4),
        "wilcoxon_auroc": round(mean.wilcoxon_auroc, 4), "wilcoxon_auprc": round(mean.wilcoxon_auprc, 4),
        "calls_all_cells": {"called": mean.n_called, "true": mean.n_true_called, "affected": mean.n_affected},
        "calls_responders": {"called": mean_r.n_called, "true": mean_r.n_true_called},
        "calls_wilcoxon": {"called": mean.n_wilcoxon_called, "true": mean.n_wilcoxon_true_called},
        "false_discoveries": false,
        "ari_salient": round(cluster_ari(salient_clusters, prepared), 4),
        "ari_lfc": round(cluster_ari(lfc_clusters, prepared), 4),
        "seconds": timings,
        "training": {k: model.training.get(k) for k in ("epochs_run", "best_epoch", "seconds")},
    }
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
