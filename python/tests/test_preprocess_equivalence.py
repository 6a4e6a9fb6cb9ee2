"""One preprocessing, three ways to the same answer: an .h5ad read from disk a block at a
time gives the in-memory result (same cells, genes, counts, obs, var and recorded
settings, whatever the block size), the same one-line errors, and an output that appears
only when complete; and the highly variable genes and cell-cycle scores are scanpy's
(scanpy is the oracle here, the package does not call it)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cli_helpers import preprocess_args, run
from pertcontrast.data.preprocess import PreprocessSettings, output, preprocess, preprocess_h5ad, rows
from pertcontrast.data.preprocess.cell_cycle import marker_phases
from pertcontrast.errors import ParameterError
from pertcontrast.io import write_h5ad_atomic


def error_line(output):
    lines = [line for line in output.strip().splitlines() if line.startswith("Error")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture()
def screen(tiny_screen):
    return tiny_screen.copy()


def with_edge_cases(screen):
    """All-zero cells and genes, a perturbation too small to keep, a rare gene."""
    X = screen.X.tolil()
    X[:3, :] = 0
    X[:, :2] = 0
    X[:, 450] = 0
    X[10, 450] = 1
    screen.X = X.tocsr()
    labels = screen.obs.perturbation.astype(str).to_numpy()
    labels[20:30] = "RARE1"
    screen.obs["perturbation"] = pd.Categorical(labels)
    return screen


def both_ways(screen, tmp_path, settings, layer=None, chunk_size=250):
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    adata = screen.copy()
    if layer:
        adata.X = adata.layers[layer]
    in_memory, report = preprocess(adata, settings, source=str(path))
    write_h5ad_atomic(in_memory, tmp_path / "memory.h5ad", compression="gzip")
    chunked_report = preprocess_h5ad(path, tmp_path / "chunked.h5ad", settings, layer=layer, chunk_size=chunk_size)
    assert chunked_report.lines() == report.lines()
    return ad.read_h5ad(tmp_path / "memory.h5ad"), ad.read_h5ad(tmp_path / "chunked.h5ad")


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list)):
        return [plain(v) for v in value]
    value = value.item() if isinstance(value, np.generic) else value
    return "nan" if isinstance(value, float) and np.isnan(value) else value


def assert_same_prepared(memory, chunked):
    assert chunked.obs_names.equals(memory.obs_names)
    assert chunked.var_names.equals(memory.var_names)
    assert isinstance(chunked.X, sp.csr_matrix) and chunked.X.dtype == np.float32
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(chunked.X, part), getattr(memory.X, part))
    pd.testing.assert_frame_equal(chunked.var, memory.var)
    pd.testing.assert_frame_equal(chunked.obs, memory.obs)  # QC columns and cell-cycle scores too
    assert plain(chunked.uns["pertcontrast"]) == plain(memory.uns["pertcontrast"])
    assert chunked.uns.keys() == memory.uns.keys()


def assert_cell_cycle_scored(prepared):
    assert {"S_score", "G2M_score", "phase"} <= set(prepared.obs)
    assert list(prepared.obs.phase.cat.categories) == ["G1", "S", "G2M"]


def test_chunked_equals_in_memory(screen, tmp_path):
    settings = PreprocessSettings("perturbation", "control", batch_key="batch", n_top_genes=300)
    memory, chunked = both_ways(screen, tmp_path, settings)
    assert_same_prepared(memory, chunked)
    assert_cell_cycle_scored(chunked)
    assert chunked.var.highly_variable.sum() == 300


def test_chunked_equals_in_memory_with_dropped_cells_genes_and_perturbations(screen, tmp_path):
    settings = PreprocessSettings("perturbation", "control", n_top_genes=200, min_cells_per_gene=3)
    memory, chunked = both_ways(with_edge_cases(screen), tmp_path, settings, chunk_size=97)
    assert_same_prepared(memory, chunked)
    assert_cell_cycle_scored(chunked)
    report = chunked.uns["pertcontrast"]["report"]
    assert report["dropped_empty_cells"] == 3 and report["dropped_empty_genes"] == 2
    assert report["dropped_rare_genes"] >= 1 and "RARE1" in report["dropped_perturbations"]


def test_one_block_and_blocks_of_one_cell_give_the_same_file(screen, tmp_path):
    settings = PreprocessSettings("perturbation", "control", n_top_genes=100, min_control_cells=20)
    path = tmp_path / "in.h5ad"
    screen[:300].copy().write_h5ad(path)
    preprocess_h5ad(path, tmp_path / "one.h5ad", settings, chunk_size=10_000)
    preprocess_h5ad(path, tmp_path / "many.h5ad", settings, chunk_size=1)
    one, many = ad.read_h5ad(tmp_path / "one.h5ad"), ad.read_h5ad(tmp_path / "many.h5ad")
    assert_same_prepared(one, many)
    assert_cell_cycle_scored(many)
    in_memory, _ = preprocess(screen[:300].copy(), settings, chunk_size=7)
    pd.testing.assert_frame_equal(in_memory.obs, one.obs)


def test_dense_counts_a_layer_and_obsm_are_handled_like_in_memory(screen, tmp_path):
    screen.layers["counts"] = screen.X.copy()
    screen.X = screen.X.toarray()
    screen.X[:, 5] = 0.5  # X is not counts here: --layer counts is
    screen.obsm["X_embedding"] = np.arange(screen.n_obs * 3, dtype=np.float32).reshape(-1, 3)
    settings = PreprocessSettings("perturbation", "control", n_top_genes=150)
    memory, chunked = both_ways(screen, tmp_path, settings, layer="counts")
    assert_same_prepared(memory, chunked)
    assert (chunked.layers["counts"] != memory.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(chunked.obsm["X_embedding"], memory.obsm["X_embedding"])

    dense = screen.copy()
    dense.X = dense.layers["counts"].toarray()
    del dense.layers["counts"]
    memory, chunked = both_ways(dense, tmp_path, settings)
    assert_same_prepared(memory, chunked)


def test_gene_ids_skip_cell_cycle_scoring_like_in_memory(screen, tmp_path):
    screen.var["symbol"] = screen.var_names.to_numpy()
    screen.var_names = [f"ENSG{i:011d}" for i in range(screen.n_vars)]
    memory, chunked = both_ways(screen, tmp_path, PreprocessSettings("perturbation", "control", n_top_genes=100))
    assert_same_prepared(memory, chunked)
    assert "phase" not in chunked.obs
    settings = PreprocessSettings("perturbation", "control", n_top_genes=100, gene_symbol_key="symbol")
    memory, chunked = both_ways(screen, tmp_path, settings)
    assert_same_prepared(memory, chunked)
    assert_cell_cycle_scored(chunked)


def scanpy_reference(screen, prepared, n_top_genes):
    """scanpy on the cells and genes preprocessing kept (before gene selection): seurat_v3
    ranks and the cell-cycle scores of score_genes_cell_cycle(random_state=0)."""
    import scanpy as sc

    kept = screen[prepared.obs_names].copy()
    recorded = prepared.uns["pertcontrast"]["report"]
    detected = np.asarray((kept.X > 0).sum(axis=0)).ravel()
    kept = kept[:, detected >= 3].copy()
    assert kept.n_vars == recorded["n_genes_in"] - recorded["dropped_empty_genes"] - recorded["dropped_rare_genes"]
    kept.X = sp.csr_matrix(kept.X, dtype=np.float32)
    hvg = sc.pp.highly_variable_genes(kept, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False, span=0.3)
    sc.pp.normalize_total(kept, target_sum=1e4)
    sc.pp.log1p(kept)
    phases = marker_phases(pd.Series(kept.var_names.astype(str)))
    sc.tl.score_genes_cell_cycle(kept, s_genes=kept.var_names[(phases == "S").to_numpy()].tolist(),
                                 g2m_genes=kept.var_names[(phases == "G2M").to_numpy()].tolist(), random_state=0)
    return hvg, kept.obs


@pytest.mark.parametrize("edge_cases", [False, True])
def test_highly_variable_genes_and_cell_cycle_scores_are_scanpys(screen, tmp_path, edge_cases):
    screen = with_edge_cases(screen) if edge_cases else screen
    settings = PreprocessSettings("perturbation", "control", batch_key="batch", n_top_genes=200)
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    preprocess_h5ad(path, tmp_path / "out.h5ad", settings, chunk_size=113)
    prepared = ad.read_h5ad(tmp_path / "out.h5ad")
    hvg, scored = scanpy_reference(screen, prepared, 200)
    np.testing.assert_array_equal(prepared.var["highly_variable_rank"], hvg.loc[prepared.var_names, "highly_variable_rank"])
    assert set(hvg.index[hvg["highly_variable"]]) <= set(prepared.var_names)
    assert prepared.var["highly_variable"].sum() == 200
    for column in ("S_score", "G2M_score"):
        np.testing.assert_allclose(prepared.obs[column], scored[column], rtol=0, atol=1e-12)
    assert (prepared.obs["phase"].astype(str) == scored["phase"].astype(str)).all()


def corrupt(kind, screen):
    if kind == "log-normalised":
        screen.X = screen.X.copy()
        screen.X.data = np.log1p(screen.X.data)
    elif kind == "negative":
        screen.X = screen.X.copy()
        screen.X.data[-1] = -3  # in the last chunk
    elif kind == "nan":
        screen.X = screen.X.copy()
        screen.X.data[5] = np.nan
    elif kind == "duplicate cells":
        names = screen.obs_names.to_numpy().copy()
        names[1] = names[0]
        screen.obs_names = names
    elif kind == "empty":
        screen = screen[:0].copy()
    elif kind == "missing values":
        batch = screen.obs.batch.astype(object).to_numpy()
        batch[7] = None
        screen.obs["batch"] = batch
    return screen


@pytest.mark.parametrize(
    ("kind", "extra", "fragment"),
    [
        ("log-normalised", [], "log-normalised"),
        ("negative", [], "negative values"),
        ("nan", [], "NaN or infinite"),
        ("duplicate cells", [], "duplicate cell names"),
        ("empty", [], "0 cells"),
        ("missing values", ["--batch-key", "batch"], "is empty for 1 cells"),
        (None, ["--perturbation-key", "perturbaton"], "Did you mean 'perturbation'"),
        (None, ["--control-label", "Control_NT"], "control label 'Control_NT' not found"),
        (None, ["--min-control-cells", "100000"], "at least 100000"),
        (None, ["--batch-key", "lane"], "no covariate column 'lane'"),
        (None, ["--continuous-covariate", "age"], "no covariate column 'age'"),
        (None, ["--gene-symbol-key", "symbol"], "var has no column 'symbol'"),
        (None, ["--layer", "counts"], "no layer 'counts'"),
    ],
)
def test_chunked_errors_read_like_in_memory(screen, tmp_path, kind, extra, fragment):
    path = tmp_path / "in.h5ad"
    corrupt(kind, screen).write_h5ad(path)
    outputs = {}
    for mode in ("--in-memory", "--chunked"):
        code, output = run(preprocess_args(path, tmp_path / "o.h5ad", mode, "--chunk-size", "100", *extra))
        assert code == 1, output
        outputs[mode] = error_line(output)
    assert outputs["--chunked"] == outputs["--in-memory"]
    assert fragment in outputs["--chunked"]
    assert not (tmp_path / "o.h5ad").exists()


def test_too_few_controls_after_qc(screen, tmp_path):
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    outputs = {}
    for mode in ("--in-memory", "--chunked"):
        code, output = run(preprocess_args(path, tmp_path / "o.h5ad", mode, "--min-counts", "8000",
                                           "--max-qc-drop", "1"))
        assert code == 1, output
        outputs[mode] = error_line(output)
    assert outputs["--chunked"] == outputs["--in-memory"]
    assert "(after QC)" in outputs["--chunked"] and "control cells" in outputs["--chunked"]


def test_truncated_file_and_non_h5ad_input(screen, tmp_path):
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    path.write_bytes(path.read_bytes()[:5000])
    code, output = run(preprocess_args(path, tmp_path / "o.h5ad", "--chunked"))
    assert code == 1 and "truncated or corrupt" in error_line(output)
    folder = tmp_path / "mtx"
    folder.mkdir()
    with pytest.raises(ParameterError, match=r"use chunked=False for 10x"):
        preprocess_h5ad(folder, tmp_path / "o.h5ad", PreprocessSettings("perturbation", "control"))


def test_output_appears_only_when_complete(screen, tmp_path, monkeypatch):
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    out = tmp_path / "out" / "prepared.h5ad"
    out.parent.mkdir()
    out.write_bytes(b"previous result")

    def fail(*args, **kwargs):
        raise RuntimeError("killed while writing obs")

    monkeypatch.setattr(output, "_write_obs", fail)
    with pytest.raises(RuntimeError, match="killed"):
        preprocess_h5ad(path, out, PreprocessSettings("perturbation", "control", n_top_genes=100), chunk_size=300)
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in out.parent.iterdir()] == ["prepared.h5ad"]  # no temporary left behind

    monkeypatch.undo()
    preprocess_h5ad(path, out, PreprocessSettings("perturbation", "control", n_top_genes=100), chunk_size=300)
    assert ad.read_h5ad(out).n_vars >= 100
    assert [p.name for p in out.parent.iterdir()] == ["prepared.h5ad"]


def test_auto_mode_reads_large_h5ad_from_disk_only(screen, tmp_path, monkeypatch):
    path = tmp_path / "in.h5ad"
    screen.write_h5ad(path)
    code, log = run(preprocess_args(path, tmp_path / "a.h5ad", "--n-top-genes", "100"))
    assert code == 0 and "from disk" not in log and "pass 4/5" in log
    monkeypatch.setattr(rows, "IN_MEMORY_LIMIT_BYTES", 1000)
    code, log = run(preprocess_args(path, tmp_path / "b.h5ad", "--n-top-genes", "100", "--chunk-size", "500"))
    assert code == 0, log
    assert "preprocessing from disk (500 cells per block)" in log and "pass 5/5" in log
    assert_same_prepared(ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad"))
    assert rows.in_memory_bytes(path) == screen.X.nnz * 8
