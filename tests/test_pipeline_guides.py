"""The pipeline from Cell Ranger output, for real: a filtered_feature_bc_matrix.h5 with Gene
Expression and CRISPR Guide Capture, a guide table and a samplesheet; no code from the user.
ASSIGN_GUIDES calls the guides, PREPROCESS and the rest run on its output, and the report
shows the guide QC."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

LOCAL_CONFIG = "process.resourceLimits = [cpus: 1, memory: 6.GB, time: 1.h]\n"
SCREEN = "cellranger_screen"


def guide_fixtures(repo: Path):
    """python/tests/guide_fixtures.py: writes Cell Ranger's layouts (shared with the package tests)."""
    spec = importlib.util.spec_from_file_location("guide_fixtures", repo / "python" / "tests" / "guide_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(run_nextflow, repo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cellranger_run")
    data = folder / "data"
    data.mkdir()
    subprocess.run([str(Path(sys.executable).parent / "pertcontrast"), "simulate", "--preset", "tiny", "--seed", "5",
                    "--output", str(folder / "simulated.h5ad")],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    fixtures = guide_fixtures(repo)
    screen, table = fixtures.screen_from_simulated(ad.read_h5ad(folder / "simulated.h5ad"), seed=5)
    fixtures.write_cellranger_h5(data / "filtered_feature_bc_matrix.h5", screen)
    table.to_csv(data / "guides.csv", index=False)
    (folder / "samplesheet.csv").write_text(
        "id,h5ad,perturbation_key,control_label,guide_table\n"
        f"{SCREEN},data/filtered_feature_bc_matrix.h5,perturbation,non-targeting,data/guides.csv\n")
    (folder / "local.config").write_text(LOCAL_CONFIG)
    result = run_nextflow(["run", str(repo), "-c", "local.config", "--input", "samplesheet.csv", "--outdir", "results",
                           "--max_epochs", "2", "--n_top_genes", "300", "--skip_analysis", "--report_embedding", "pca"],
                          folder)
    assert result.returncode == 0, result.output[-5000:]
    return result, screen


def test_guides_are_assigned_before_preprocessing(run):
    result, _ = run
    statuses = result.statuses()
    for step in ("SAMPLESHEET_CHECK", "ASSIGN_GUIDES", "PREPROCESS", "TRAIN", "EXPORT", "REPORT", "SUMMARY"):
        assert statuses[step] == ["COMPLETED"], step


def test_assigned_screen_matches_the_known_answer(run):
    result, screen = run
    folder = result.outdir / SCREEN / "guides"
    cells = pd.read_csv(folder / "guide_qc" / "cells.csv.gz", index_col="cell", keep_default_na=False)
    truth = screen.truth
    assert (cells["guide"] == truth["guide"]).mean() >= 0.99
    assert (cells["perturbation"] == truth["perturbation"]).mean() >= 0.99
    prepared = ad.read_h5ad(result.outdir / SCREEN / "prepared" / f"{SCREEN}.prepared.h5ad", backed="r")
    labels = prepared.obs["perturbation"].astype(str)
    assert (labels == "non-targeting").sum() > 50
    assert set(labels) <= set(truth["perturbation"]) - {""}
    assert (prepared.obs["guide_class"].astype(str) == "non-targeting").sum() == (labels == "non-targeting").sum()


def test_report_shows_the_guide_qc(run):
    result, _ = run
    html = (result.outdir / SCREEN / "report" / f"{SCREEN}.report.html").read_text()
    section = html.split('<section id="guides">')[1].split("</section>")[0]
    assert "Not run" not in section
    assert 'id="guide-qc-table"' in section and 'id="perturbation-qc-table"' in section
    guides = pd.read_csv(result.outdir / SCREEN / "guides" / "guide_qc" / "guides.csv")
    assert (guides.loc[guides["class"] == "targeting", "knockdown"].isin(["knockdown", "target barely detected"])).all()
    assert 'data-figure="guide_knockdown"' in section
