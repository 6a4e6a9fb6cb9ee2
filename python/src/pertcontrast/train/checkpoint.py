"""Training checkpoints: written atomically each epoch, named by a settings hash, so a
killed or retried job resumes where it stopped and a changed setting starts afresh."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from pertcontrast.errors import InputDataError
from pertcontrast.io import atomic_path

log = logging.getLogger("pertcontrast")


def checkpoint_path(folder: str | Path, run_hash: str) -> Path:
    return Path(folder) / f"checkpoint-{run_hash}.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def refused_code(error: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused the file for holding code
    (classes or functions to import), rather than for being damaged."""
    return bool(re.search(r"Unsupported global|GLOBAL ", str(error)))


def refusal_reason(error: Exception) -> str:
    """The line of torch's refusal that names what was refused (e.g. the class)."""
    lines = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported global" in line]
    return (lines or [str(error).splitlines()[0] if str(error) else type(error).__name__])[0][:120]


def load_checkpoint(path: Path) -> dict | None:
    """The saved state, or None when there is none.

    A checkpoint holding anything but tensors, numbers and dicts is refused with an error
    (someone or something replaced it; loading it could run code), never silently dropped.
    One that is unreadable (damaged) is set aside as ``NAME.damaged`` with a warning and
    training starts afresh."""
    import pickle
    import warnings

    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own warning repeats what we say below
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not refused_code(error):
            return _set_aside(path, error)
        raise InputDataError(
            f"{path}: the checkpoint holds objects other than weights and was refused (loading it could run "
            f"code: {refusal_reason(error)}). Delete it to train afresh, after checking who wrote it."
        ) from error
    except Exception as error:  # noqa: BLE001 - any other failure means a damaged file
        return _set_aside(path, error)


def _set_aside(path: Path, error: Exception) -> None:
    damaged = path.with_name(path.name + ".damaged")
    os.replace(path, damaged)
    log.warning("%s: checkpoint unreadable (%s: %s); moved to %s, training starts afresh", path,
                type(error).__name__, str(error).splitlines()[0][:100] if str(error) else "", damaged.name)
