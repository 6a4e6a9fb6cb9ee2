"""The pipeline samplesheet: one row per screen, checked against a JSON schema.

The schema (``assets/schema_input.json`` in the pipeline, shipped here as a copy) follows
nf-schema's conventions so one file documents the sheet for Nextflow users too:
``uniqueEntries`` at the top level, and ``"format": "path"`` with ``"exists": true`` for
inputs that must exist. Rows are numbered as a spreadsheet shows them (the header is row 1),
and every problem is one ``SamplesheetError`` naming the row, the column and what is wrong.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pandas as pd

from pertcontrast.errors import SamplesheetError

HEADER_ROW = 1
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_INTEGER = re.compile(r"^[+-]?\d+$")


def load_schema(schema_path: str | Path | None = None) -> dict:
    """The samplesheet schema: the given file, else the copy shipped with the package."""
    if schema_path is None:
        text = resources.files("pertcontrast.data.resources").joinpath("schema_input.json").read_text()
    else:
        text = Path(schema_path).read_text(encoding="utf-8", errors="replace")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as error:
        raise SamplesheetError(f"{schema_path}: the schema is not valid JSON ({error}).") from error
    if not isinstance(schema, dict) or not isinstance(schema.get("items"), dict):
        raise SamplesheetError(f"{schema_path}: not a samplesheet schema (no 'items' object).")
    return schema


def validate_samplesheet(
    path: str | Path, schema_path: str | Path | None = None, base_dir: str | Path | None = None
) -> pd.DataFrame:
    """Check a samplesheet and return one row per screen, columns in schema order.

    Local paths in ``"exists": true`` columns are resolved from ``base_dir`` (default: the
    current folder), must exist, and are returned absolute. Values with a URL scheme
    (s3://, gs://, https://) are left for the executor to stage and are not checked.
    """
    schema = load_schema(schema_path)
    items = schema["items"]
    name = Path(path).name
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    header, rows = _read_rows(Path(path), name)
    _check_header(header, items, name)
    validator = jsonschema.Draft202012Validator(items)
    records = []
    for row_number, values in rows:
        record = _record(header, values, items, name, row_number)
        _check_record(record, items, validator, name, row_number)
        _resolve_paths(record, items, base, name, row_number)
        records.append((row_number, record))
    if not records:
        raise SamplesheetError(f"{name}: no screens: the samplesheet has a header but no rows.")
    _check_unique(records, schema.get("uniqueEntries", []), name)
    return _to_frame([record for _, record in records], items)


def _read_rows(path: Path, name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    text = _decode(path.read_bytes(), name)
    if "\x00" in text:
        raise SamplesheetError(f"{name}: the samplesheet holds NUL bytes; it is not a text file (save it as CSV).")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise SamplesheetError(f"{name}: the samplesheet is empty; row {HEADER_ROW} must be the header.")
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise SamplesheetError(f"{name} row {max(reader.line_num, 1)}: not readable as CSV ({error}); check for an "
                               "unclosed quote or a very long value.") from error
    return [cell.strip() for cell in header], rows


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without a BOM), or UTF-16 with its BOM (spreadsheets' "Unicode text");
    anything else is refused naming the row and byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise SamplesheetError(f"{name}: damaged UTF-16 text at byte {error.start}; save the sheet as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data[: error.start].count(b"\n") + 1
        raise SamplesheetError(
            f"{name} row {row}: not UTF-8 text (byte 0x{data[error.start]:02x} at position {error.start}; "
            "Latin-1 or Windows-1252?); save the sheet as UTF-8 (e.g. 'iconv -f latin1 -t utf-8')."
        ) from None


def _check_header(header: list[str], items: dict, name: str) -> None:
    allowed = list(items["properties"])
    seen = set()
    for column in header:
        where = f"{name} row {HEADER_ROW}, column '{column}'"
        if column in seen:
            raise SamplesheetError(f"{where}: the column appears twice in the header.")
        seen.add(column)
        if column not in allowed:
            close = difflib.get_close_matches(column, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SamplesheetError(f"{where}: unknown column{hint}; allowed columns: {', '.join(allowed)}.")
    for column in items.get("required", []):
        if column not in seen:
            raise SamplesheetError(
                f"{name} row {HEADER_ROW}, column '{column}': required column is missing "
                f"(the header has: {', '.join(header)})."
            )


def _record(header: list[str], values: list[str], items: dict, name: str, row: int) -> dict:
    if len(values) != len(header):
        raise SamplesheetError(
            f"{name} row {row}: {len(values)} values but the header has {len(header)} columns "
            "(a missing or extra separator?)."
        )
    record = {}
    for column, value in zip(header, values):
        value = value.strip()
        if value:
            record[column] = _coerce(value, items["properties"][column])
    return record


def _coerce(value: str, prop: dict):
    """CSV cells are text: turn whole numbers into integers where the schema wants them."""
    if prop.get("type") == "integer" and _INTEGER.match(value):
        return int(value)
    return value


def _check_record(record: dict, items: dict, validator, name: str, row: int) -> None:
    for column in items.get("required", []):
        if column not in record:
            description = items["properties"][column].get("description", "").rstrip(".")
            raise SamplesheetError(
                f"{name} row {row}, column '{column}': empty value; every screen needs one ({description})."
            )
    order = list(items["properties"])
    errors = sorted(
        validator.iter_errors(record),
        key=lambda error: order.index(error.path[0]) if error.path and error.path[0] in order else len(order),
    )
    if errors:
        error = errors[0]
        if error.validator == "dependentRequired":
            _missing_dependency(record, items, name, row)
        column = error.path[0] if error.path else "?"
        problem = items["properties"].get(column, {}).get("errorMessage", error.message)
        raise SamplesheetError(f"{name} row {row}, column '{column}': {record.get(column)!r} {problem}.")


def _missing_dependency(record: dict, items: dict, name: str, row: int) -> None:
    """A column given without one it needs (``dependentRequired``: e.g. guides without guide_table)."""
    for column, needed in items.get("dependentRequired", {}).items():
        for other in needed:
            if column in record and other not in record:
                raise SamplesheetError(
                    f"{name} row {row}, column '{other}': empty value; a screen with '{column}' needs one too."
                )


def _resolve_paths(record: dict, items: dict, base: Path, name: str, row: int) -> None:
    for column, prop in items["properties"].items():
        if not prop.get("exists") or column not in record:
            continue
        value = str(record[column])
        if value.startswith("file://"):
            value = value[len("file://"):]
        elif _URL.match(value):
            continue
        local = (base / Path(value).expanduser()).resolve()
        if not local.exists():
            raise SamplesheetError(
                f"{name} row {row}, column '{column}': file not found: {local} "
                f"(relative paths are resolved from {base.resolve()})."
            )
        record[column] = str(local)


def _check_unique(records: list[tuple[int, dict]], columns: list[str], name: str) -> None:
    for column in columns:
        first_row: dict = {}
        for row, record in records:
            value = record.get(column)
            if value in first_row:
                raise SamplesheetError(
                    f"{name} row {row}, column '{column}': duplicate value {value!r} "
                    f"(also in row {first_row[value]}); each screen needs its own {column}."
                )
            first_row[value] = row


def _to_frame(records: list[dict], items: dict) -> pd.DataFrame:
    columns = list(items["properties"])
    table = pd.DataFrame.from_records(records, columns=columns)
    for column, prop in items["properties"].items():
        if prop.get("type") == "integer":
            table[column] = table[column].astype("Int64")
    return table
