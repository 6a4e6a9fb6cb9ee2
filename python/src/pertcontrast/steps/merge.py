"""``pertcontrast merge``: one .h5ad with the prepared counts and what every step added,
for users who want a single file (the pipeline keeps them apart: counts once)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pertcontrast.data.screen_files import ScreenFiles
from pertcontrast.errors import InputDataError
from pertcontrast.io import rewrite_h5ad

log = logging.getLogger("pertcontrast")


def merge_files(prepared, outputs, output) -> dict[str, list[str]]:
    """Write ``output``: ``prepared`` (counts copied as stored) with the obs columns, obsm
    arrays, uns entries and layers of each step output added, joined by cell name (a later
    output wins a name clash). Returns what was added, by group."""
    prepared = Path(prepared)
    if prepared.suffix != ".h5ad":
        raise InputDataError(f"{prepared}: merge needs the prepared .h5ad (from 'pertcontrast preprocess').")
    obs, elements, added = _collect(prepared, outputs)
    rewrite_h5ad(prepared, output, obs=obs, **elements)
    log.info("merge: added %s", "; ".join(f"{group} {', '.join(keys)}" for group, keys in added.items() if keys))
    return added


def read_merged(prepared, *outputs):
    """The prepared AnnData in memory with what each step output added (as ``merge`` writes it)."""
    from pertcontrast.data.reading import read_anndata

    obs, elements, _ = _collect(Path(prepared), outputs)
    adata = read_anndata(prepared)
    adata.obs = obs
    for group, values in elements.items():
        setattr(adata, group, values)
    return adata


def _collect(prepared: Path, outputs):
    named = {f"output {i + 1} ({Path(path).name})": path for i, path in enumerate(outputs)}
    with ScreenFiles(prepared, **named) as files:
        obs = files.element("prepared", "obs")
        elements = {group: dict(files.element("prepared", group) or {}) for group in ("obsm", "uns", "layers")}
        added = {"obs": [], "obsm": [], "uns": [], "layers": []}
        for step in files.steps()[1:]:
            _add_output(files, step, obs, elements, added)
    return obs, elements, added


def _add_output(files: ScreenFiles, step: str, obs: pd.DataFrame, elements: dict, added: dict) -> None:
    for key in list(files.element(step, "obs").columns):
        obs[key] = files.read_from(step, "obs", key)
        added["obs"].append(key)
    for key in (files.element(step, "obsm") or {}):
        elements["obsm"][key] = files.read_from(step, "obsm", key)
        added["obsm"].append(key)
    for key, value in (files.element(step, "uns") or {}).items():
        elements["uns"][key] = value
        added["uns"].append(key)
    layers = files.element(step, "layers") or {}
    if layers:
        _check_genes(files, step)
        for key in layers:
            elements["layers"][key] = files.read_from(step, "layers", key)
            added["layers"].append(key)


def _check_genes(files: ScreenFiles, step: str) -> None:
    genes = files.element(step, "var").index
    prepared_genes = files.element("prepared", "var").index
    if not genes.equals(prepared_genes):
        raise InputDataError(
            f"{files.path(step)}: its layers are over {len(genes):,} genes, not the {len(prepared_genes):,} genes of "
            f"{files.prepared}; merge takes layers over the prepared file's genes only."
        )
