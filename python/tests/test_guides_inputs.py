"""`pertcontrast assign-guides` on the files Cell Ranger writes (made here in its exact
layouts) and on separate guide matrices and calls tables: the calls against the known
answer, the outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cli_helpers import run
from guide_fixtures import (GUIDES, make_screen, write_cellranger_h5, write_guide_table, write_matrix_market,
                            write_protospacer_calls)


@pytest.fixture(scope="module")
def screen():
    return make_screen()


@pytest.fixture(scope="module")
def files(screen, tmp_path_factory) -> Path:
    """Every input format of the same screen, in one folder."""
    folder = tmp_path_factory.mktemp("cellranger")
    write_cellranger_h5(folder / "filtered_feature_bc_matrix.h5", screen)
    write_matrix_market(folder / "filtered_feature_bc_matrix", screen)
    write_cellranger_h5(folder / "gex_only.h5", screen, with_guides=False)
    write_protospacer_calls(folder / "protospacer_calls_per_cell.csv", screen)
    write_guide_table(folder / "guides.csv")
    expression = ad.AnnData(screen.expression.astype(np.float32), obs=pd.DataFrame(index=screen.barcodes),
                            var=pd.DataFrame(index=screen.genes))
    expression.write_h5ad(folder / "expression.h5ad")
    umis = pd.DataFrame(screen.guide_umis.toarray(), index=screen.barcodes, columns=screen.guides)
    umis.T.to_csv(folder / "guide_by_cell.csv")  # guides as rows, as a guide x cell matrix is written
    umis.to_csv(folder / "cell_by_guide.tsv", sep="\t")
    ad.AnnData(screen.guide_umis.astype(np.float32), obs=pd.DataFrame(index=screen.barcodes),
               var=pd.DataFrame(index=screen.guides)).write_h5ad(folder / "guides.h5ad")
    calls = [(b, g) for b, called in zip(screen.barcodes, screen.truth["guide"]) for g in called.split("|") if g]
    pd.DataFrame(calls, columns=["cell", "guide"]).to_csv(folder / "cell_guide.csv", index=False)
    return folder


def assign(files: Path, out: Path, counts: str, *extra: str):
    code, output = run(["assign-guides", str(files / counts), "--guide-table", str(files / "guides.csv"),
                        "--output", str(out / "screen.guides.h5ad"), *extra])
    return code, output


INPUTS = {
    "cellranger-h5": ("filtered_feature_bc_matrix.h5",),
    "matrix-market": ("filtered_feature_bc_matrix",),
    "protospacer-calls": ("gex_only.h5", "--guides", "protospacer_calls_per_cell.csv"),
    "cell-guide-table": ("expression.h5ad", "--guides", "cell_guide.csv"),
    "guide-by-cell-csv": ("expression.h5ad", "--guides", "guide_by_cell.csv"),
    "cell-by-guide-tsv": ("gex_only.h5", "--guides", "cell_by_guide.tsv"),
    "guide-h5ad": ("expression.h5ad", "--guides", "guides.h5ad"),
}


@pytest.mark.parametrize("source", INPUTS, ids=list(INPUTS))
def test_every_input_format_gives_the_known_answer(files, screen, tmp_path, source):
    counts, *extra = INPUTS[source]
    extra = [str(files / e) if not e.startswith("--") else e for e in extra]
    code, output = assign(files, tmp_path, counts, *extra)
    assert code == 0, output
    cells = pd.read_csv(tmp_path / "guide_qc" / "cells.csv.gz", index_col="cell", keep_default_na=False)
    truth = screen.truth
    assert cells.index.tolist() == screen.barcodes
    assert cells["guide"].tolist() == truth["guide"].tolist()
    assert cells["assignment"].tolist() == truth["assignment"].tolist()
    assert cells["perturbation"].tolist() == truth["perturbation"].tolist()
    kept = ad.read_h5ad(tmp_path / "screen.guides.h5ad")
    wanted = truth[truth["perturbation"] != ""]
    assert kept.obs_names.tolist() == wanted.index.tolist()
    assert kept.obs["perturbation"].astype(str).tolist() == wanted["perturbation"].tolist()
    assert kept.var_names.tolist() == screen.genes  # Gene Expression only
    assert np.array_equal(kept.X.toarray(), screen.expression[np.flatnonzero(truth["perturbation"] != "")].toarray())


def test_outputs_hold_the_calls_the_qc_tables_and_the_knockdown(files, screen, tmp_path):
    code, output = assign(files, tmp_path, "filtered_feature_bc_matrix.h5")
    assert code == 0, output
    truth = screen.truth
    n_excluded = int(((truth["assignment"] == "multiple") & (truth["perturbation"] == "")).sum())
    assert f"{n_excluded:,} with several targets (excluded)" in output
    kept = ad.read_h5ad(tmp_path / "screen.guides.h5ad")
    for column in ("guide", "guide_umis", "guide_umis_total", "n_guides", "assignment", "guide_class", "perturbation"):
        assert column in kept.obs, column
    assert set(kept.obs["guide_class"].astype(str)) == {"targeting", "non-targeting", "safe-targeting"}
    assert (kept.obs.loc[kept.obs["n_guides"] > 1, "assignment"] == "multiple").all()
    assert kept.uns["pertcontrast_guides"]["summary"]["cells_kept"] == kept.n_obs
    qc = tmp_path / "guide_qc"
    assert {p.name for p in qc.iterdir()} == {"guides.csv", "perturbations.csv", "control_kinds.csv",
                                             "cells.csv.gz", "summary.json"}
    guides = pd.read_csv(qc / "guides.csv", keep_default_na=False).set_index("guide")
    assert guides.index.tolist() == list(GUIDES)
    assert (guides["threshold_method"] == "mixture").all()
    assert guides["threshold"].between(3, 25).all()
    single = truth[truth["assignment"] == "single"]["guide"].value_counts()
    assert guides["cells_single"].to_dict() == single.reindex(guides.index).fillna(0).astype(int).to_dict()
    assert guides.loc[["MYC_1", "MYC_2", "LMO2_1"], "knockdown"].tolist() == ["knockdown"] * 3
    assert guides.loc["LMO2_2", "knockdown"] == "no knockdown"  # the ineffective guide is flagged
    assert guides.loc["GATA1_1", "knockdown"] == "target not in data"
    assert guides.loc[["NT_1", "SAFE_1"], "knockdown"].tolist() == ["control", "control"]
    assert float(guides.loc["MYC_1", "log2fc"]) < -1.5
    perturbations = pd.read_csv(qc / "perturbations.csv", keep_default_na=False).set_index("perturbation")
    labels = truth.loc[truth["perturbation"] != "", "perturbation"].value_counts()
    assert perturbations["cells"].to_dict() == labels.to_dict()
    assert perturbations.loc["MYC", "knockdown"] == "knockdown"
    kinds = pd.read_csv(qc / "control_kinds.csv")
    assert set(kinds["control_kind"]) == {"non-targeting", "safe-targeting"}
    assert (kinds["genes_different"] == 0).all()  # the fixture's controls have the same expression
    summary = json.loads((qc / "summary.json").read_text())
    assert summary["guides_without_knockdown"] == 1 and summary["multiple_targets"] == n_excluded


def test_combine_keeps_cells_of_several_targets_as_a_combined_label(files, screen, tmp_path):
    code, output = assign(files, tmp_path, "filtered_feature_bc_matrix.h5", "--multiple-targets", "combine",
                          "--perturbation-key", "gene_target")
    assert code == 0, output
    kept = ad.read_h5ad(tmp_path / "screen.guides.h5ad")
    truth = screen.truth[screen.truth["assignment"] != "none"]
    assert kept.obs_names.tolist() == truth.index.tolist()
    assert kept.obs["gene_target"].astype(str).tolist() == truth["labels"].tolist()
    assert "LMO2+MYC" in set(kept.obs["gene_target"].astype(str))


def test_without_a_class_column_a_guide_needs_a_target(files, tmp_path):
    table = write_guide_table(tmp_path / "guides.csv", with_class=False)
    code, output = run(["assign-guides", str(files / "filtered_feature_bc_matrix.h5"), "--guide-table", str(table),
                        "--output", str(tmp_path / "o.h5ad")])
    assert code == 1
    assert output.strip().splitlines()[-1].startswith("Error: guides.csv row 7, column 'target': empty target")


@pytest.mark.parametrize(("args", "message"), [
    (["gex_only.h5"], "gex_only.h5: no 'CRISPR Guide Capture' features; give the guide UMIs or calls with --guides"),
    (["gex_only.h5", "--guides", "bad_calls.csv"],
     "bad_calls.csv row 3, column 'num_umis': 1 UMI counts for 2 guides in 'feature_call'"),
    (["gex_only.h5", "--guides", "other_guides.csv"], "none of its 2 guides is in the guide table"),
    (["gex_only.h5", "--guides", "other_cells.csv"], "no cell barcode is a cell of"),
    (["gex_only.h5", "--guides", "broken.h5"], "broken.h5: cannot be read as a count file"),
    (["gex_only.h5", "--guides", "protospacer_calls_per_cell.csv", "--min-guide-fraction", "2"],
     "--min-guide-fraction must be between 0 and 1"),
])
def test_bad_input_stops_with_one_line(files, tmp_path, args, message):
    pd.DataFrame({"cell_barcode": ["A-1", "B-1"], "num_features": [1, 2], "feature_call": ["MYC_1", "MYC_1|NT_1"],
                  "num_umis": ["10", "12"]}).to_csv(files / "bad_calls.csv", index=False)
    pd.DataFrame({"cell": ["A-1"], "guide": ["X_1|Y_2"]}).to_csv(files / "other_guides.csv", index=False)
    pd.DataFrame({"cell": ["TTTT-1"], "guide": ["MYC_1"]}).to_csv(files / "other_cells.csv", index=False)
    (files / "broken.h5").write_bytes(b"not an hdf5 file")
    counts, *extra = args
    code, output = assign(files, tmp_path, counts, *[str(files / a) if a.endswith((".csv", ".h5")) else a
                                                     for a in extra])
    assert code == 1
    errors = [line for line in output.strip().splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], output
    assert "Traceback" not in output
    assert not (tmp_path / "screen.guides.h5ad").exists()
