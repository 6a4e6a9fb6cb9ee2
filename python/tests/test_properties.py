"""Property-based tests: random malformed inputs to the validators and the samplesheet
parser always give a user-facing error (PertcontrastError), never an unhandled exception."""

import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pertcontrast.data import validate
from pertcontrast.data.samplesheet import validate_samplesheet
from pertcontrast.errors import PertcontrastError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(min_value=-5, max_value=1000).map(float),
)


@FAST
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=values))
def test_count_checks_accept_counts_or_raise_a_user_error(matrix):
    for block in (matrix, sp.csr_matrix(np.nan_to_num(matrix, nan=0.5))):
        try:
            validate.check_counts(block, "m.h5ad")
        except PertcontrastError as error:
            assert "m.h5ad" in error.message
        else:
            data = block.data if sp.issparse(block) else block.ravel()
            assert np.all(np.isfinite(data)) and np.all(data >= 0) and np.all(data == np.round(data))


labels = st.text(alphabet=string.ascii_letters + string.digits + "_- ", min_size=0, max_size=8)


@FAST
@given(st.lists(labels, min_size=0, max_size=40), labels, st.integers(min_value=0, max_value=60))
def test_perturbation_checks_raise_only_user_errors(cells, control, minimum):
    obs = pd.DataFrame({"perturbation": cells}, index=[f"c{i}" for i in range(len(cells))])
    try:
        validate.check_perturbations(obs, "perturbation", control, "in.h5ad", minimum)
    except PertcontrastError as error:
        assert error.message.startswith("in.h5ad")
    else:
        assert sum(c == control for c in cells) >= minimum
        assert any(c != control for c in cells)


cell_text = st.text(alphabet=string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", ""), max_size=12)


@FAST
@given(
    header=st.lists(st.sampled_from(["id", "h5ad", "perturbation_key", "control_label", "batch_key",
                                     "max_epochs", "seed", "colour", ""]), min_size=0, max_size=7),
    rows=st.lists(st.lists(cell_text, min_size=0, max_size=8), min_size=0, max_size=5),
    separator=st.sampled_from([",", ";", "\t"]),
)
def test_samplesheet_parser_raises_only_user_errors(tmp_path_factory, header, rows, separator):
    folder = tmp_path_factory.mktemp("sheet")
    (folder / "screen.h5ad").write_bytes(b"")
    lines = [separator.join(header)] + [separator.join(row) for row in rows]
    path = folder / "samplesheet.csv"
    path.write_text("\n".join(lines) + "\n")
    try:
        table = validate_samplesheet(path, base_dir=folder)
    except PertcontrastError as error:
        assert "samplesheet.csv" in error.message
    else:
        assert len(table) >= 1 and table["id"].is_unique


@FAST
@given(st.binary(min_size=0, max_size=300))
def test_corrupt_h5ad_bytes_give_a_user_error(tmp_path_factory, payload):
    from pertcontrast.data.reading import read_anndata

    path = tmp_path_factory.mktemp("h5") / "broken.h5ad"
    path.write_bytes(payload)
    with pytest.raises(PertcontrastError, match="broken.h5ad"):
        read_anndata(path)
