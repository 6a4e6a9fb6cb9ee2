"""Guide calls from UMI counts: the mixture threshold, the per-cell rules, the labels of
several guides, and the accuracy targets on simulated guide UMIs with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pertcontrast.data.guides.assignment import call_from_umis, calls_from_table
from pertcontrast.data.guides.guide_table import guide_table_from_frame
from pertcontrast.data.guides.mixture import fit_mixture, guide_threshold
from pertcontrast.data.guides.moi import label_cells
from pertcontrast.data.guides.settings import AssignmentSettings, GuideSettings
from pertcontrast.data.guides.simulate import GuideScenario, fixed_threshold_calls, score_calls, simulate_guides
from pertcontrast.errors import InputDataError, ParameterError


def bimodal_umis(rng, n_background=3000, n_carriers=300):
    background = rng.poisson(0.6, n_background) + 1
    carriers = np.round(rng.lognormal(np.log(80), 0.7, n_carriers)).astype(int) + 1
    return np.concatenate([background, carriers]), background, carriers


def test_threshold_is_where_the_weighted_densities_cross(rng):
    umis, background, carriers = bimodal_umis(rng)
    result = guide_threshold(umis, min_umis=1, min_cells=20)
    fit = result.mixture
    assert result.method == "mixture"
    assert fit.means[0] == pytest.approx(np.log1p(background).mean(), abs=0.15)
    assert fit.means[1] == pytest.approx(np.log1p(carriers).mean(), abs=0.15)
    assert fit.weight == pytest.approx(len(carriers) / len(umis), abs=0.02)
    # the crossing of the two weighted normal densities, solved as a quadratic in x = log1p(umis)
    (m0, m1), (s0, s1), w = fit.means, fit.sds, fit.weight
    a = 1 / (2 * s0**2) - 1 / (2 * s1**2)
    b = m1 / s1**2 - m0 / s0**2
    c = m0**2 / (2 * s0**2) - m1**2 / (2 * s1**2) + np.log(w * s0 / ((1 - w) * s1))
    roots = np.roots([a, b, c])
    crossing = next(r.real for r in roots if abs(r.imag) < 1e-9 and m0 < r.real < m1)
    assert result.umis == int(np.ceil(np.expm1(crossing) - 1e-9))
    assert fit.posterior([result.umis])[0] >= 0.5 > fit.posterior([result.umis - 1])[0]


def test_threshold_never_goes_below_the_minimum(rng):
    umis, _, _ = bimodal_umis(rng)
    assert guide_threshold(umis, min_umis=25, min_cells=20).umis == 25


def test_a_guide_without_background_or_with_few_cells_gets_the_minimum(rng):
    carriers_only = np.round(rng.lognormal(np.log(80), 0.5, 500)).astype(int) + 1
    result = guide_threshold(carriers_only, min_umis=3, min_cells=20)
    assert (result.umis, result.method) == (3, "minimum (no background component)")
    few = guide_threshold(np.array([1, 1, 2, 50, 60]), min_umis=3, min_cells=20)
    assert few.umis == 3 and few.method.startswith("minimum (fewer than 20 cells")
    assert fit_mixture(np.full(100, 4)) is None


def test_calls_need_the_threshold_the_minimum_and_the_share():
    # guide 0: a clear background (1-2 UMIs) and carriers (>= 40); guide 1: tiny share in cell 1
    background = [[1, 0]] * 60 + [[2, 0]] * 30
    carriers = [[40 + i, 0] for i in range(30)]
    umis = sp.csr_matrix(np.array(background + carriers + [[0, 3], [20, 1000], [2, 0]]))
    calls = call_from_umis(umis, [f"c{i}" for i in range(umis.shape[0])], ["g0", "g1"], AssignmentSettings())
    per_cell = calls.per_cell()
    assert (per_cell["assignment"].iloc[:90] == "none").all()
    assert (per_cell["guide"].iloc[90:120] == "g0").all()
    assert per_cell["guide"].iloc[120] == "g1"  # 3 UMIs, all of the cell's guide UMIs
    assert per_cell["guide"].iloc[121] == "g1"  # g0's 20 UMIs are under 3% of the cell's 1,020
    assert per_cell["assignment"].iloc[122] == "none"
    assert per_cell["guide_umis_total"].iloc[121] == 1020 and per_cell["guide_umis"].iloc[121] == 1000
    assert calls.thresholds[0].method == "mixture" and 3 <= calls.thresholds[0].umis <= 40


def test_calls_from_a_table_keep_known_cells_and_guides():
    table = pd.DataFrame({"cell": ["a", "a", "b", "zz"], "guide": ["g1", "g2", "g2", "g1"], "umis": [5, 7, 0, 9]})
    calls = calls_from_table(table, ["a", "b", "c"], ["g1", "g2"])
    per_cell = calls.per_cell()
    assert per_cell["guide"].tolist() == ["g1|g2", "g2", ""]
    assert per_cell["assignment"].tolist() == ["multiple", "single", "none"]
    assert per_cell["guide_umis"].tolist() == [12, 0, 0]
    assert calls.thresholds is None


@pytest.mark.parametrize("policy", ["exclude", "combine"])
def test_guides_of_one_target_count_as_it_and_of_several_are_excluded_or_combined(policy):
    table = guide_table_from_frame(pd.DataFrame({
        "guide": ["A_1", "A_2", "B_1", "NT_1", "SAFE_1"], "target": ["A", "A", "B", "", "intergenic"],
        "class": ["targeting", "targeting", "targeting", "non-targeting", "Safe_Targeting"]}), "guides.csv")
    rows = [("A_1",), ("A_1", "A_2"), ("A_1", "B_1"), ("NT_1",), ("SAFE_1",), ("NT_1", "B_1"), ()]
    called = sp.lil_matrix((len(rows), 5), dtype=bool)
    for i, guides in enumerate(rows):
        for guide in guides:
            called[i, list(table.guides).index(guide)] = True
    cells = pd.Index([f"c{i}" for i in range(len(rows))])
    calls = calls_from_table(pd.DataFrame({"cell": np.repeat(cells, [len(r) for r in rows]),
                                           "guide": [g for r in rows for g in r], "umis": 10}), cells, table.guides)
    labels = label_cells(calls, table, policy)
    combined = policy == "combine"
    assert labels["perturbation"].tolist() == ["A", "A", "A+B" if combined else "", "non-targeting",
                                               "safe-targeting", "B+non-targeting" if combined else "", ""]
    assert labels["guide_class"].tolist()[:5] == ["targeting", "targeting", "combination" if combined else "",
                                                  "non-targeting", "safe-targeting"]
    assert labels["status"].tolist() == ["assigned", "assigned", "combined" if combined else "multiple targets",
                                         "assigned", "assigned", "combined" if combined else "multiple targets",
                                         "no guide"]


@pytest.mark.parametrize(("frame", "message"), [
    ({"guide": ["g1"], "gene": ["A"]}, "guides.csv row 1: no 'target' column"),
    ({"guide": ["g1", "g2"], "target": ["A", "B"], "class": ["targeting", "scrambled"]},
     "guides.csv row 3, column 'class': 'scrambled' is not a guide class; use one of targeting, non-targeting"),
    ({"guide": ["g1", "g2", "g1"], "target": ["A", "B", "C"]},
     "guides.csv row 4, column 'guide': duplicate guide 'g1' (also in row 2)"),
    ({"guide": ["g1", "g2"], "target": ["A", ""]}, "guides.csv row 3, column 'target': empty target"),
    ({"guide": ["g1"], "target": ["non-targeting"], "class": ["targeting"]}, "is a control name but the class"),
])
def test_guide_table_problems_name_the_row_and_column(frame, message):
    with pytest.raises(InputDataError, match=None) as error:
        guide_table_from_frame(pd.DataFrame(frame), "guides.csv")
    assert message in error.value.message


def test_a_guide_table_without_classes_knows_controls_by_their_target():
    table = guide_table_from_frame(pd.DataFrame({"guide": ["g1", "n1", "s1"],
                                                 "target": ["A", "Non-Targeting", "safe_targeting"]}), "t.csv")
    assert table.table["class"].tolist() == ["targeting", "non-targeting", "safe-targeting"]
    assert table.labels().tolist() == ["A", "non-targeting", "safe-targeting"]


def test_settings_out_of_range_are_refused():
    """The library names the settings field; the CLI phrases it as the flag (test_bad_inputs)."""
    with pytest.raises(ParameterError, match="min_fraction must be between 0 and 1") as error:
        AssignmentSettings(min_fraction=1.5)
    assert error.value.param == "min_fraction"
    with pytest.raises(ParameterError, match="multiple_targets must be one of exclude, combine"):
        GuideSettings(multiple_targets="keep")


# -- the targets, on simulated guide UMIs with known truth ----------------------------------
# (benchmarks/guide_assignment.py prints the same numbers for more scenarios and cells)
@pytest.mark.parametrize(("scenario", "accuracy_field", "overall"), [
    (GuideScenario(n_cells=4000, cell_capture_sd=0.8, guide_capture_sd=0.5), "single_accuracy", 0.98),
    # capture as spread as the Papalexi screen's: ~2% of the cells carry their guide with
    # under 3 UMIs, which no caller can assign; the 0.98 target holds for the rest
    (GuideScenario(n_cells=4000), "single_accuracy_detectable", 0.94),
], ids=["narrow-capture", "papalexi-like"])
def test_assignment_meets_the_targets_on_simulated_guides(scenario, accuracy_field, overall):
    mixture, fixed = scores(scenario)
    assert mixture[accuracy_field] >= 0.98, mixture
    assert mixture["single_accuracy"] >= overall, mixture
    assert mixture["multiplet_f1"] >= fixed["multiplet_f1"], (mixture, fixed)
    assert mixture["multiplet_precision"] >= 0.95 and mixture["multiplet_recall"] >= 0.9, mixture


def test_with_four_times_the_background_it_still_beats_a_fixed_threshold_by_far():
    # the 0.98 target is not met here (benchmarks/README.md): about 0.97 of detectable cells
    mixture, fixed = scores(GuideScenario(n_cells=4000, ambient_umis=20.0, chimera_fraction=0.08))
    assert mixture["single_accuracy_detectable"] >= 0.96, mixture
    assert mixture["single_accuracy"] >= fixed["single_accuracy"] + 0.2, (mixture, fixed)
    assert mixture["multiplet_f1"] >= fixed["multiplet_f1"] + 0.4, (mixture, fixed)


def scores(scenario: GuideScenario, seed: int = 0) -> tuple[dict, dict]:
    sim = simulate_guides(scenario, seed=seed)
    calls = call_from_umis(sim.umis, sim.cells, sim.guide_table["guide"], AssignmentSettings())
    return (score_calls(sim.truth, calls.called, sim.umis),
            score_calls(sim.truth, fixed_threshold_calls(sim.umis, 5), sim.umis))
