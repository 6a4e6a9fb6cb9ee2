"""Screens for the report tests: a real trained model, a prepared file and its exported
latents, plus analysis outputs written by the tests in the formats of docs/outputs.md.

One perturbation is labelled ``<script>alert(1)</script>`` and one gene
``<img src=x onerror=alert(1)>`` (the report must show them as text). Import the fixtures
as a plugin of a test module: ``pytest_plugins = ["report_fixtures"]`` (so the session
fixtures are built once for all modules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT_LABEL = "<script>alert(1)</script>"
IMG_GENE = "<img src=x onerror=alert(1)>"
CONTROL = "control"


@dataclass
class ReportInputs:
    folder: Path
    prepared: Path
    latents: Path
    model: Path
    responders: Path  # the responders step's .h5ad (per-cell calls)
    de: Path
    effects: Path
    perturbations: list[str]  # strongest first (as written in effects.csv)
    genes: list[str]
    guide_qc: Path | None = None
    calibration: Path | None = None


@pytest.fixture(scope="session")
def report_inputs(tiny_prepared, tiny_model, tmp_path_factory) -> ReportInputs:
    from pertcontrast.io import write_step_output
    from pertcontrast.steps.export import export_file

    folder = tmp_path_factory.mktemp("report_inputs")
    tiny_model.save(folder / "model")
    tiny_prepared.write_h5ad(folder / "prepared.h5ad")
    export_file(folder / "prepared.h5ad", tiny_model, folder / "screen1.latents.h5ad", device="cpu")
    prepared = tiny_prepared.copy()
    labels = prepared.obs["perturbation"].astype(str)
    perturbations = sorted(set(labels) - {CONTROL})
    renamed = {perturbations[0]: SCRIPT_LABEL}
    prepared.obs["perturbation"] = pd.Categorical(labels.replace(renamed))
    perturbations = [renamed.get(p, p) for p in perturbations]
    prepared.write_h5ad(folder / "screen1.prepared.h5ad")
    rng = np.random.default_rng(0)
    is_control = (prepared.obs["perturbation"] == CONTROL).to_numpy()
    calls = np.where(is_control, "control", np.where(rng.random(prepared.n_obs) < 0.6, "responder", "non-responder"))
    write_step_output(folder / "screen1.responders.h5ad", prepared.obs_names, obs={
        "responder_call": pd.Categorical(calls, categories=["control", "responder", "non-responder"])},
        uns={"pertcontrast_responders": {"null_quantile": 0.875}})
    genes = [IMG_GENE if i == 0 else str(g) for i, g in enumerate(prepared.var_names)]
    inputs = ReportInputs(folder, folder / "screen1.prepared.h5ad", folder / "screen1.latents.h5ad", folder / "model",
                          folder / "screen1.responders.h5ad", folder / "de", folder / "effects", perturbations, genes)
    write_analysis_outputs(inputs, prepared.obs["perturbation"].astype(str).to_numpy(), calls, rng)
    inputs.guide_qc = write_guide_qc(folder)
    inputs.calibration = write_calibration(folder, tiny_model)
    return inputs


def write_calibration(folder: Path, model) -> Path:
    """The folder of 'pertcontrast calibration' for the fixture screen (3 groups, no DE)."""
    from pertcontrast.analysis.calibration import CalibrationSettings
    from pertcontrast.steps.calibration import calibration_file

    calibration_file(folder / "screen1.prepared.h5ad", folder / "screen1.latents.h5ad", model, folder / "calibration",
                     CalibrationSettings(n_groups=3, de=False), device="cpu")
    return folder / "calibration"


def write_guide_qc(folder: Path) -> Path:
    """The QC folder of 'pertcontrast assign-guides' on the Cell Ranger-style fixture
    screen, with one guide renamed to the crafted script label."""
    from guide_fixtures import make_screen, write_cellranger_h5, write_guide_table

    from pertcontrast.steps.guides import assign_guides_file

    screen = make_screen()
    write_cellranger_h5(folder / "screen.h5", screen)
    write_guide_table(folder / "guides.csv")
    files = assign_guides_file(folder / "screen.h5", folder / "guides.csv", folder / "guides" / "screen.guides.h5ad")
    table = pd.read_csv(files.qc_dir / "guides.csv")
    table["guide"] = table["guide"].replace({"LMO2_2": SCRIPT_LABEL})
    table.to_csv(files.qc_dir / "guides.csv", index=False)
    return files.qc_dir


def write_analysis_outputs(inputs: ReportInputs, labels: np.ndarray, calls: np.ndarray, rng) -> None:
    """de/ and effects/ as documented; the script-labelled perturbation is the strongest,
    and the img-named gene is its top gene."""
    strength = {p: 1.0 / (i + 1) for i, p in enumerate(inputs.perturbations)}
    order = inputs.perturbations  # strongest first
    rows = []
    for p in order:
        mask = labels == p
        rows.append({"perturbation": p, "n_cells": int(mask.sum()),
                     "n_responders": int((calls[mask] == "responder").sum())})
    responders = pd.DataFrame(rows)
    responders["responder_fraction"] = responders["n_responders"] / responders["n_cells"]
    responders["null_threshold"] = 1.5

    de_rows, top_rows = [], []
    for p in order:
        lfc = rng.normal(0, 0.2, len(inputs.genes)) * strength[p] * 3
        lfc[0] = 2.5 * strength[p]  # the img-named gene: strongest up-regulated
        prob = np.clip(np.abs(lfc) * 2, 0, 1)
        is_de = prob > 0.9
        de_rows.append(pd.DataFrame({
            "perturbation": p, "gene": inputs.genes, "lfc_mean": lfc, "lfc_median": lfc, "lfc_sd": 0.1,
            "prob_de": prob, "bayes_factor": np.log10(np.clip(prob, 1e-6, 1 - 1e-6) / np.clip(1 - prob, 1e-6, 1)),
            "residual_lfc": lfc, "residual_pvalue": 1 - prob, "de_padj": 1 - prob,
            "is_de": is_de, "wilcoxon_lfc": lfc, "wilcoxon_pvalue": 1 - prob, "wilcoxon_padj": 1 - prob,
            "wilcoxon_is_de": is_de, "mean_expression": 1.0,
        }))
        for direction, sign in (("up", -1), ("down", 1)):
            ranked = np.argsort(sign * lfc)[:20]
            for rank, g in enumerate(ranked, start=1):
                top_rows.append({"perturbation": p, "direction": direction, "rank": rank, "gene": inputs.genes[g],
                                 "lfc_mean": lfc[g], "prob_de": prob[g]})
    de = pd.concat(de_rows, ignore_index=True)
    inputs.de.mkdir()
    de.to_parquet(inputs.de / "de.parquet", index=False)
    de.to_csv(inputs.de / "de.csv.gz", index=False)
    top = pd.DataFrame(top_rows)
    top.to_csv(inputs.de / "de_top.csv", index=False)
    (inputs.de / "de_settings.json").write_text(json.dumps({
        "delta": 0.25, "fdr": 0.05, "samples": 25, "responders_only": False,
        "cells_used": dict(zip(responders["perturbation"], responders["n_cells"].astype(int).tolist())),
        "pertcontrast_version": "test"}))

    called = de[de["is_de"]]
    effects = responders.drop(columns="null_threshold").copy()
    effects["energy_distance"] = [strength[p] for p in order]
    effects["energy_pvalue"] = [0.001 if strength[p] > 0.3 else 0.5 for p in order]
    effects["n_de_genes"] = [int((called["perturbation"] == p).sum()) for p in order]
    effects["n_de_up"] = [int(((called["perturbation"] == p) & (called["lfc_mean"] > 0)).sum()) for p in order]
    effects["n_de_down"] = effects["n_de_genes"] - effects["n_de_up"]
    effects["top_up"] = [";".join(top[(top.perturbation == p) & (top.direction == "up")].gene.head(10)) for p in order]
    effects["top_down"] = [";".join(top[(top.perturbation == p) & (top.direction == "down")].gene.head(10))
                           for p in order]
    effects["cluster"] = [1 if i < len(order) / 2 else 2 for i in range(len(order))]
    inputs.effects.mkdir()
    effects.to_csv(inputs.effects / "effects.csv", index=False)
    effects.assign(leaf_order=range(len(order)))[["perturbation", "cluster", "leaf_order"]].to_csv(
        inputs.effects / "perturbation_clusters.csv", index=False)
    profiles = np.stack([de[de.perturbation == p]["lfc_mean"].to_numpy() for p in order])
    similarity = pd.DataFrame(np.corrcoef(profiles), index=order, columns=order)
    similarity.index.name = "perturbation"
    similarity.to_csv(inputs.effects / "perturbation_similarity.csv")
    programs = pd.DataFrame({"gene": inputs.genes, "program": 0, "cluster_1": 0.0, "cluster_2": 0.0})
    programs.to_csv(inputs.effects / "gene_programs.csv", index=False)


def build(inputs: ReportInputs, output: Path, analysis: bool, title: str | None = None, **settings):
    from pertcontrast.steps.report import ReportSettings, build_report

    options = dict(responders=inputs.responders, de=inputs.de, effects=inputs.effects,
                   guide_qc=inputs.guide_qc, calibration=inputs.calibration) if analysis else {}
    return build_report(inputs.prepared, inputs.latents, inputs.model, output, title=title,
                        settings=ReportSettings(**{"embedding": "pca", **settings}), **options)


@pytest.fixture(scope="session")
def full_report(report_inputs, tmp_path_factory):
    """The report with every analysis output (UMAPs replaced by PCA for speed)."""
    return build(report_inputs, tmp_path_factory.mktemp("full") / "report", analysis=True)


@pytest.fixture(scope="session")
def plain_report(report_inputs, tmp_path_factory):
    """The report of the latents and the model only (analysis steps not run)."""
    return build(report_inputs, tmp_path_factory.mktemp("plain") / "report", analysis=False, title="screen2",
                 max_points=500)
