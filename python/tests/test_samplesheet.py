"""The samplesheet validator and the check-samplesheet command, on small hand-written sheets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pertcontrast.cli import main
from pertcontrast.data.samplesheet import load_schema, validate_samplesheet
from pertcontrast.errors import SamplesheetError

REPO = Path(__file__).resolve().parents[2]
HEADER = "id,h5ad,perturbation_key,control_label"


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    (tmp_path / "a.h5ad").write_bytes(b"")
    (tmp_path / "b.h5ad").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_sheet(folder: Path, text: str, name: str = "sheet.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_shipped_schema_is_identical_to_the_pipeline_schema():
    pipeline_schema = REPO / "assets" / "schema_input.json"
    assert load_schema() == load_schema(pipeline_schema)
    shipped = REPO / "python" / "src" / "pertcontrast" / "data" / "resources" / "schema_input.json"
    assert shipped.read_bytes() == pipeline_schema.read_bytes()


def test_valid_sheet_gives_schema_columns_absolute_paths_and_integers(workdir):
    sheet = write_sheet(
        workdir,
        "id,h5ad,perturbation_key,control_label,batch_key,max_epochs\n"
        "screen_a,a.h5ad,perturbation,control,batch,3\n"
        "screen.b,s3://bucket/b.h5ad,guide,NT,,\n",
    )
    table = validate_samplesheet(sheet)
    assert list(table.columns) == list(load_schema()["items"]["properties"])
    assert table["id"].tolist() == ["screen_a", "screen.b"]
    assert table.loc[0, "h5ad"] == str(workdir / "a.h5ad")
    assert table.loc[1, "h5ad"] == "s3://bucket/b.h5ad"
    assert table.loc[0, "max_epochs"] == 3
    assert pd.isna(table.loc[1, "max_epochs"]) and pd.isna(table.loc[1, "batch_key"])


def test_relative_paths_resolve_from_base_dir(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("sheets")
    sheet = write_sheet(elsewhere, f"{HEADER}\nx,a.h5ad,p,c\n")
    table = validate_samplesheet(sheet, base_dir=workdir)
    assert table.loc[0, "h5ad"] == str(workdir / "a.h5ad")


def test_tsv_blank_lines_and_byte_order_mark_are_accepted(workdir):
    sheet = workdir / "sheet.tsv"
    sheet.write_text("\ufeffid\th5ad\tperturbation_key\tcontrol_label\n\nx\ta.h5ad\tp\tc\n", encoding="utf-8")
    assert validate_samplesheet(sheet)["id"].tolist() == ["x"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{HEADER}\nx,a.h5ad,p,c\ny,missing.h5ad,p,c\n", ["row 3", "column 'h5ad'", "file not found", "missing.h5ad"]),
        (f"{HEADER}\nx,a.h5ad,p,c\ny,b.h5ad,p,c\nx,b.h5ad,p,c\n", ["row 4", "column 'id'", "duplicate value 'x'", "row 2"]),
        (f"{HEADER},epochs\nx,a.h5ad,p,c,3\n", ["row 1", "column 'epochs'", "unknown column"]),
        (f"{HEADER},maxepochs\nx,a.h5ad,p,c,3\n", ["row 1", "did you mean 'max_epochs'"]),
        (f"{HEADER}\nx,a.h5ad,p,c\ny,b.h5ad,,c\n", ["row 3", "column 'perturbation_key'", "empty value"]),
        (f"{HEADER}\nx,a.h5ad,p,  \n", ["row 2", "column 'control_label'", "empty value"]),
        (f"{HEADER}\nmy screen,a.h5ad,p,c\n", ["row 2", "column 'id'", "'my screen'", "letters, digits"]),
        (f"{HEADER}\n-x,a.h5ad,p,c\n", ["row 2", "column 'id'", "must start with a letter or digit"]),
        ("id,h5ad,perturbation_key\nx,a.h5ad,p\n", ["row 1", "column 'control_label'", "required column is missing"]),
        (f"{HEADER},id\nx,a.h5ad,p,c,y\n", ["row 1", "column 'id'", "appears twice"]),
        (f"{HEADER},max_epochs\nx,a.h5ad,p,c,ten\n", ["row 2", "column 'max_epochs'", "'ten'", "whole number"]),
        (f"{HEADER},seed\nx,a.h5ad,p,c,-1\n", ["row 2", "column 'seed'", "at least 0"]),
        (f"{HEADER}\nx,a.h5ad,p,it's\n", ["row 2", "column 'control_label'", "single quotes"]),
        (f"{HEADER}\nx,a.h5ad,p\n", ["row 2", "3 values", "4 columns"]),
        (f"{HEADER},guides\nx,a.h5ad,p,c,b.h5ad\n", ["row 2", "column 'guide_table'", "empty value",
                                                    "a screen with 'guides' needs one too"]),
        (f"{HEADER},guide_table\nx,a.h5ad,p,c,\ny,b.h5ad,p,c,no_table.csv\n",
         ["row 3", "column 'guide_table'", "file not found", "no_table.csv"]),
        (f"{HEADER},guides,guide_table\nx,a.h5ad,p,c,calls.csv,a.h5ad\n", ["row 2", "column 'guides'", "file not found"]),
        (f"{HEADER}\n", ["no screens"]),
        ("", ["empty", "row 1"]),
    ],
)
def test_bad_sheets_name_row_column_and_problem(workdir, text, expected):
    sheet = write_sheet(workdir, text)
    with pytest.raises(SamplesheetError) as caught:
        validate_samplesheet(sheet)
    message = caught.value.message
    assert message.startswith("sheet.csv")
    for part in expected:
        assert part in message


def test_guide_columns_are_optional_and_resolved_like_counts(workdir):
    (workdir / "guides.csv").write_text("guide,target\ng1,A\n")
    (workdir / "calls.csv").write_text("cell_barcode,feature_call\n")
    sheet = write_sheet(workdir, f"{HEADER},guides,guide_table\nx,a.h5ad,p,c,,guides.csv\ny,b.h5ad,p,c,calls.csv,"
                                 "guides.csv\nz,b.h5ad,p,c,,\n")
    table = validate_samplesheet(sheet)
    assert table["guide_table"].tolist()[:2] == [str(workdir / "guides.csv")] * 2
    assert pd.isna(table.loc[0, "guides"]) and table.loc[1, "guides"] == str(workdir / "calls.csv")
    assert pd.isna(table.loc[2, "guide_table"])


def test_urls_are_not_checked_but_file_urls_are(workdir):
    ok = write_sheet(workdir, f"{HEADER}\nx,gs://bucket/a.h5ad,p,c\ny,https://host/b.h5ad,p,c\n")
    assert validate_samplesheet(ok)["h5ad"].tolist() == ["gs://bucket/a.h5ad", "https://host/b.h5ad"]
    bad = write_sheet(workdir, f"{HEADER}\nx,file:///nowhere/a.h5ad,p,c\n", name="bad.csv")
    with pytest.raises(SamplesheetError, match="row 2, column 'h5ad': file not found: /nowhere/a.h5ad"):
        validate_samplesheet(bad)


def test_cli_writes_the_checked_sheet(workdir):
    sheet = write_sheet(workdir, f"{HEADER},seed\nx,a.h5ad,p,c,7\n")
    schema = REPO / "assets" / "schema_input.json"
    result = CliRunner().invoke(
        main, ["check-samplesheet", str(sheet), "--schema", str(schema), "--output", "checked.csv"]
    )
    assert result.exit_code == 0, result.output
    assert "1 screen(s) OK: x" in result.output
    checked = pd.read_csv(workdir / "checked.csv")
    assert checked.loc[0, "h5ad"] == str(workdir / "a.h5ad")
    assert checked.loc[0, "seed"] == 7


def test_cli_reports_a_bad_sheet_on_one_line_and_exits_1(workdir):
    sheet = write_sheet(workdir, f"{HEADER}\nx,nope.h5ad,p,c\n")
    result = CliRunner().invoke(main, ["check-samplesheet", str(sheet), "--output", "checked.csv"])
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    assert "row 2, column 'h5ad': file not found" in error_lines[0]
    assert "Traceback" not in result.output
    assert not (workdir / "checked.csv").exists()


def test_cli_base_dir_option(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("launch")
    (elsewhere / "c.h5ad").write_bytes(b"")
    sheet = write_sheet(workdir, f"{HEADER}\nx,c.h5ad,p,c\n")
    result = CliRunner().invoke(main, ["check-samplesheet", str(sheet), "--base-dir", str(elsewhere)])
    assert result.exit_code == 0, result.output

