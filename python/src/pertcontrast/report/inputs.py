"""Read the model folder and the analysis outputs (formats in docs/outputs.md).

Each reader returns ``None`` for an output that was not given (its report section then
says "not run") and refuses, with a one-line message, an output that was given but lacks
what the report needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pertcontrast.errors import InputDataError

CONFIG, HISTORY = "config.json", "history.csv"
EFFECT_COLUMNS = ("perturbation", "n_cells", "energy_distance", "energy_pvalue", "n_de_genes")
DE_COLUMNS = ("perturbation", "gene", "lfc_mean", "prob_de", "is_de")
DE_OPTIONAL = ("bayes_factor", "lfc_sd", "de_score")
TOP_COLUMNS = ("perturbation", "direction", "rank", "gene", "lfc_mean")


@dataclass
class ModelFolder:
    path: Path
    config: dict
    history: pd.DataFrame | None
    run_id: str | None = None
    tracking_uri: str | None = None
    experiment_id: str | None = None


@dataclass
class Analysis:
    """The analysis outputs that were given (``None``: that step did not run)."""

    responders: pd.DataFrame | None = None
    effects: pd.DataFrame | None = None
    clusters: pd.DataFrame | None = None
    similarity: pd.DataFrame | None = None
    de_folder: Path | None = None
    de_top: pd.DataFrame | None = None
    de_settings: dict = field(default_factory=dict)


def read_model_folder(path) -> ModelFolder:
    path = Path(path)
    if not path.is_dir():
        raise InputDataError(f"{path}: not a folder; give the model folder written by 'pertcontrast train'.")
    if not (path / CONFIG).is_file():
        raise InputDataError(f"{path} has no {CONFIG}; give the model folder written by 'pertcontrast train'.")
    from pertcontrast.model_folder import read_model_folder as check_whole_folder

    check_whole_folder(path)  # weights vs config and the side files, every problem named
    config = _read_json(path / CONFIG, "the model folder written by 'pertcontrast train'")
    history = None
    if (path / HISTORY).is_file():
        history = _read_csv(path / HISTORY, ("epoch",), "pertcontrast train")
    run_id, uri, experiment = _recorded_run(path)
    return ModelFolder(path, config, history, run_id, uri, experiment)


def _recorded_run(path: Path):
    from pertcontrast.errors import TrackingError
    from pertcontrast.tracking.record import RECORD_FILE, RunRecord

    if not (path / RECORD_FILE).is_file():
        return None, None, None
    try:
        record = RunRecord.load(path)
    except TrackingError:
        return None, None, None
    return record.run_id, record.tracking_uri, record.experiment_id


def responder_table(perturbation, is_control, responder_call) -> pd.DataFrame | None:
    """Cells and responders per perturbation, from the per-cell calls (None without them)."""
    if responder_call is None:
        return None
    cells = pd.DataFrame({"perturbation": perturbation[~is_control],
                          "responder": responder_call[~is_control] == "responder"})
    table = cells.groupby("perturbation", sort=True)["responder"].agg(["size", "sum"]).reset_index()
    table.columns = ["perturbation", "n_cells", "n_responders"]
    table["n_responders"] = table["n_responders"].astype(int)
    table["responder_fraction"] = table["n_responders"] / table["n_cells"]
    return table


def read_analysis(de=None, effects=None, responders: pd.DataFrame | None = None) -> Analysis:
    """Read the outputs given; the long DE table is read later, for the shown perturbations
    only (``read_de_rows``). ``responders``: the table from :func:`responder_table`."""
    analysis = Analysis(responders=responders)
    if effects is not None:
        folder = _folder(effects, "effects.csv", "pertcontrast effects")
        analysis.effects = _read_csv(folder / "effects.csv", EFFECT_COLUMNS, "pertcontrast effects")
        if (folder / "perturbation_clusters.csv").is_file():
            analysis.clusters = _read_csv(folder / "perturbation_clusters.csv",
                                          ("perturbation", "cluster", "leaf_order"), "pertcontrast effects")
        if (folder / "perturbation_similarity.csv").is_file():
            analysis.similarity = _read_similarity(folder / "perturbation_similarity.csv")
    if de is not None:
        folder = _folder(de, None, "pertcontrast de")
        if not (folder / "de.parquet").is_file() and not (folder / "de.csv.gz").is_file():
            raise InputDataError(
                f"{folder} has neither de.parquet nor de.csv.gz; give the folder written by 'pertcontrast de'."
            )
        analysis.de_folder = folder
        if (folder / "de_top.csv").is_file():
            analysis.de_top = _read_csv(folder / "de_top.csv", TOP_COLUMNS, "pertcontrast de")
        if (folder / "de_settings.json").is_file():
            analysis.de_settings = _read_json(folder / "de_settings.json", "the folder written by 'pertcontrast de'")
    return analysis


def read_de_rows(folder: Path, perturbations: list[str]) -> pd.DataFrame:
    """The DE rows of ``perturbations`` only (a genome-wide table has millions of rows)."""
    columns = list(DE_COLUMNS)
    parquet = folder / "de.parquet"
    try:
        if parquet.is_file():
            import pyarrow.parquet as pq

            available = set(pq.read_schema(parquet).names)
            _require(available, DE_COLUMNS, parquet, "pertcontrast de")
            columns += [c for c in DE_OPTIONAL if c in available]
            table = pd.read_parquet(parquet, columns=columns, filters=[("perturbation", "in", list(perturbations))])
        else:
            path = folder / "de.csv.gz"
            header = pd.read_csv(path, nrows=0).columns
            _require(set(header), DE_COLUMNS, path, "pertcontrast de")
            columns += [c for c in DE_OPTIONAL if c in header]
            wanted = set(perturbations)
            chunks = [chunk[chunk["perturbation"].astype(str).isin(wanted)]
                      for chunk in pd.read_csv(path, usecols=columns, chunksize=500_000)]
            table = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)
    except InputDataError:
        raise
    except Exception as error:  # noqa: BLE001 - any unreadable table is a user-facing error
        raise InputDataError(f"{folder}: the DE table cannot be read ({_first_line(error)}); "
                             "re-run 'pertcontrast de'.") from error
    table["perturbation"] = table["perturbation"].astype(str)
    table["gene"] = table["gene"].astype(str)
    return table


def _folder(path, required: str | None, step: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise InputDataError(f"{folder}: not a folder; give the folder written by '{step}'.")
    if required and not (folder / required).is_file():
        raise InputDataError(f"{folder} has no {required}; give the folder written by '{step}'.")
    return folder


def _read_csv(path: Path, required, step: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputDataError(f"{path}: no such file; give the output of '{step}'.")
    try:
        table = pd.read_csv(path)
    except Exception as error:  # noqa: BLE001
        raise InputDataError(f"{path}: cannot be read as CSV ({_first_line(error)}); re-run '{step}'.") from error
    _require(set(table.columns), required, path, step)
    if "perturbation" in table:
        table["perturbation"] = table["perturbation"].astype(str)
    return table


def _read_similarity(path: Path) -> pd.DataFrame:
    try:
        matrix = pd.read_csv(path, index_col=0)
        matrix.index = matrix.index.astype(str)
        matrix.columns = matrix.columns.astype(str)
        matrix = matrix.astype(float)
    except Exception as error:  # noqa: BLE001
        raise InputDataError(f"{path}: not a square numeric matrix ({_first_line(error)}); "
                             "re-run 'pertcontrast effects'.") from error
    if matrix.shape[0] != matrix.shape[1]:
        raise InputDataError(f"{path}: {matrix.shape[0]} rows but {matrix.shape[1]} columns; "
                             "re-run 'pertcontrast effects'.")
    return matrix


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: not readable JSON ({_first_line(error)}); give {what}.") from error
    if not isinstance(value, dict):
        raise InputDataError(f"{path}: not a JSON object; give {what}.")
    return value


def _require(available: set, required, path: Path, step: str) -> None:
    missing = [c for c in required if c not in available]
    if missing:
        raise InputDataError(f"{path} lacks the column(s) {', '.join(missing)}; give the output of '{step}'.")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
