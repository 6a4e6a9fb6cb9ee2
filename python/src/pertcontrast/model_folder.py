"""A model folder read and checked as a whole: its format version, the config's gene list
and encodings against the weights' shapes, and the side files (history, cell split,
registry provenance). Every problem found is named, all in one message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pertcontrast.errors import ModelLoadError
from pertcontrast.train.checkpoint import refusal_reason, refused_code

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
HISTORY_FILE = "history.csv"
SPLIT_FILE = "cell_split.csv.gz"  # each training cell's role (train, validation, decoy)
REGISTRY_INFO_FILE = "registry.json"
FORMAT_VERSION = 2  # 2: the classifier is part of the guide and optional


@dataclass
class ModelFolder:
    config: dict
    architecture: object  # module.architecture.Architecture
    state: dict
    encoding: object  # data.encoding.DataEncoding
    history: object = None  # pandas.DataFrame
    cell_split: object = None  # pandas.Series


def upgrade(version: int, architecture: dict, state: dict):
    """The architecture and weights of a folder of an older format, as this format has them.

    Format 1 had a classifier outside the guide, always present, and (before the linear
    salient path existed) no ``salient_linear`` key. Folders written before the salient
    prior and input were choices have neither key: theirs were the standard prior and the counts.
    """
    from pertcontrast.module.architecture import Architecture

    architecture = {"salient_prior": "standard", "salient_input": "counts", **architecture}
    if version == 1:
        architecture = {"salient_linear": False, **architecture, "classifier": True}
        state = {(f"inference.{key}" if key.startswith("classifier.") else key): value for key, value in state.items()}
    return Architecture(**architecture), state


def read_model_folder(folder: str | Path) -> ModelFolder:
    """Read and check ``folder``; raise one :class:`ModelLoadError` naming every problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such model folder.")
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ModelLoadError(
            f"{folder}: not a complete model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "was training interrupted? Re-run 'pertcontrast train'."
        )
    problems: list[str] = []
    config = _read_config(folder, problems)
    state = _read_weights(folder, problems)
    architecture = encoding = None
    if config is not None:
        architecture, encoding, state = _read_shapes(config, state, problems)
    history, split = _read_side_files(folder, problems)
    if problems:
        raise ModelLoadError(f"{folder}: " + "; ".join(problems) + ". Re-run 'pertcontrast train' or restore "
                             "the folder from a copy.")
    return ModelFolder(config, architecture, state, encoding, history, split)


def _read_config(folder: Path, problems: list[str]) -> dict | None:
    from pertcontrast.versions import __version__

    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{CONFIG_FILE} is not valid JSON ({error})")
        return None
    if not isinstance(config, dict) or not {"architecture", "registry"} <= set(config):
        problems.append(f"{CONFIG_FILE} lacks the 'architecture' and 'registry' entries")
        return None
    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelLoadError(
            f"{folder}: model folder format {version!r}; this pertcontrast ({__version__}) reads "
            f"formats 1 to {FORMAT_VERSION}. Load it with the pertcontrast that wrote it, or retrain."
        )
    return config


def _read_weights(folder: Path, problems: list[str]) -> dict | None:
    import pickle
    import zipfile

    import torch

    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not refused_code(error):
            problems.append(f"{WEIGHTS_FILE} cannot be read (not a weights file; {_first_line(error)})")
            return None
        problems.append(f"{WEIGHTS_FILE} holds objects other than weights (refused: loading it could run code; "
                        f"{refusal_reason(error)})")
        return None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        problems.append(f"{WEIGHTS_FILE} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:120]});"
                        " it may be truncated")
        return None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        problems.append(f"{WEIGHTS_FILE} is not a table of weights")
        return None
    return state


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:120] if text else type(error).__name__


def _read_shapes(config: dict, state: dict | None, problems: list[str]):
    from pertcontrast.data.encoding import DataEncoding
    from pertcontrast.module.contrastive import ContrastiveModule

    try:
        architecture, state = upgrade(config.get("format_version", 1), dict(config["architecture"]), state or {})
        encoding = DataEncoding.from_dict(config["registry"])
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        problems.append(f"{CONFIG_FILE} has a damaged 'architecture' or 'registry' entry ({error})")
        return None, None, state
    genes = list(encoding.gene_names)
    expected = {
        "genes": (len(genes), architecture.n_genes),
        "covariate columns": (encoding.n_covariates, architecture.n_covariates),
        "library groups": (len(encoding.library_groups), architecture.n_library_groups),
    }
    for what, (listed, built) in expected.items():
        if listed != built:
            problems.append(f"{CONFIG_FILE} lists {listed} {what} but its architecture has {built}")
    if len(set(genes)) != len(genes):
        problems.append(f"{CONFIG_FILE} lists {len(genes) - len(set(genes))} duplicate gene names")
    if state:
        wanted = {k: tuple(v.shape) for k, v in ContrastiveModule(architecture).state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        missing, extra = sorted(set(wanted) - set(found)), sorted(set(found) - set(wanted))
        wrong = [k for k in wanted if k in found and wanted[k] != found[k]]
        if missing or extra or wrong:
            details = [f"{k} {found[k]} vs {wanted[k]}" for k in wrong[:2]] + missing[:2] + extra[:2]
            problems.append(f"{WEIGHTS_FILE} does not match {CONFIG_FILE} ({len(wrong)} tensors of another shape, "
                            f"{len(missing)} missing, {len(extra)} extra: {', '.join(details)})")
    return architecture, encoding, state


def _read_side_files(folder: Path, problems: list[str]):
    import pandas as pd

    history = split = None
    if (folder / HISTORY_FILE).exists():
        try:
            history = pd.read_csv(folder / HISTORY_FILE)
            if history.empty or "epoch" not in history.columns:
                problems.append(f"{HISTORY_FILE} has no epochs")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
            problems.append(f"{HISTORY_FILE} cannot be read ({type(error).__name__})")
    if (folder / SPLIT_FILE).exists():
        try:
            split = pd.read_csv(folder / SPLIT_FILE, index_col=0, dtype=str)["split"]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, KeyError,
                EOFError) as error:
            problems.append(f"{SPLIT_FILE} cannot be read ({type(error).__name__})")
    if (folder / REGISTRY_INFO_FILE).exists():
        try:
            info = json.loads((folder / REGISTRY_INFO_FILE).read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                problems.append(f"{REGISTRY_INFO_FILE} is not a JSON object")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{REGISTRY_INFO_FILE} is not valid JSON ({error})")
    return history, split
