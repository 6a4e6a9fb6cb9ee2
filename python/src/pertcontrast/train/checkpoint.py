"""Training checkpoints: written atomically each epoch, named by a settings hash, so a
killed or retried job resumes where it stopped and a changed setting starts afresh."""

from __future__ import annotations

from pathlib import Path

import torch

from pertcontrast.io import atomic_path


def checkpoint_path(folder: str | Path, run_hash: str) -> Path:
    return Path(folder) / f"checkpoint-{run_hash}.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict | None:
    """The saved state, or None when there is none (or it is unreadable: start afresh)."""
    if not path.exists():
        return None
    try:
        # Plain tensors, numbers and dicts only: no pickled code is ever loaded.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt checkpoint means training from scratch
        return None
