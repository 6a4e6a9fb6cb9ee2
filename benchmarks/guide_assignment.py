"""Guide assignment against known truth, and against a real screen's reference calls.

A benchmark, not a test: it prints numbers. Simulated guide UMIs
(``pertcontrast.data.guides.simulate``: ambient and chimeric background, log-normal cell
and guide capture) are assigned with the defaults of ``pertcontrast assign-guides`` and
with the baseline of a fixed 5-UMI threshold. Printed per scenario (means over --seeds):
the fraction of single-guide cells called with exactly their guide (all of them, and the
detectable ones: at least 3 UMIs of their guide), and multiplet detection (precision,
recall, F1). With --papalexi, the Papalexi et al. 2021 THP-1 screen's guide UMIs
(``obsm["grna_counts"]``) are assigned and compared with its ``grna_top`` /
``assign_confident`` columns.

    python benchmarks/guide_assignment.py
    python benchmarks/guide_assignment.py --cells 20000 --seeds 5 --json
    python benchmarks/guide_assignment.py --papalexi ../shared/data/papalexi2021/papalexi2021_thp1_sceptre299.h5ad
"""

from __future__ import annotations

import argparse
import json
import sys

SCENARIOS = {
    "papalexi-like": {},
    "narrow capture": {"cell_capture_sd": 0.8, "guide_capture_sd": 0.5},
    "high background": {"ambient_umis": 20.0, "chimera_fraction": 0.08},
    "low capture": {"mean_umis": 40.0},
    "no chimeras": {"chimera_fraction": 0.0},
}
COLUMNS = ("single_accuracy", "single_accuracy_detectable", "multiplet_precision", "multiplet_recall", "multiplet_f1")


def simulated(n_cells: int, seeds: int) -> dict:
    import numpy as np

    from pertcontrast.data.guides.assignment import call_from_umis
    from pertcontrast.data.guides.settings import AssignmentSettings
    from pertcontrast.data.guides.simulate import (GuideScenario, fixed_threshold_calls, score_calls,
                                                   simulate_guides)

    results = {}
    for name, overrides in SCENARIOS.items():
        scores = {"mixture": [], "fixed 5 UMIs": []}
        for seed in range(seeds):
            sim = simulate_guides(GuideScenario(n_cells=n_cells, **overrides), seed=seed)
            calls = call_from_umis(sim.umis, sim.cells, sim.guide_table["guide"], AssignmentSettings())
            scores["mixture"].append(score_calls(sim.truth, calls.called, sim.umis))
            scores["fixed 5 UMIs"].append(score_calls(sim.truth, fixed_threshold_calls(sim.umis, 5), sim.umis))
        results[name] = {method: {c: float(np.mean([s[c] for s in runs])) for c in COLUMNS}
                         for method, runs in scores.items()}
    return results


def papalexi(path: str) -> dict:
    import anndata as ad
    import numpy as np
    import pandas as pd

    from pertcontrast.data.guides.assignment import call_from_umis
    from pertcontrast.data.guides.settings import AssignmentSettings

    adata = ad.read_h5ad(path)
    guides = pd.Index(adata.uns["grna_names"])
    calls = call_from_umis(adata.obsm["grna_counts"], adata.obs_names, guides, AssignmentSettings()).per_cell()
    single = (calls["assignment"] == "single").to_numpy()
    top = adata.obs["grna_top"].astype(str).to_numpy()
    same = calls["guide"].to_numpy() == top
    confident = adata.obs["assign_confident"].to_numpy().astype(bool)
    called_top = np.array([t in g.split("|") for g, t in zip(calls["guide"], top)])
    return {
        "cells": int(adata.n_obs), "confident_cells": int(confident.sum()),
        "assignments": {k: int(v) for k, v in calls["assignment"].value_counts().items()},
        "confident_called_single_with_top_guide": float((single & same)[confident].mean()),
        "confident_with_top_guide_called": float(called_top[confident].mean()),
        "singles_with_top_guide": float(same[single].mean()),
        "singles_that_are_confident": float(confident[single].mean()),
    }


def print_table(results: dict) -> None:
    print(f"{'scenario':<16} {'method':<13} " + " ".join(f"{c:>26}" for c in COLUMNS))
    for scenario, methods in results.items():
        for method, values in methods.items():
            print(f"{scenario:<16} {method:<13} " + " ".join(f"{values[c]:>26.4f}" for c in COLUMNS))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10_000, help="cells per simulated screen")
    parser.add_argument("--seeds", type=int, default=3, help="simulated screens per scenario")
    parser.add_argument("--papalexi", default=None, help="the Papalexi 2021 .h5ad (obsm['grna_counts'])")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of tables")
    args = parser.parse_args(argv)
    summary = {"cells": args.cells, "seeds": args.seeds, "scenarios": simulated(args.cells, args.seeds)}
    if args.papalexi:
        summary["papalexi"] = papalexi(args.papalexi)
    if args.json:
        print(json.dumps(summary))
        return 0
    print_table(summary["scenarios"])
    if args.papalexi:
        print("papalexi:", json.dumps(summary["papalexi"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
