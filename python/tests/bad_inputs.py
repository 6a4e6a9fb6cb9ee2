"""The bad inputs of the catalogue (test_bad_inputs.py): files a user could plausibly hand
each command, made from the tiny fixtures, and the model folder variants."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from guide_fixtures import make_screen, write_cellranger_h5, write_guide_table


class Tampered:
    """An object that ``weights_only`` loading refuses (a pickle with a class)."""


def _variant(base: ad.AnnData, path: Path, change) -> Path:
    adata = base.copy()
    adata.obs = adata.obs.copy()
    change(adata)
    adata.write_h5ad(path)
    return path


def _set_labels(column: str, rows, value):
    def change(adata):
        values = adata.obs[column].astype(object).to_numpy()
        values[rows] = value
        adata.obs[column] = values
    return change


def make_h5ad_variants(raw: ad.AnnData, folder: Path) -> dict[str, Path]:
    """Bad count files: each breaks one thing a screen must have."""
    raw = raw[:400].copy()
    labels = raw.obs["perturbation"].astype(str)
    controls = np.flatnonzero(labels == "control")
    files = {"raw": folder / "raw.h5ad"}
    raw.write_h5ad(files["raw"])

    def dense(adata, values):
        adata.X = sp.csr_matrix(values)

    counts = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    files["lognorm"] = _variant(raw, folder / "lognorm.h5ad", lambda a: dense(a, np.log1p(counts) + 0.01))
    files["negative"] = _variant(raw, folder / "negative.h5ad", lambda a: dense(a, counts - 1.0))
    nan = counts.astype(float)
    nan[0, 0] = np.nan
    files["nan"] = _variant(raw, folder / "nan.h5ad", lambda a: dense(a, nan))
    files["dup_genes"] = _variant(raw, folder / "dup_genes.h5ad",
                                  lambda a: setattr(a, "var_names", pd.Index(["g"] * 2 + list(a.var_names[2:]))))
    files["dup_cells"] = _variant(raw, folder / "dup_cells.h5ad",
                                  lambda a: setattr(a, "obs_names", pd.Index(["c"] * 2 + list(a.obs_names[2:]))))
    files["no_column"] = _variant(raw, folder / "no_column.h5ad", lambda a: a.obs.drop(columns="perturbation",
                                                                                      inplace=True))
    files["blank_labels"] = _variant(raw, folder / "blank_labels.h5ad", _set_labels("perturbation", [1, 5], ""))
    files["space_labels"] = _variant(raw, folder / "space_labels.h5ad",
                                     _set_labels("perturbation", controls[:3], "  "))
    files["nan_labels"] = _variant(raw, folder / "nan_labels.h5ad", _set_labels("perturbation", [2], np.nan))
    files["no_controls"] = _variant(raw, folder / "no_controls.h5ad",
                                    _set_labels("perturbation", controls, "ctrl_renamed"))
    files["few_controls"] = _variant(raw, folder / "few_controls.h5ad",
                                     _set_labels("perturbation", controls[5:], "P_extra"))
    only = np.flatnonzero(labels != "control")
    files["only_controls"] = _variant(raw, folder / "only_controls.h5ad", _set_labels("perturbation", only, "control"))
    files["text_covariate"] = _variant(raw, folder / "text_covariate.h5ad",
                                       lambda a: a.obs.__setitem__("depth", ["x"] * a.n_obs))
    files["blank_batch"] = _variant(raw, folder / "blank_batch.h5ad", _set_labels("batch", [0], ""))
    files["empty"] = _variant(raw, folder / "empty_cells.h5ad", lambda a: None)
    raw[:0].copy().write_h5ad(files["empty"])
    files["truncated"] = folder / "truncated.h5ad"
    files["truncated"].write_bytes(files["raw"].read_bytes()[:4096])
    files["zero_bytes"] = folder / "zero_bytes.h5ad"
    files["zero_bytes"].write_bytes(b"")
    files["text_h5ad"] = folder / "text.h5ad"
    files["text_h5ad"].write_text("cell,gene,count\nc1,g1,3\n")
    files["no_x"] = folder / "no_x.h5ad"
    with h5py.File(files["no_x"], "w") as f:
        f.create_group("obs")
    files["csv"] = folder / "counts.csv"
    files["csv"].write_text("cell,g1\nc1,3\n")
    return files


def make_10x_variants(folder: Path) -> dict[str, Path]:
    screen = make_screen(n_cells=120, n_genes=30)
    files = {"h5": write_cellranger_h5(folder / "filtered.h5", screen)}
    files["h5_no_data"] = folder / "no_data.h5"
    shutil.copy(files["h5"], files["h5_no_data"])
    with h5py.File(files["h5_no_data"], "r+") as f:
        del f["matrix"]["data"]
    files["h5_no_matrix"] = folder / "no_matrix.h5"
    with h5py.File(files["h5_no_matrix"], "w") as f:
        f.create_group("other")
    files["h5_text"] = folder / "text.h5"
    files["h5_text"].write_text("not hdf5\n")
    files["mtx_empty"] = folder / "mtx_empty"
    files["mtx_empty"].mkdir()
    files["guide_table"] = write_guide_table(folder / "guides.csv")
    files["no_guides_h5"] = write_cellranger_h5(folder / "no_guides.h5", screen, with_guides=False)
    bad = pd.read_csv(files["guide_table"])
    files["guides_bad_class"] = folder / "guides_bad_class.csv"
    bad.assign(**{"class": ["scrambled"] * len(bad)}).to_csv(files["guides_bad_class"], index=False)
    files["guides_no_target"] = folder / "guides_no_target.csv"
    bad.drop(columns="target").to_csv(files["guides_no_target"], index=False)
    files["guides_latin1"] = folder / "guides_latin1.csv"
    files["guides_latin1"].write_bytes("guide,target\ng\xe9,A\n".encode("latin-1"))
    files["guides_dup"] = folder / "guides_dup.csv"
    pd.concat([bad, bad.iloc[:1]]).to_csv(files["guides_dup"], index=False)
    files["guides_other"] = folder / "guides_other.csv"
    bad.assign(guide=[f"zz{i}" for i in range(len(bad))]).to_csv(files["guides_other"], index=False)
    return files


def make_model_variants(model: Path, folder: Path) -> dict[str, Path]:
    """Model folders damaged one way each."""
    variants = {}

    def variant(name: str, change) -> None:
        target = folder / f"model_{name}"
        shutil.copytree(model, target)
        change(target)
        variants[name] = target

    def edit_config(update):
        def change(target):
            config = json.loads((target / "config.json").read_text())
            update(config)
            (target / "config.json").write_text(json.dumps(config))
        return change

    variant("no_config", lambda t: (t / "config.json").unlink())
    variant("no_weights", lambda t: (t / "model.pt").unlink())
    variant("config_not_json", lambda t: (t / "config.json").write_text("{architecture: "))
    variant("config_list", lambda t: (t / "config.json").write_text("[1, 2]"))
    variant("format_99", edit_config(lambda c: c.update(format_version=99)))
    variant("format_text", edit_config(lambda c: c.update(format_version="two")))
    variant("genes_short", edit_config(lambda c: c["registry"].update(gene_names=c["registry"]["gene_names"][:-5])))
    variant("genes_dup", edit_config(lambda c: c["registry"]["gene_names"].__setitem__(1, c["registry"]["gene_names"][0])))
    variant("arch_bigger", edit_config(lambda c: c["architecture"].update(n_hidden=c["architecture"]["n_hidden"] * 2)))
    variant("arch_bad_likelihood", edit_config(lambda c: c["architecture"].update(likelihood="poisson")))
    variant("no_registry", edit_config(lambda c: c.pop("registry")))
    variant("weights_truncated", lambda t: (t / "model.pt").write_bytes((t / "model.pt").read_bytes()[:200]))
    variant("weights_text", lambda t: (t / "model.pt").write_text("weights"))
    variant("weights_tampered", lambda t: torch.save({"x": Tampered()}, t / "model.pt"))
    variant("weights_pickle", lambda t: (t / "model.pt").write_bytes(pickle.dumps({"a": Tampered()})))
    variant("history_empty", lambda t: (t / "history.csv").write_text(""))
    variant("history_garbage", lambda t: (t / "history.csv").write_text("no,epochs\n"))
    variant("split_corrupt", lambda t: (t / "cell_split.csv.gz").write_bytes(b"\x1f\x8b\x08garbage"))
    variant("registry_corrupt", lambda t: (t / "registry.json").write_text("{not json"))
    variant("registry_list", lambda t: (t / "registry.json").write_text("[]"))
    empty = folder / "model_empty"
    empty.mkdir()
    variants["empty"] = empty
    return variants


def other_genes(prepared: Path, path: Path) -> Path:
    adata = ad.read_h5ad(prepared)
    adata.var_names = [f"other{i}" for i in range(adata.n_vars)]
    adata.write_h5ad(path)
    return path


def other_cells(step_output: Path, path: Path) -> Path:
    adata = ad.read_h5ad(step_output)
    adata = adata[: adata.n_obs // 2].copy()
    adata.obs_names = [f"x{name}" for name in adata.obs_names]
    adata.write_h5ad(path)
    return path


def write_samplesheets(folder: Path, h5ad: Path) -> dict[str, Path]:
    header = "id,h5ad,perturbation_key,control_label\n"
    row = f"s1,{h5ad},perturbation,control\n"
    sheets = {
        "latin1": (header + "scr\xe9en," + row[3:]).encode("latin-1"),
        "utf16_damaged": b"\xff\xfe" + (header + row).encode("utf-16-le")[:-1],
        "nul": (header + row).encode().replace(b"s1", b"s\x001"),
        "huge_field": (header + 's1,"' + "a" * 200_000 + '",perturbation,control\n').encode(),
        "empty": b"",
        "header_only": header.encode(),
        "missing_column": b"id,h5ad\ns1," + str(h5ad).encode() + b"\n",
        "unknown_column": (header.rstrip() + ",colour\n" + row.rstrip() + ",red\n").encode(),
        "duplicate_id": (header + row + row).encode(),
        "missing_file": (header + "s1,/nonexistent/x.h5ad,perturbation,control\n").encode(),
        "bad_id": (header + "s 1!," + row[3:]).encode(),
        "empty_value": (header + f"s1,{h5ad},,control\n").encode(),
        "unclosed_quote": (header + 's1,"' + str(h5ad) + ",perturbation,control\n").encode(),
    }
    paths = {}
    for name, data in sheets.items():
        paths[name] = folder / f"sheet_{name}.csv"
        paths[name].write_bytes(data)
    return paths
