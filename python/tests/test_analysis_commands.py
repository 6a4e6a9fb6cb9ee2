"""The analysis commands on a tiny screen: output formats (docs/outputs.md), each output
holding only what its step adds (joined to the prepared file by cell name), merge,
streaming, settings and errors. Quality on a realistic screen is in test_analysis_quality.py."""

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pertcontrast.analysis.de import DESettings
from pertcontrast.analysis.differential import differential_expression
from pertcontrast.analysis.generate import GenerateSettings, generate_expression
from pertcontrast.cli import main
from pertcontrast.errors import InputDataError, ParameterError
from pertcontrast.steps.merge import read_merged

DE_COLUMNS = ["perturbation", "gene", "de_source", "lfc_mean", "lfc_median", "lfc_sd", "prob_de", "bayes_factor",
              "posterior_is_de", "residual_lfc", "residual_pvalue", "de_padj", "is_de", "de_score", "wilcoxon_lfc",
              "wilcoxon_pvalue", "wilcoxon_padj", "wilcoxon_is_de", "de_weight", "mean_expression"]
EFFECT_COLUMNS = ["perturbation", "n_cells", "n_responders", "responder_fraction", "energy_distance",
                  "energy_pvalue", "energy_padj", "detection_pvalue", "detection_padj", "n_de_genes", "n_de_up",
                  "n_de_down", "top_up", "top_down", "lfc_agreement", "cluster", "effect_detected"]


@pytest.fixture(scope="module")
def tiny_files(tiny_model, tiny_prepared, tmp_path_factory):
    """export -> responders -> de -> effects through the CLI, once for this module."""
    folder = tmp_path_factory.mktemp("analysis")
    tiny_model.save(folder / "model")
    tiny_prepared.write_h5ad(folder / "prepared.h5ad")
    runner = CliRunner()
    prepared, latents, responders = (str(folder / f"{name}.h5ad") for name in ("prepared", "latents", "responders"))
    commands = [
        ["export", prepared, "--model", str(folder / "model"), "-o", latents],
        ["responders", prepared, "--latents", latents, "--model", str(folder / "model"), "-o", responders,
         "--device", "cpu"],
        ["de", prepared, "--model", str(folder / "model"), "--responders", responders, "-o", str(folder / "de"),
         "--samples", "3", "--max-cells-per-perturbation", "60", "--device", "cpu", "--no-progress"],
        ["effects", prepared, "--latents", latents, "--responders", responders, "--de", str(folder / "de"),
         "-o", str(folder / "effects"), "--permutations", "20"],
    ]
    for command in commands:
        result = runner.invoke(main, command)
        assert result.exit_code == 0, (command[0], result.output)
    return folder


def test_step_outputs_hold_only_what_the_step_adds(tiny_files, tiny_prepared):
    latents = ad.read_h5ad(tiny_files / "latents.h5ad")
    responders = ad.read_h5ad(tiny_files / "responders.h5ad")
    for output in (latents, responders):
        assert output.obs_names.equals(tiny_prepared.obs_names)
        assert output.n_vars == 0 and output.X is None and not output.layers
    assert list(latents.obs.columns) == ["salient_norm", "pertcontrast_split"]
    assert set(latents.obsm) == {"X_salient", "X_background"} and set(latents.uns) == {"pertcontrast_export"}
    assert list(responders.obs.columns) == ["responder_score", "responder_probability", "responder_call"]
    assert not responders.obsm and set(responders.uns) == {"pertcontrast_responders"}
    sizes = {name: (tiny_files / f"{name}.h5ad").stat().st_size for name in ("prepared", "latents", "responders")}
    assert sizes["latents"] < sizes["prepared"] / 3 and sizes["responders"] < sizes["prepared"] / 3


def test_responders_output(tiny_files, tiny_prepared):
    out = ad.read_h5ad(tiny_files / "responders.h5ad")
    call = out.obs["responder_call"]
    assert set(call.cat.categories) == {"control", "responder", "non-responder"}
    is_control = (tiny_prepared.obs["perturbation"] == "control").to_numpy()
    assert (call[is_control] == "control").all() and (call[~is_control] != "control").all()
    assert out.obs["responder_probability"][is_control].isna().all()
    probability = out.obs["responder_probability"][~is_control]
    assert probability.between(0, 1).all()
    assert out.obs["responder_score"][~is_control].notna().all()
    table = pd.read_csv(tiny_files / "responders.csv")
    # responders: cells of detected perturbations that score above the null's bar (a z-score
    # against the null controls' near 1.15, its 0.875 quantile); none elsewhere
    labels = tiny_prepared.obs["perturbation"].astype(str)[~is_control]
    in_detected = labels.isin(table.loc[table["effect_detected"], "perturbation"]).to_numpy()
    responder = (call[~is_control] == "responder").to_numpy()
    assert in_detected.any() and responder.any() and not responder[~in_detected].any()
    assert (probability[~in_detected] == 0).all()
    assert out.obs["responder_score"][~is_control][responder].min() > 0.5
    assert list(table.columns[:13]) == ["perturbation", "n_cells", "n_responders", "responder_fraction",
                                        "energy_distance", "energy_pvalue", "energy_padj", "score_space",
                                        "detection_pvalue", "detection_padj", "n_direction_genes", "effect_detected",
                                        "null_threshold"]
    assert table["n_cells"].sum() == (~is_control).sum()
    # with --model the scores are taken over the genes, and detection is their rank test
    assert (table["score_space"] == "expression").all() and table["n_direction_genes"].ge(0).all()
    assert table["effect_detected"].equals(table["detection_padj"] < 0.05)
    assert out.uns["pertcontrast_responders"]["null_quantile"] == 0.875
    assert out.uns["pertcontrast_responders"]["score_space"] == "expression"


def test_responders_without_a_model_score_the_salient_latents(tiny_files, tmp_path):
    output = tmp_path / "r.h5ad"
    result = CliRunner().invoke(main, ["responders", str(tiny_files / "prepared.h5ad"), "--latents",
                                       str(tiny_files / "latents.h5ad"), "-o", str(output)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "responders.csv")
    assert (table["score_space"] == "salient").all() and table["n_direction_genes"].isna().all()
    # without residuals the detection test is the energy test
    np.testing.assert_allclose(table["detection_pvalue"], table["energy_pvalue"])
    assert ad.read_h5ad(output).uns["pertcontrast_responders"]["score_space"] == "salient"


def test_de_output(tiny_files, tiny_model):
    table = pd.read_parquet(tiny_files / "de" / "de.parquet")
    assert list(table.columns) == DE_COLUMNS
    perturbations = sorted(tiny_model.encoding.perturbations)
    assert len(table) == len(perturbations) * len(tiny_model.encoding.gene_names)
    assert sorted(table["perturbation"].unique()) == perturbations
    assert table["prob_de"].between(0, 1).all() and table["wilcoxon_padj"].between(0, 1).all()
    assert (table["lfc_sd"] >= 0).all() and (table["mean_expression"] >= 0).all()
    assert table["is_de"].dtype == bool and table["wilcoxon_is_de"].dtype == bool
    assert table["residual_pvalue"].between(0, 1).all()  # every gene of the tiny screen is a model gene
    # the calls: one weighted BH over the perturbation's genes of the residual test, the
    # weights of mean 1 per perturbation
    np.testing.assert_array_equal(table["is_de"], table["de_padj"] < 0.05)
    assert (table["de_weight"] > 0).all()
    np.testing.assert_allclose(table.groupby("perturbation", observed=True)["de_weight"].mean(), 1.0)
    assert (table["de_padj"] >= np.minimum(table["residual_pvalue"] / table["de_weight"], 1) - 1e-12).all()
    csv = pd.read_csv(tiny_files / "de" / "de.csv.gz")
    np.testing.assert_allclose(csv["lfc_mean"], table["lfc_mean"], rtol=1e-6)
    top = pd.read_csv(tiny_files / "de" / "de_top.csv")
    assert list(top.columns[:6]) == ["perturbation", "direction", "rank", "gene", "lfc_mean", "prob_de"]
    assert set(top["direction"]) == {"up", "down"} and top["rank"].max() <= 20
    assert (top.loc[top["direction"] == "up", "lfc_mean"] > 0).all()
    settings = json.loads((tiny_files / "de" / "de_settings.json").read_text())
    assert settings["delta"] == DESettings().delta == 0.15 and settings["fdr"] == 0.05 and settings["samples"] == 3
    assert settings["responders_only"] is False
    assert set(settings["cells_used"]) == set(perturbations)
    assert max(settings["cells_used"].values()) <= 60


def test_effects_output(tiny_files):
    effects = pd.read_csv(tiny_files / "effects" / "effects.csv")
    assert list(effects.columns) == EFFECT_COLUMNS
    assert effects["energy_pvalue"].between(1 / 21 - 1e-12, 1).all()
    assert (effects["energy_distance"] > -1e-9).all()
    assert (effects["n_de_genes"] == effects["n_de_up"] + effects["n_de_down"]).all()
    # the effect calls are the responders' detection test (read from their output)
    responders = pd.read_csv(tiny_files / "responders.csv").set_index("perturbation")
    by_name = effects.set_index("perturbation")
    np.testing.assert_allclose(by_name["detection_padj"], responders.loc[by_name.index, "detection_padj"])
    assert by_name["effect_detected"].equals(by_name["detection_padj"] < 0.05)
    clusters = pd.read_csv(tiny_files / "effects" / "perturbation_clusters.csv")
    assert list(clusters.columns) == ["perturbation", "cluster", "leaf_order", "effect_detected"]
    assert sorted(clusters["leaf_order"]) == list(range(len(clusters)))
    similarity = pd.read_csv(tiny_files / "effects" / "perturbation_similarity.csv", index_col=0)
    assert list(similarity.index) == list(clusters["perturbation"]) == list(similarity.columns)
    programs = pd.read_csv(tiny_files / "effects" / "gene_programs.csv")
    assert list(programs.columns[:2]) == ["gene", "program"]
    assert all(c.startswith("cluster_") for c in programs.columns[2:])


def test_generate_layers_are_consistent_and_streamed(tiny_model, tiny_prepared, tmp_path):
    settings = GenerateSettings(batch_size=100, n_reference=20)
    rows, layers = generate_expression(tiny_model, tiny_prepared, settings, device="cpu")
    assert list(rows) == list(range(tiny_prepared.n_obs))
    n_genes = len(tiny_model.encoding.gene_names)
    for name in ("counterfactual", "background_free", "effect"):
        assert layers[name].shape == (tiny_prepared.n_obs, n_genes) and layers[name].dtype == np.float32
    np.testing.assert_allclose(layers["counterfactual"].sum(axis=1), 1e4, rtol=1e-3)
    np.testing.assert_allclose(layers["background_free"].sum(axis=1), 1e4, rtol=1e-3)
    is_control = (tiny_prepared.obs["perturbation"] == "control").to_numpy()
    assert np.abs(layers["effect"][is_control]).max() == 0.0
    assert np.abs(layers["effect"][~is_control]).max() > 0.0
    # The background-free expression of controls is the reference itself: identical rows.
    controls = layers["background_free"][is_control]
    np.testing.assert_allclose(controls, np.broadcast_to(controls[0], controls.shape), rtol=1e-4)
    _, big = generate_expression(tiny_model, tiny_prepared, GenerateSettings(batch_size=5000, n_reference=20), "cpu")
    for name in layers:
        np.testing.assert_allclose(big[name], layers[name], rtol=1e-4, atol=1e-5)


def test_generate_command_prior_background_and_max_cells(tiny_files, tiny_model, tmp_path):
    result = CliRunner().invoke(main, [
        "generate", str(tiny_files / "prepared.h5ad"), "--model", str(tiny_files / "model"), "-o",
        str(tmp_path / "generated.h5ad"), "--background", "prior", "--max-cells", "150", "--mode", "background_free",
        "--mode", "effect", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    generated = ad.read_h5ad(tmp_path / "generated.h5ad")
    assert generated.shape == (150, len(tiny_model.encoding.gene_names))
    assert set(generated.layers) == {"background_free", "effect"}
    assert list(generated.var_names) == tiny_model.encoding.gene_names
    info = generated.uns["pertcontrast_generate"]
    assert info["background"] == "prior" and info["max_cells"] == 150 and info["model_source"] == "folder"
    assert generated.obs_names.isin(ad.read_h5ad(tiny_files / "prepared.h5ad", backed="r").obs_names).all()
    assert generated.obs.columns.empty and generated.X is None


def test_de_is_repeatable_and_restricted_to_responders(tiny_model, tiny_files):
    responders = read_merged(tiny_files / "prepared.h5ad", tiny_files / "latents.h5ad", tiny_files / "responders.h5ad")
    settings = DESettings(n_samples=2, max_cells_per_perturbation=40, responders_only=True, seed=3)
    first = differential_expression(tiny_model, responders, settings, device="cpu")
    second = differential_expression(tiny_model, responders, settings, device="cpu")
    pd.testing.assert_frame_equal(first.table, second.table)
    n_responders = responders.obs.loc[responders.obs["responder_call"] == "responder", "perturbation"]
    for perturbation, used in first.cells_used.items():
        assert used == min(40, int((n_responders == perturbation).sum()))
    latents = read_merged(tiny_files / "prepared.h5ad", tiny_files / "latents.h5ad")
    with pytest.raises(InputDataError, match="run 'pertcontrast responders' first"):
        differential_expression(tiny_model, latents, settings, device="cpu")
    code = CliRunner().invoke(main, ["de", str(tiny_files / "prepared.h5ad"), "--model", str(tiny_files / "model"),
                                     "--responders-only", "-o", str(tiny_files / "de_x"), "--device", "cpu"])
    assert code.exit_code == 1 and "pass its output with --responders" in code.output


def test_settings_errors_name_the_setting():
    with pytest.raises(ParameterError, match="^fdr must be between 0 and 1") as error:
        DESettings(fdr=1.5)
    assert error.value.param == "fdr"
    with pytest.raises(ParameterError, match="^modes nonsense is not a mode"):
        GenerateSettings(modes=("nonsense",))
    with pytest.raises(ParameterError, match="^background must be one of"):
        GenerateSettings(background="average")


def test_responders_needs_exported_latents(tiny_files, tmp_path):
    prepared = str(tiny_files / "prepared.h5ad")
    result = CliRunner().invoke(main, ["responders", prepared, "--latents", prepared, "-o", str(tmp_path / "r.h5ad")])
    assert result.exit_code == 1
    assert "X_salient" in result.output and "pertcontrast export" in result.output
    assert not (tmp_path / "r.h5ad").exists()


def test_outputs_of_other_cells_are_refused_naming_both_files(tiny_files, tiny_prepared, tmp_path):
    tiny_prepared[:500].copy().write_h5ad(tmp_path / "other.h5ad")
    latents = str(tiny_files / "latents.h5ad")
    result = CliRunner().invoke(main, ["responders", str(tmp_path / "other.h5ad"), "--latents", latents,
                                       "-o", str(tmp_path / "r.h5ad")])
    assert result.exit_code == 1
    line = [l for l in result.output.splitlines() if l.startswith("Error")][0]
    assert latents in line and "other.h5ad" in line and "are not the 500 cells of" in line
    assert not (tmp_path / "r.h5ad").exists()


def test_reordered_cells_are_joined_by_name(tiny_files, tmp_path):
    from pertcontrast.data.screen_files import ScreenFiles

    latents = ad.read_h5ad(tiny_files / "latents.h5ad")
    order = np.random.default_rng(0).permutation(latents.n_obs)
    latents[order].copy().write_h5ad(tmp_path / "shuffled.h5ad")
    with ScreenFiles(tiny_files / "prepared.h5ad", export=tmp_path / "shuffled.h5ad") as files:
        np.testing.assert_array_equal(files.read("obsm", "X_salient"), latents.obsm["X_salient"])


def test_merge_writes_one_file_with_the_counts_and_every_step(tiny_files, tiny_prepared, tmp_path):
    files = [str(tiny_files / f"{name}.h5ad") for name in ("prepared", "latents", "responders")]
    result = CliRunner().invoke(main, ["merge", *files, "-o", str(tmp_path / "all.h5ad")])
    assert result.exit_code == 0, result.output
    merged = ad.read_h5ad(tmp_path / "all.h5ad")
    assert (merged.X != tiny_prepared.X).nnz == 0 and merged.var_names.equals(tiny_prepared.var_names)
    assert list(merged.obs.columns) == list(tiny_prepared.obs.columns) + [
        "salient_norm", "pertcontrast_split", "responder_score", "responder_probability", "responder_call"]
    pd.testing.assert_frame_equal(merged.obs[tiny_prepared.obs.columns], tiny_prepared.obs)
    latents = ad.read_h5ad(files[1])
    np.testing.assert_array_equal(merged.obsm["X_salient"], latents.obsm["X_salient"])
    assert {"pertcontrast", "pertcontrast_export", "pertcontrast_responders"} <= set(merged.uns)
    merged_in_memory = read_merged(*files)
    pd.testing.assert_frame_equal(merged_in_memory.obs, merged.obs)
    assert not list(tmp_path.glob(".all.h5ad.*"))


def test_merge_refuses_a_subsample_of_the_cells(tiny_files, tmp_path):
    CliRunner().invoke(main, ["generate", str(tiny_files / "prepared.h5ad"), "--model", str(tiny_files / "model"),
                              "-o", str(tmp_path / "g.h5ad"), "--max-cells", "50", "--mode", "effect",
                              "--device", "cpu"])
    result = CliRunner().invoke(main, ["merge", str(tiny_files / "prepared.h5ad"), str(tmp_path / "g.h5ad"),
                                       "-o", str(tmp_path / "all.h5ad")])
    assert result.exit_code == 1 and "its 50 cells are not the" in result.output
    assert not (tmp_path / "all.h5ad").exists()


def test_effects_on_lfc_profiles_and_responders_only(tiny_files, tmp_path):
    from pertcontrast.analysis.effects import EffectSettings
    from pertcontrast.steps.analysis import effects_file

    settings = EffectSettings(n_permutations=10, responders_only=True, profile="lfc")
    prepared, latents = tiny_files / "prepared.h5ad", tiny_files / "latents.h5ad"
    table = effects_file(prepared, latents, tiny_files / "de", tmp_path / "effects", settings,
                         responders=tiny_files / "responders.h5ad")
    assert list(table.columns) == EFFECT_COLUMNS
    responders = read_merged(prepared, tiny_files / "responders.h5ad").obs
    few = responders[responders["responder_call"] == "responder"]["perturbation"].value_counts()
    for _, row in table.iterrows():
        if few.get(row["perturbation"], 0) < 2:
            assert np.isnan(row["energy_distance"])  # needs at least 2 responders
    with pytest.raises(ParameterError, match="^profile must be one of"):
        EffectSettings(profile="genes")
    with pytest.raises(InputDataError, match="run 'pertcontrast responders' first"):
        effects_file(prepared, latents, tiny_files / "de", tmp_path / "e2", settings)


def test_calibration_command_writes_the_check_and_the_report_shows_it(tiny_files, tiny_model, tmp_path):
    """pertcontrast calibration: one row per pseudo-perturbation, a summary against the
    targets, the groups drawn from the null controls only; the report's section shows it."""
    import json

    from pertcontrast.analysis.calibration import TARGETS, CalibrationSettings
    from pertcontrast.analysis.cells import NULL_SPLITS

    prepared, latents = str(tiny_files / "prepared.h5ad"), str(tiny_files / "latents.h5ad")
    out = tmp_path / "calibration"
    result = CliRunner().invoke(main, ["calibration", prepared, "--latents", latents, "--model",
                                       str(tiny_files / "model"), "-o", str(out), "--groups", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "calibration.csv")
    assert len(table) == 3 and {"n_cells", "energy_padj", "effect_called", "responder_fraction", "model_called",
                                "wilcoxon_called"} <= set(table.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["targets"] == TARGETS and summary["n_groups"] == 3
    assert summary["effects_called"] == int(table["effect_called"].sum())
    assert summary["passed"] == all(summary[k] <= v for k, v in TARGETS.items() if k in summary)
    split = ad.read_h5ad(latents).obs["pertcontrast_split"].astype(str)
    is_control = ad.read_h5ad(prepared).obs["perturbation"].astype(str) == "control"
    assert summary["n_null_controls"] == int((is_control & split.isin(NULL_SPLITS)).sum())
    assert table["n_cells"].max() <= summary["n_null_controls"] // 2
    assert "pseudo-perturbations called" in result.output
    # the CLI's defaults are the settings' (the command line imports nothing heavy)
    defaults = {p.name: p.default for p in main.commands["calibration"].params}
    assert (defaults["n_groups"], defaults["fdr"], defaults["de"], defaults["seed"]) == (
        CalibrationSettings.n_groups, CalibrationSettings.fdr, CalibrationSettings.de, CalibrationSettings.seed)

    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", prepared, "--latents", latents, "--model", str(tiny_files / "model"),
                                       "--calibration", str(out), "--embedding", "pca", "-o", str(report)])
    assert result.exit_code == 0, result.output
    html = next(report.glob("*.report.html")).read_text()
    section = html.split('<section id="calibration">')[1].split("</section>")[0]
    assert 'id="calibration-verdict"' in section and section.count("<tr>") >= 3 + 1
    assert json.loads(next(report.glob("*.report.json")).read_text())["calibration_passed"] == summary["passed"]


def test_calibration_refuses_a_folder_without_its_files(tiny_files, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tiny_files / "prepared.h5ad"), "--latents",
                                       str(tiny_files / "latents.h5ad"), "--model", str(tiny_files / "model"),
                                       "--calibration", str(tmp_path / "empty"), "-o", str(tmp_path / "r")])
    assert result.exit_code != 0 and "no calibration.csv and summary.json" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("command", "settings_class"), [
    ("de", "pertcontrast.analysis.de:DESettings"),
    ("effects", "pertcontrast.analysis.effects:EffectSettings"),
    ("generate", "pertcontrast.analysis.generate:GenerateSettings"),
    ("calibration", "pertcontrast.analysis.calibration:CalibrationSettings"),
])
def test_command_defaults_are_the_settings_defaults(command, settings_class):
    """One source per default: every option that maps to a settings field has its default
    (the command line keeps literals so that --help imports nothing heavy; this checks them)."""
    import dataclasses
    import importlib

    module, name = settings_class.split(":")
    fields = {f.name: f.default for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    options = {p.name: p.default for p in main.commands[command].params}
    shared = {name for name in fields if name in options and isinstance(options[name], (bool, int, float, str))}
    assert len(shared) >= 3, (command, shared)
    for name in shared:
        assert options[name] == fields[name], (command, name, options[name], fields[name])
