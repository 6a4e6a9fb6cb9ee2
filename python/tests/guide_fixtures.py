"""Screens in the formats Cell Ranger writes, made by the tests themselves: a
``filtered_feature_bc_matrix.h5`` (10x HDF5 v3, written with h5py in Cell Ranger's layout),
its MatrixMarket folder, ``protospacer_calls_per_cell.csv`` and a guide table; with the
known answer of every cell."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

GENE_EXPRESSION, GUIDE_CAPTURE = "Gene Expression", "CRISPR Guide Capture"

# guide -> (target, class); GATA1 is not a gene of the fixture, LMO2's second guide does nothing.
GUIDES = {
    "MYC_1": ("MYC", "targeting"), "MYC_2": ("MYC", "targeting"),
    "LMO2_1": ("LMO2", "targeting"), "LMO2_2": ("LMO2", "targeting"),
    "GATA1_1": ("GATA1", "targeting"),
    "NT_1": ("", "non-targeting"), "NT_2": ("", "non-targeting"),
    "SAFE_1": ("", "safe-targeting"),
}
INEFFECTIVE = {"LMO2_2"}


@dataclass
class Screen:
    barcodes: list[str]
    genes: list[str]
    expression: sp.csr_matrix  # cells x genes
    guides: list[str]
    guide_umis: sp.csr_matrix  # cells x guides
    truth: pd.DataFrame  # per cell: guides (sorted, '|'), assignment, perturbation ('' when excluded)


def make_screen(n_cells: int = 400, n_genes: int = 60, seed: int = 0) -> Screen:
    """Cells carry 0, 1 or 2 guides (carried: 25-300 UMIs; ambient: 0-2 UMIs of any guide);
    a targeting guide lowers its target gene's expression to a fifth (unless ineffective)."""
    rng = np.random.default_rng(seed)
    guides = list(GUIDES)
    kinds = rng.choice(["single", "same", "two", "none"], size=n_cells, p=[0.78, 0.06, 0.08, 0.08])
    carried = []
    for kind in kinds:
        if kind == "single":
            carried.append([rng.choice(guides)])
        elif kind == "same":
            carried.append(["MYC_1", "MYC_2"] if rng.random() < 0.5 else ["LMO2_1", "LMO2_2"])
        elif kind == "two":
            carried.append(list(rng.choice(["MYC_1", "LMO2_1", "NT_1", "SAFE_1"], size=2, replace=False)))
        else:
            carried.append([])
    umis = rng.choice([0, 0, 0, 0, 1, 1, 2], size=(n_cells, len(guides)))
    for cell, chosen in enumerate(carried):
        for guide in chosen:
            umis[cell, guides.index(guide)] = rng.integers(25, 300)
    genes = ["MYC", "LMO2", "MT-CO1"] + [f"GENE{i}" for i in range(n_genes - 3)]
    expression = rng.poisson(rng.gamma(2.0, 2.0, size=n_genes), size=(n_cells, n_genes))
    expression[:, :2] = rng.poisson(30, size=(n_cells, 2))
    for cell, chosen in enumerate(carried):
        for guide in chosen:
            target = GUIDES[guide][0]
            if target in genes and guide not in INEFFECTIVE:
                expression[cell, genes.index(target)] = rng.poisson(6)
    barcodes = [f"{''.join(rng.choice(list('ACGT'), 16))}-1" for _ in range(n_cells)]
    return Screen(barcodes, genes, sp.csr_matrix(expression), guides, sp.csr_matrix(umis),
                  _truth(carried, barcodes))


def _truth(carried: list[list[str]], barcodes: list[str], guides: dict = GUIDES) -> pd.DataFrame:
    rows = []
    order = list(guides)
    for chosen in carried:
        chosen = sorted(chosen, key=order.index)
        labels = sorted({guides[g][0] if guides[g][1] == "targeting" else guides[g][1] for g in chosen})
        assignment = "none" if not chosen else "single" if len(chosen) == 1 else "multiple"
        rows.append({"guide": "|".join(chosen), "assignment": assignment,
                     "perturbation": labels[0] if len(labels) == 1 else "", "labels": "+".join(labels)})
    return pd.DataFrame(rows, index=barcodes)


def write_guide_table(path: Path, with_class: bool = True) -> Path:
    table = pd.DataFrame([(g, t, c) for g, (t, c) in GUIDES.items()], columns=["guide", "target", "class"])
    if not with_class:
        table = table.drop(columns="class")
    table.to_csv(path, index=False)
    return path


def write_cellranger_h5(path: Path, screen: Screen, with_guides: bool = True) -> Path:
    """The layout of Cell Ranger's filtered_feature_bc_matrix.h5 (HDF5 feature-barcode
    matrix v3): a features x barcodes CSC matrix under /matrix."""
    matrix, ids, names, types = _features(screen, with_guides)
    with h5py.File(path, "w") as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2
        f.attrs["chemistry_description"] = "Single Cell 3' v3"
        f.attrs["library_ids"] = np.array([b"library_0"])
        f.attrs["original_gem_groups"] = np.array([1])
        group = f.create_group("matrix")
        group.create_dataset("barcodes", data=np.array(screen.barcodes, dtype="S"))
        by_cell = sp.csr_matrix(matrix)  # cells x features, CSR == features x cells, CSC
        group.create_dataset("data", data=by_cell.data.astype(np.int32), compression="gzip")
        group.create_dataset("indices", data=by_cell.indices.astype(np.int64), compression="gzip")
        group.create_dataset("indptr", data=by_cell.indptr.astype(np.int64))
        group.create_dataset("shape", data=np.array([matrix.shape[1], matrix.shape[0]], dtype=np.int32))
        features = group.create_group("features")
        features.create_dataset("_all_tag_keys", data=np.array([b"genome", b"read", b"pattern", b"sequence"]))
        features.create_dataset("feature_type", data=np.array(types, dtype="S"))
        features.create_dataset("genome", data=np.array(["GRCh38" if t == GENE_EXPRESSION else "" for t in types],
                                                        dtype="S"))
        features.create_dataset("id", data=np.array(ids, dtype="S"))
        features.create_dataset("name", data=np.array(names, dtype="S"))
        guide = [t == GUIDE_CAPTURE for t in types]
        features.create_dataset("read", data=np.array(["R2" if g else "" for g in guide], dtype="S"))
        features.create_dataset("pattern", data=np.array(["(BC)GTTTAAGAGCTAAGCTGGAAACAGCATAGCAAGTT" if g else ""
                                                          for g in guide], dtype="S"))
        features.create_dataset("sequence", data=np.array(["ACGTACGTACGTACGTACGT" if g else "" for g in guide],
                                                          dtype="S"))
    return path


def write_matrix_market(folder: Path, screen: Screen, with_guides: bool = True) -> Path:
    """Cell Ranger's filtered_feature_bc_matrix/ folder: matrix.mtx.gz (features x
    barcodes), features.tsv.gz (id, name, feature type), barcodes.tsv.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix, ids, names, types = _features(screen, with_guides)
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(matrix.T.astype(np.int64)), field="integer")
    with gzip.open(folder / "features.tsv.gz", "wt") as handle:
        handle.writelines(f"{i}\t{n}\t{t}\n" for i, n, t in zip(ids, names, types))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as handle:
        handle.writelines(f"{b}\n" for b in screen.barcodes)
    return folder


def write_protospacer_calls(path: Path, screen: Screen, calls: pd.Series | None = None) -> Path:
    """crispr_analysis/protospacer_calls_per_cell.csv: the cells with a call, their guides
    and UMIs '|'-separated (the known answer's calls unless ``calls`` is given)."""
    calls = screen.truth["guide"] if calls is None else calls
    umis = screen.guide_umis.toarray()
    rows = []
    for cell, called in enumerate(calls):
        if not called:
            continue
        names = called.split("|")
        counts = [str(umis[cell, screen.guides.index(g)]) for g in names]
        rows.append((screen.barcodes[cell], len(names), "|".join(names), "|".join(counts)))
    pd.DataFrame(rows, columns=["cell_barcode", "num_features", "feature_call", "num_umis"]).to_csv(path, index=False)
    return path


def _features(screen: Screen, with_guides: bool):
    ids = [f"ENSG{i:011d}" for i in range(len(screen.genes))]
    names, types = list(screen.genes), [GENE_EXPRESSION] * len(screen.genes)
    matrix = screen.expression
    if with_guides:
        ids += screen.guides
        names += screen.guides
        types += [GUIDE_CAPTURE] * len(screen.guides)
        matrix = sp.hstack([screen.expression, screen.guide_umis]).tocsr()
    return matrix, ids, names, types


def screen_from_simulated(adata, seed: int = 0) -> tuple[Screen, pd.DataFrame]:
    """A Cell Ranger-style screen from a simulated one (``pertcontrast simulate``): two
    guides per target, two non-targeting guides for the controls; 5% of the cells also
    carry a guide of another perturbation, 3% carry none. Returns the screen and its guide
    table."""
    rng = np.random.default_rng(seed)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    targets = sorted(set(labels) - {"control"})
    guide_of = {t: [f"{t}_1", f"{t}_2"] for t in targets} | {"control": ["NT_1", "NT_2"]}
    guides = [g for gs in guide_of.values() for g in gs]
    table = pd.DataFrame([(g, t if t != "control" else "", "targeting" if t != "control" else "non-targeting")
                          for t, gs in guide_of.items() for g in gs], columns=["guide", "target", "class"])
    umis = rng.choice([0, 0, 0, 1, 1, 2], size=(adata.n_obs, len(guides)))
    carried = []
    for cell, label in enumerate(labels):
        draw = rng.random()
        chosen = [] if draw < 0.03 else [rng.choice(guide_of[label])]
        if 0.03 <= draw < 0.08:
            other = rng.choice([t for t in guide_of if t != label])
            chosen.append(rng.choice(guide_of[other]))
        for guide in chosen:
            umis[cell, guides.index(guide)] = rng.integers(20, 300)
        carried.append(chosen)
    truth = _truth(carried, list(adata.obs_names), {g: (t, c) for g, t, c in table.itertuples(index=False)})
    screen = Screen(list(adata.obs_names), list(adata.var_names), sp.csr_matrix(adata.X, dtype=np.int64),
                    guides, sp.csr_matrix(umis), truth)
    return screen, table
