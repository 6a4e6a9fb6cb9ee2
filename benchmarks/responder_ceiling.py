"""The best responder calls any method could make on a simulated screen: the Bayes
classifier that knows the truth.

Per preset and seed, new cells of the screen (``simulate --cell-seed 1``, as
``quality.py`` scores) are classified, among the cells of perturbations with a program,
into responders and escapers (all of them, before QC) by the log-likelihood ratio of their counts under the true
expected counts with the effect against without it (the simulator's negative binomial and
dispersions). What no method can beat, since it knows each cell's background and the
effect exactly:

- ``escaper_auroc``: AUROC of that ratio over all such cells (``quality.py``'s escaper AUROC);
- ``tpr_at_bar``: per perturbation, the responders above the escapers' 0.875 quantile
  (the escaper FPR of ``pertcontrast responders``' bar), mean over perturbations;
- the same from the target gene alone (the knockdown) and from every gene but the target.

    python benchmarks/responder_ceiling.py --presets standard,hard,many --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd


def log_ratios(adata, design, cells: np.ndarray, block_size: int = 2000) -> dict[str, np.ndarray]:
    """Per cell: the count log-likelihood ratio, effect against none, over all genes, the
    target gene alone and the other genes."""
    from pertcontrast.data.simulate import expected_counts

    genes = pd.Index(design.gene_names)
    targets = genes.get_indexer(design.perturbations["target_gene"])
    theta = design.dispersion[None, :]
    counts = adata.X.tocsr()
    perturbation = adata.obs["truth_perturbation_index"].to_numpy()
    out = {name: np.empty(len(cells)) for name in ("all", "target", "other")}
    for start in range(0, len(cells), block_size):
        rows = cells[start : start + block_size]
        obs = adata.obs.iloc[rows]
        without, with_effect = expected_counts(obs, design, False), expected_counts(obs, design, True)
        x = counts[rows].toarray()
        per_gene = (theta * (np.log(theta + without) - np.log(theta + with_effect))
                    + x * (np.log(with_effect / (theta + with_effect)) - np.log(without / (theta + without))))
        target = per_gene[np.arange(len(rows)), targets[perturbation[rows]]]
        block = slice(start, start + len(rows))
        out["all"][block], out["target"][block] = per_gene.sum(1), target
        out["other"][block] = out["all"][block] - target
    return out


def ceiling(preset: str, seed: int, n_cells: int | None = None) -> dict:
    from sklearn.metrics import roc_auc_score

    from pertcontrast.data.simulate import screen_design, simulate

    overrides = {"n_cells": n_cells} if n_cells else {}
    adata = simulate(preset, seed=seed, cell_seed=1, **overrides)
    design = screen_design(preset, seed, **overrides)
    obs = adata.obs
    cells = np.flatnonzero((obs["truth_responder"] | obs["truth_escaper"]).to_numpy(bool))
    responder = obs["truth_responder"].to_numpy(bool)[cells]
    labels = obs["perturbation"].astype(str).to_numpy()[cells]
    scores = {}
    for name, ratio in log_ratios(adata, design, cells).items():
        suffix = "" if name == "all" else f"_{name}_gene" if name == "target" else "_other_genes"
        scores[f"escaper_auroc{suffix}"] = float(roc_auc_score(responder, ratio))
        tprs = []
        for perturbation in np.unique(labels):
            mine = labels == perturbation
            if responder[mine].any() and (~responder[mine]).any():
                bar = np.quantile(ratio[mine & ~responder], 0.875)
                tprs.append(float((ratio[mine & responder] > bar).mean()))
        scores[f"tpr_at_bar{suffix}"] = float(np.mean(tprs))
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="standard,hard,many")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-cells", type=int, default=None, help="override the presets' cell numbers")
    parser.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = parser.parse_args(argv)
    rows = {(preset, int(seed)): ceiling(preset, int(seed), args.n_cells)
            for preset in args.presets.split(",") for seed in args.seeds.split(",")}
    table = pd.DataFrame(rows).T
    print(table.round(3).to_string())
    if args.json:
        print(json.dumps({f"{p}/{s}": v for (p, s), v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
