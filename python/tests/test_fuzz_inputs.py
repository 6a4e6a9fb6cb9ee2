"""Fuzz: the samplesheet checker and the h5ad reader/validator meet random bytes, random
encodings and random edits of valid files; every outcome is a result or a
PertcontrastError (one line the CLI prints), never another exception."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pertcontrast.data.samplesheet import validate_samplesheet
from pertcontrast.errors import PertcontrastError

COLUMNS = ["id", "h5ad", "perturbation_key", "control_label", "max_epochs", "colour", ""]
CELL = st.one_of(st.text(max_size=12), st.sampled_from(["s1", "screen.h5ad", "perturbation", "control", "12",
                                                         "-3", "s3://b/x.h5ad", '"', "a,b", "\x00"]))
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252", "utf-16-le"])
# Timing health checks would fail on a loaded CI machine, not on a defect.
UNTIMED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=UNTIMED)


def check_sheet(data: bytes) -> None:
    """Check ``data`` as a samplesheet: a result or the checker's own error, nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet.csv"
        path.write_bytes(data)
        try:
            validate_samplesheet(path, base_dir=folder)
        except PertcontrastError:
            pass


@SETTINGS
@given(header=st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=6),
       rows=st.lists(st.lists(CELL, max_size=7), max_size=4), encoding=ENCODINGS,
       delimiter=st.sampled_from([",", "\t", ";"]))
def test_samplesheet_checker_never_raises_anything_but_its_error(header, rows, encoding, delimiter):
    text = "\n".join(delimiter.join(row) for row in [header, *rows]) + "\n"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", errors="replace")
    check_sheet(data)


@SETTINGS
@given(data=st.binary(max_size=3000))
def test_samplesheet_checker_on_random_bytes(data):
    check_sheet(data)


@pytest.fixture(scope="module")
def small_h5ad(tiny_screen, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "small.h5ad"
    tiny_screen[:150, :60].copy().write_h5ad(path)
    return path


def _check(path: Path):
    """What preprocess does first with a file: read it, then validate names and columns."""
    from pertcontrast.data import validate
    from pertcontrast.data.reading import read_anndata

    adata = read_anndata(path)
    validate.check_counts(adata.X, str(path))
    validate.check_unique_names(adata.obs_names, "cell", str(path))
    validate.check_unique_names(adata.var_names, "gene", str(path))
    validate.check_perturbations(adata.obs, "perturbation", "control", str(path), min_control_cells=1)


@settings(max_examples=40, deadline=None, suppress_health_check=UNTIMED)
@given(cut=st.floats(0.0, 0.999), head=st.binary(max_size=64))
def test_h5ad_validator_on_truncated_files(small_h5ad, cut, head):
    """Truncated copies, and random bytes in place of the signature (byte edits deep inside
    HDF5 structures can crash libhdf5 itself, in C, so they are not fuzzed here)."""
    data = small_h5ad.read_bytes()
    data = head + data[len(head): max(len(head), int(cut * len(data)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.h5ad"
        path.write_bytes(data)
        try:
            _check(path)
        except PertcontrastError:
            pass


# No NUL or lone surrogate in labels: HDF5 UTF-8 strings cannot hold them, so such a screen
# cannot be written (anndata fails half-way and leaves an h5py handle that later crashed libhdf5).
LABELS = st.one_of(st.sampled_from(["control", "P1", "P2", "", " ", "nan", "None"]),
                   st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6), st.none())
VALUES = st.one_of(st.integers(-3, 50), st.sampled_from([0.5, float("nan"), float("inf"), -1.0, 1e9]))


@settings(max_examples=60, deadline=None, suppress_health_check=UNTIMED)
@given(labels=st.lists(LABELS, min_size=0, max_size=30), values=st.lists(VALUES, min_size=1, max_size=8),
       duplicate_cells=st.booleans(), duplicate_genes=st.booleans(), drop_column=st.booleans())
def test_h5ad_validator_on_random_screens(labels, values, duplicate_cells, duplicate_genes, drop_column):
    import anndata as ad
    import numpy as np
    import pandas as pd

    n = max(len(labels), 1)
    X = np.resize(np.array(values, dtype=float), (n, 4))
    obs = pd.DataFrame({"perturbation": pd.array(labels or [None], dtype=object)},
                       index=["c"] * n if duplicate_cells else [f"c{i}" for i in range(n)])
    if drop_column:
        obs = obs.drop(columns="perturbation")
    var = pd.DataFrame(index=["g", "g", "h", "i"] if duplicate_genes else ["g", "h", "i", "j"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.h5ad"
        ad.AnnData(X=X, obs=obs.astype(str) if not drop_column else obs, var=var).write_h5ad(path)
        try:
            _check(path)
        except PertcontrastError:
            pass
