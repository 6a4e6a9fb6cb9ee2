"""The simulated screen: truth is consistent, the background dominates, chunked writing
equals the in-memory result."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pertcontrast.data.simulate import preset_config, simulate, simulate_to_h5ad
from pertcontrast.errors import ParameterError


def test_truth_columns_and_counts(tiny_screen):
    obs = tiny_screen.obs
    for column in ("perturbation", "batch", "truth_phase", "truth_clone", "truth_program",
                   "truth_responder", "truth_escaper"):
        assert column in obs
    assert sp.isspmatrix_csr(tiny_screen.X) or sp.issparse(tiny_screen.X)
    data = tiny_screen.X.data
    assert np.all(data == np.round(data)) and data.min() >= 0
    controls = obs.perturbation == "control"
    assert not obs.truth_responder[controls].any()
    # escapers are perturbed cells of perturbations that have an effect
    assert not (obs.truth_escaper & obs.truth_responder).any()
    assert 0.1 < obs.truth_escaper.sum() / (obs.truth_escaper.sum() + obs.truth_responder.sum()) < 0.45
    truth = tiny_screen.uns["truth"]
    assert truth["perturbation_lfc"].shape == (len(truth["perturbations"]), tiny_screen.n_vars)
    null = truth["perturbations"].query("not has_effect").perturbation
    assert obs.loc[obs.perturbation.isin(null), "truth_program"].eq("none").all()


def test_cell_cycle_markers_carry_real_names(tiny_screen):
    for gene in ("MKI67", "TOP2A", "PCNA", "MCM5"):
        assert gene in tiny_screen.var_names
    assert tiny_screen.var_names.is_unique


def test_knockdown_lowers_the_target_in_responders(tiny_screen):
    obs = tiny_screen.obs
    totals = np.asarray(tiny_screen.X.sum(1)).ravel()
    table = tiny_screen.uns["truth"]["perturbations"]
    target = table.query("has_effect").target_gene.iloc[0]
    column = tiny_screen.var_names.get_loc(target)
    expression = np.asarray(tiny_screen.X[:, column].todense()).ravel() / totals * 1e4
    responders = (obs.perturbation == target) & obs.truth_responder
    controls = obs.perturbation == "control"
    assert expression[responders].mean() < 0.4 * expression[controls].mean()


def test_same_seed_same_screen_and_chunked_file_equals_memory(tmp_path):
    a = simulate("tiny", seed=4, n_cells=300, n_genes=400, chunk_size=70)
    path = tmp_path / "s.h5ad"
    simulate_to_h5ad(path, "tiny", seed=4, n_cells=300, n_genes=400, chunk_size=70)
    b = ad.read_h5ad(path)
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs)
    assert list(a.var_names) == list(b.var_names)


def test_presets_and_bad_overrides():
    assert preset_config("large").n_cells >= 200_000
    with pytest.raises(ParameterError, match="not a preset"):
        preset_config("huge")
    with pytest.raises(ParameterError, match="^n_genes must be at least"):
        preset_config("tiny", n_genes=100)


def test_the_command_offers_every_preset():
    from pertcontrast.cli.simulate import PRESET_NAMES as offered
    from pertcontrast.data.simulate import PRESET_NAMES

    assert offered == PRESET_NAMES


@pytest.mark.parametrize("preset", ["hard", "many"])
def test_harder_designs_have_what_they_promise(preset, tmp_path):
    screen = simulate(preset, seed=1, n_cells=4000)
    screen.write_h5ad(tmp_path / "screen.h5ad")  # their ranges are written as lists
    assert list(ad.read_h5ad(tmp_path / "screen.h5ad").uns["truth"]["config"]["escaper_fraction_range"]) == list(
        preset_config(preset).escaper_fraction_range)
    truth = screen.uns["truth"]
    table = truth["perturbations"]
    sizes = [len(genes) for genes in truth["programs"].values()]
    assert len(set(sizes)) > 1  # programs of different sizes
    assert table["escaper_rate"].between(0.25, 0.5).all() and table["escaper_rate"].std() > 0.02
    knockdown_only = table[table.knockdown & ~table.has_effect].perturbation
    assert len(knockdown_only) == preset_config(preset).n_knockdown_only
    obs = screen.obs
    # knockdown-only cells lose their target but get no program
    assert not obs.loc[obs.perturbation.isin(knockdown_only), "truth_responder"].any()
    lfc = np.asarray(truth["perturbation_lfc"])
    rows = list(truth["perturbation_lfc_rows"])
    for name in knockdown_only:
        assert (np.abs(lfc[rows.index(name)]) > 0).sum() == 1
    if preset == "hard":
        assert table["phase_dependent"].any()
        # some program genes are among the least expressed genes of the screen
        totals = np.asarray(screen.X.sum(0)).ravel()
        low = set(screen.var_names[totals <= np.quantile(totals, 0.3)])
        program_genes = {g for genes in truth["programs"].values() for g in genes}
        assert len(program_genes & low) >= 0.1 * len(program_genes)
    else:
        assert len(table) >= 100 and obs.perturbation.value_counts().drop("control").median() < 200


def test_expected_counts_are_what_the_cells_were_drawn_from():
    """``expected_counts`` (the truth behind the responder ceiling benchmark) reproduces the
    simulator: summed over many cells, the counts match their expectation, with the effect
    for responders and without it for escapers and controls."""
    from pertcontrast.data.simulate import expected_counts, screen_design

    adata = simulate("hard", seed=2, cell_seed=4, n_cells=6000)
    design = screen_design("hard", 2, n_cells=6000)
    obs = adata.obs
    counts = adata.X.toarray()
    responders = obs["truth_responder"].to_numpy(bool)
    unaffected = ~obs["truth_knockdown"].to_numpy(bool)
    with_effect, without = expected_counts(obs, design, True), expected_counts(obs, design, False)
    assert np.allclose(with_effect[obs["perturbation"] == "control"], without[obs["perturbation"] == "control"])
    for cells, expected in ((responders, with_effect), (unaffected, without)):
        observed, mean = counts[cells].sum(0), expected[cells].sum(0)
        high = mean > 500  # Poisson-gamma noise about 5% there
        assert high.sum() > 100 and np.median(np.abs(observed[high] / mean[high] - 1)) < 0.03
    # the effect is real: the responders of the largest perturbation follow it, not the unperturbed means
    labels = obs["perturbation"].astype(str).to_numpy()
    largest = pd.Series(labels[responders]).value_counts().index[0]
    cells = responders & (labels == largest)
    changed = np.abs(np.log(with_effect[cells].sum(0) / without[cells].sum(0))) > 0.3
    observed = counts[cells].sum(0)[changed]
    assert changed.sum() >= 10
    assert (np.abs(np.log(observed / with_effect[cells].sum(0)[changed]))
            < np.abs(np.log(observed / without[cells].sum(0)[changed]))).mean() > 0.9
