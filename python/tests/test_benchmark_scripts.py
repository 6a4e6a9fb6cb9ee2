"""The benchmark scripts run and print what they promise (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_step_breakdown_prints_every_phase_for_both_gene_counts(tiny_prepared, tmp_path):
    path = tmp_path / "prepared.h5ad"
    tiny_prepared.write_h5ad(path)
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "step_breakdown.py"), "--input", str(path), "--batch-size", "128",
         "--steps", "3", "--passes", "2", "--overhead-genes", "12", "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    assert numbers["cells"] == tiny_prepared.n_obs and numbers["batch_size"] == 128
    runs = numbers["ms_per_step"]
    assert set(runs) == {f"{tiny_prepared.n_vars} genes", "12 genes"}
    for medians in runs.values():
        phases = ("minibatch", "forward", "backward", "optimizer")
        assert all(medians[phase] > 0 for phase in phases)
        # a step is all four phases
        assert medians["step"] > max(medians[phase] for phase in phases)


def test_guide_assignment_prints_every_scenario_for_both_methods():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "guide_assignment.py"), "--cells", "1500", "--seeds", "1",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(numbers["scenarios"]) == {"papalexi-like", "narrow capture", "high background", "low capture",
                                         "no chimeras"}
    for methods in numbers["scenarios"].values():
        assert set(methods) == {"mixture", "fixed 5 UMIs"}
        for values in methods.values():
            assert all(0 <= values[c] <= 1 for c in ("single_accuracy", "multiplet_precision", "multiplet_f1"))
        assert methods["mixture"]["single_accuracy"] > methods["fixed 5 UMIs"]["single_accuracy"]


def test_responder_ceiling_prints_the_bayes_classifier_per_screen():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "responder_ceiling.py"), "--presets", "tiny,hard",
                           "--seeds", "0", "--n-cells", "3000", "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(numbers) == {"tiny/0", "hard/0"}
    for scores in numbers.values():
        assert set(scores) == {f"{name}{part}" for name in ("escaper_auroc", "tpr_at_bar")
                               for part in ("", "_target_gene", "_other_genes")}
        assert all(0.5 < value <= 1.0 for name, value in scores.items() if name.startswith("escaper_auroc"))
        assert all(0.0 < value <= 1.0 for name, value in scores.items() if name.startswith("tpr_at_bar"))
        # every gene knows more than the knockdown alone or the program alone
        assert scores["escaper_auroc"] >= max(scores["escaper_auroc_target_gene"], scores["escaper_auroc_other_genes"])
    # the hard screen's effects are weaker: even the truth separates its escapers less well
    assert numbers["hard/0"]["escaper_auroc"] < numbers["tiny/0"]["escaper_auroc"]
