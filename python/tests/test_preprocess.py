"""`pertcontrast preprocess`: each bad input gives one clear line naming the problem; good
input is prepared with counts kept raw and sparse."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cli_helpers import preprocess_args, run


@pytest.fixture()
def screen(tiny_screen):
    return tiny_screen.copy()


def write(adata, tmp_path, name="in.h5ad"):
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def assert_one_line_error(code, output, *fragments):
    assert code != 0
    lines = [l for l in output.strip().splitlines() if l.startswith("Error")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_prepares_a_screen(screen, tmp_path):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "out.h5ad", "--batch-key", "batch",
                                       "--n-top-genes", "300"))
    assert code == 0, output
    prepared = ad.read_h5ad(tmp_path / "out.h5ad")
    assert sp.isspmatrix_csr(prepared.X) or isinstance(prepared.X, sp.csr_matrix)
    assert np.all(prepared.X.data == np.round(prepared.X.data))
    assert 300 <= prepared.n_vars <= 300 + screen.obs.perturbation.nunique()
    assert prepared.var.loc[prepared.var.is_perturbation_target].shape[0] >= 5
    assert {"total_counts", "n_genes_by_counts", "pct_counts_mt", "S_score", "G2M_score", "phase"} <= set(prepared.obs)
    recorded = prepared.uns["pertcontrast"]["settings"]
    assert recorded["perturbation_key"] == "perturbation" and recorded["batch_key"] == "batch"
    assert list(recorded["categorical_covariate_keys"]) == ["batch"]
    # the called phase agrees with the simulated truth far above chance
    agreement = (prepared.obs.phase.astype(str) == prepared.obs.truth_phase.astype(str)).mean()
    assert agreement > 0.6


def test_refuses_log_normalised_counts(screen, tmp_path):
    screen.X = screen.X.copy()
    screen.X.data = np.log1p(screen.X.data)
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "in.h5ad", "non-integer", "log-normalised", "raw UMI counts")


def test_refuses_negative_values(screen, tmp_path):
    screen.X = screen.X.copy()
    screen.X.data[0] = -3
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "negative values", "scaled")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_nan_and_infinite_values(screen, tmp_path, bad):
    screen.X = screen.X.copy()
    screen.X.data[5] = bad
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "NaN or infinite")


def test_refuses_an_empty_matrix(screen, tmp_path):
    empty = screen[:0].copy()
    code, output = run(preprocess_args(write(empty, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "empty", "0 cells")


def test_missing_perturbation_column_suggests_the_close_one(screen, tmp_path):
    code, output = run(["preprocess", str(write(screen, tmp_path)), "--perturbation-key", "perturbaton",
                        "--control-label", "control", "--output", str(tmp_path / "o.h5ad")])
    assert_one_line_error(code, output, "no perturbation column 'perturbaton'", "Did you mean 'perturbation'", "--perturbation-key")


def test_absent_control_label_suggests_close_matches(screen, tmp_path):
    code, output = run(["preprocess", str(write(screen, tmp_path)), "--perturbation-key", "perturbation",
                        "--control-label", "Control_NT", "--output", str(tmp_path / "o.h5ad")])
    assert_one_line_error(code, output, "control label 'Control_NT' not found", "'control'", "--control-label")


def test_too_few_control_cells(screen, tmp_path):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--min-control-cells", "100000"))
    assert_one_line_error(code, output, "control cells", "at least 100000")


def test_missing_batch_column(screen, tmp_path):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--batch-key", "lane"))
    assert_one_line_error(code, output, "no covariate column 'lane'", "--batch-key")


def test_missing_covariate_column(screen, tmp_path):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--continuous-covariate", "age"))
    assert_one_line_error(code, output, "no covariate column 'age'")


def test_duplicate_gene_names(screen, tmp_path):
    names = screen.var_names.to_numpy().copy()
    names[10] = names[11]
    screen.var_names = names
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "duplicate gene names", names[11])


def test_duplicate_cell_names(screen, tmp_path):
    names = screen.obs_names.to_numpy().copy()
    names[1] = names[0]
    screen.obs_names = names
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "duplicate cell names")


def test_all_zero_cells_and_genes_are_dropped_with_a_count(screen, tmp_path):
    X = screen.X.tolil()
    X[:3, :] = 0
    X[:, :2] = 0
    screen.X = X.tocsr()
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--n-top-genes", "200"))
    assert code == 0, output
    assert "Warning: dropped 3 all-zero cells" in output
    assert "Warning: dropped 2 all-zero genes" in output
    assert ad.read_h5ad(tmp_path / "o.h5ad").n_obs <= screen.n_obs - 3


def test_small_perturbations_are_dropped_and_reported(screen, tmp_path):
    labels = screen.obs.perturbation.astype(str).to_numpy()
    labels[:5] = "RARE1"
    screen.obs["perturbation"] = labels
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--n-top-genes", "200"))
    assert code == 0, output
    assert "RARE1" in output and "fewer than 20 cells" in output
    assert "RARE1" not in set(ad.read_h5ad(tmp_path / "o.h5ad").obs.perturbation.astype(str))


def test_gene_ids_skip_cell_cycle_scoring_or_map_through_a_symbol_column(screen, tmp_path):
    screen.var["symbol"] = screen.var_names.to_numpy()
    screen.var_names = [f"ENSG{i:011d}" for i in range(screen.n_vars)]
    path = write(screen, tmp_path)
    code, output = run(preprocess_args(path, tmp_path / "o.h5ad", "--n-top-genes", "200"))
    assert code == 0, output
    assert "Warning: cell-cycle scoring skipped" in output and "(gene_symbol_key)" in output
    assert "phase" not in ad.read_h5ad(tmp_path / "o.h5ad").obs
    code, output = run(preprocess_args(path, tmp_path / "o2.h5ad", "--n-top-genes", "200", "--gene-symbol-key", "symbol"))
    assert code == 0, output
    assert "phase" in ad.read_h5ad(tmp_path / "o2.h5ad").obs


def test_truncated_h5ad(screen, tmp_path):
    path = write(screen, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    code, output = run(preprocess_args(path, tmp_path / "o.h5ad"))
    assert_one_line_error(code, output, "in.h5ad", "truncated or corrupt")
    assert not (tmp_path / "o.h5ad").exists()


def test_out_of_range_parameters(screen, tmp_path):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--n-top-genes", "5"))
    assert_one_line_error(code, output, "--n-top-genes must be at least 10")
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / "o.h5ad", "--max-pct-mito", "150"))
    assert_one_line_error(code, output, "--max-pct-mito")


def test_reads_matrix_market_folders(screen, tmp_path):
    import gzip

    from scipy.io import mmwrite

    folder = tmp_path / "mtx"
    folder.mkdir()
    mmwrite(folder / "matrix.mtx", sp.csr_matrix(screen.X.T).astype(np.int64))
    (folder / "barcodes.tsv").write_text("\n".join(screen.obs_names) + "\n")
    (folder / "features.tsv").write_text(
        "\n".join(f"{g}\t{g}\tGene Expression" for g in screen.var_names) + "\n"
    )
    for name in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
        with open(folder / name, "rb") as src, gzip.open(folder / f"{name}.gz", "wb") as dst:
            dst.write(src.read())
        (folder / name).unlink()
    from pertcontrast.data.reading import read_anndata

    adata = read_anndata(folder)
    assert adata.shape == screen.shape
    assert (adata.X != screen.X).nnz == 0


def test_chunk_written_64_bit_indices_are_read_as_32_bit(tmp_path):
    """Files written chunk-wise carry 64-bit row pointers; scanpy/sklearn kernels (PCA)
    need 32-bit ones, so in-memory reads use them when the matrix fits."""
    from pertcontrast.data.reading import read_anndata
    from pertcontrast.analysis.predictability import log_normalised_pca

    counts = sp.random(60, 40, density=0.3, format="csr", random_state=0, dtype=np.float32)
    counts.data = np.ceil(counts.data * 5)
    counts.indptr = counts.indptr.astype(np.int64)
    counts.indices = counts.indices.astype(np.int64)
    ad.AnnData(X=counts).write_h5ad(tmp_path / "wide.h5ad")
    matrix = read_anndata(tmp_path / "wide.h5ad").X
    assert matrix.indptr.dtype == np.int32 and matrix.indices.dtype == np.int32
    assert (matrix != counts).nnz == 0
    assert log_normalised_pca(counts, n_components=5).shape == (60, 5)


# -- QC that adapts to the data ----------------------------------------------------------
def prepared_with(screen, tmp_path, *extra, name="qc.h5ad"):
    code, output = run(preprocess_args(write(screen, tmp_path), tmp_path / name, "--n-top-genes", "200", *extra))
    assert code == 0, output
    return ad.read_h5ad(tmp_path / name), output


def test_qc_drops_outliers_by_mads_within_each_batch(screen, tmp_path):
    """Shallow cells (a twentieth of their counts) fail QC; a whole batch sequenced 8x deeper
    does not, because thresholds are per batch."""
    X = screen.X.tocsr().astype(np.float32)
    in_b = (screen.obs["batch"].astype(str) == sorted(set(screen.obs["batch"].astype(str)))[1]).to_numpy()
    X = sp.diags(np.where(in_b, 8.0, 1.0).astype(np.float32)) @ X
    shallow = np.flatnonzero(~in_b)[:10]
    X = X.tolil()
    for row in shallow:
        X[row] = np.floor(X[row].toarray() / 20)
    screen.X = sp.csr_matrix(X)
    prepared, output = prepared_with(screen, tmp_path, "--batch-key", "batch")
    assert not set(screen.obs_names[shallow]) & set(prepared.obs_names)
    assert prepared.n_obs >= 0.9 * screen.n_obs
    qc = prepared.uns["pertcontrast"]["report"]["qc"]
    assert qc["failed"]["low_total_counts"] >= 10
    thresholds = qc["thresholds"]
    assert list(thresholds["batch"]) == sorted(set(screen.obs["batch"].astype(str)))
    # each batch's bounds sit around its own median: batch B's moved with its 8x depth
    centres = (np.log1p(thresholds["total_counts_min"]) + np.log1p(thresholds["total_counts_max"])) / 2
    totals = np.log1p(np.asarray(screen.X.sum(axis=1)).ravel())
    np.testing.assert_allclose(centres, [np.median(totals[~in_b]), np.median(totals[in_b])], rtol=1e-3)
    assert centres[1] - centres[0] > np.log(8)
    assert "QC: " in output and "5 MADs from the median of each 'batch'" in output
    recorded = prepared.uns["pertcontrast"]["settings"]
    assert recorded["qc_mads"] == 5 and "min_counts" not in recorded


def test_fixed_thresholds_add_to_the_mad_rule_or_replace_it(screen, tmp_path):
    totals = np.asarray(screen.X.sum(axis=1)).ravel()
    threshold = int(np.quantile(totals, 0.2))
    fixed, _ = prepared_with(screen, tmp_path, "--min-counts", str(threshold), name="fixed.h5ad")
    assert fixed.obs["total_counts"].min() >= threshold
    assert fixed.uns["pertcontrast"]["report"]["qc"]["failed"]["min_counts"] >= 0.15 * screen.n_obs
    only_fixed, _ = prepared_with(screen, tmp_path, "--qc-mads", "0", "--min-counts", str(threshold), name="o.h5ad")
    assert only_fixed.n_obs == int((totals >= threshold).sum())
    nothing, output = prepared_with(screen, tmp_path, "--qc-mads", "0", name="none.h5ad")
    assert nothing.n_obs == screen.n_obs and "0 cells failed (none); thresholds: none" in output


def test_qc_stops_when_it_would_drop_most_cells_and_names_the_way_out(screen, tmp_path):
    totals = np.asarray(screen.X.sum(axis=1)).ravel()
    threshold = str(int(np.quantile(totals, 0.6)))
    path = write(screen, tmp_path)
    code, output = run(preprocess_args(path, tmp_path / "o.h5ad", "--min-counts", threshold))
    assert_one_line_error(code, output, "QC would drop", "% of the cells (", "% of the controls (",
                          f"min counts {threshold}", "--max-qc-drop 1")
    assert not (tmp_path / "o.h5ad").exists()
    code, output = run(preprocess_args(path, tmp_path / "o.h5ad", "--min-counts", threshold, "--max-qc-drop", "1",
                                       "--n-top-genes", "200"))
    assert code == 0, output
    assert ad.read_h5ad(tmp_path / "o.h5ad").n_obs < 0.45 * screen.n_obs


def test_several_kinds_of_control_become_the_models_one_control(screen, tmp_path):
    labels = screen.obs["perturbation"].astype(str).to_numpy()
    controls = np.flatnonzero(labels == "control")
    labels[controls[::2]] = "non-targeting"
    labels[controls[1::2]] = "safe-targeting"
    screen.obs["perturbation"] = pd.Categorical(labels)
    path = write(screen, tmp_path)
    code, output = run(["preprocess", str(path), "--perturbation-key", "perturbation", "--control-label",
                        "non-targeting", "--control-label", "safe-targeting", "--n-top-genes", "200",
                        "--output", str(tmp_path / "o.h5ad")])
    assert code == 0, output
    prepared = ad.read_h5ad(tmp_path / "o.h5ad")
    is_control = prepared.obs["is_control"].to_numpy()
    assert (prepared.obs["perturbation"].astype(str)[is_control] == "control").all()
    kinds = prepared.obs["control_kind"]
    assert set(kinds[is_control].astype(str)) == {"non-targeting", "safe-targeting"} and kinds[~is_control].isna().all()
    kept_kinds = pd.Series(labels, index=screen.obs_names)[prepared.obs_names[is_control]]
    assert (kinds[is_control].astype(str).to_numpy() == kept_kinds.to_numpy()).all()
    recorded = prepared.uns["pertcontrast"]["settings"]
    assert recorded["control_label"] == "control"
    assert list(recorded["control_labels"]) == ["non-targeting", "safe-targeting"]
    code, output = run(["preprocess", str(path), "--perturbation-key", "perturbation", "--control-label",
                        "non-targeting", "--control-label", "intergenic", "--output", str(tmp_path / "x.h5ad")])
    assert_one_line_error(code, output, "control label 'intergenic' not found")


def test_fewer_genes_than_n_top_genes_keeps_them_all_and_says_so(screen, tmp_path):
    small = screen[:, :250].copy()
    code, output = run(preprocess_args(write(small, tmp_path), tmp_path / "o.h5ad"))
    assert code == 0, output
    prepared = ad.read_h5ad(tmp_path / "o.h5ad")
    report = prepared.uns["pertcontrast"]["report"]
    assert prepared.n_vars == 250 - report["dropped_empty_genes"] - report["dropped_rare_genes"]
    assert prepared.var["highly_variable"].all()
    assert "keeping all" in output and "all kept" in output
    assert "fewer than the 2000 highly variable genes asked for" in output


def test_a_real_shallow_panel_keeps_most_cells_with_defaults(tmp_path, papalexi):
    """Papalexi et al. 2021 (299 genes, median 66 genes and 186 UMIs per cell): the fixed
    whole-transcriptome thresholds kept 910 of its 16,192 confidently assigned cells."""
    screen = papalexi  # the conftest fixture: one way to find the real screen (fails, never skips)
    screen = screen[screen.obs["assign_confident"].astype(bool).to_numpy()].copy()
    code, output = run(["preprocess", str(write(screen, tmp_path)), "--perturbation-key", "perturbation",
                        "--control-label", "non-targeting", "--batch-key", "bio_rep",
                        "--output", str(tmp_path / "o.h5ad")])
    assert code == 0, output
    prepared = ad.read_h5ad(tmp_path / "o.h5ad")
    assert screen.n_obs == 16_192 and prepared.n_obs >= 0.9 * screen.n_obs
    n_controls = int((screen.obs["perturbation"] == "non-targeting").sum())
    assert prepared.obs["is_control"].sum() >= 0.9 * n_controls
    assert prepared.n_vars == 299 and "keeping all 299 genes" in output
    assert "cell-cycle scoring skipped" in output
