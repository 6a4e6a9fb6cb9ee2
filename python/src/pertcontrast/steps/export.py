from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast import __version__
from pertcontrast.data.reading import read_anndata
from pertcontrast.io import atomic_path


def export_file(
    input_path: str | Path,
    model,
    output: str | Path,
    batch_size: int = 4096,
    device: str = "auto",
    sample: bool = False,
    model_info: dict | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Write ``output``: the input with ``.obsm["X_salient"]``, ``.obsm["X_background"]``
    (posterior means), ``.obs["salient_norm"]`` and the model's identity in
    ``.uns["pertcontrast_export"]``.

    ``.h5ad`` inputs are read from disk block by block and the new entries are written
    into a copy of the file, so memory stays bounded by ``batch_size``.
    """
    input_path = Path(input_path)
    is_h5ad = input_path.suffix == ".h5ad"
    adata = read_anndata(input_path, backed=is_h5ad)
    latents = model.latents(adata, batch_size=batch_size, device=device, sample=sample, progress=progress)
    obsm = {"X_salient": latents["salient"], "X_background": latents["background"]}
    if sample:
        obsm["X_salient_sample"] = latents["salient_sample"]
        obsm["X_background_sample"] = latents["background_sample"]
    info = {"pertcontrast_version": __version__, **(model_info or {})}
    obs = adata.obs.copy()
    obs["salient_norm"] = latents["salient_norm"]
    # which cells the model trained on: analyses take their null from the others
    obs["pertcontrast_split"] = pd.Categorical(model.split_of(obs.index),
                                               categories=["train", "validation", "decoy", "new"])
    if is_h5ad:
        adata.file.close()
        _write_into_copy(input_path, output, obs, obsm, info)
    else:
        from pertcontrast.io import write_h5ad_atomic

        adata.obs = obs
        for key, value in obsm.items():
            adata.obsm[key] = value
        adata.uns["pertcontrast_export"] = info
        write_h5ad_atomic(adata, output)
    return latents


def _write_into_copy(source: Path, output, obs, obsm: dict, info: dict) -> None:
    import h5py
    from anndata.io import read_elem, write_elem

    with atomic_path(output, suffix=".h5ad") as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            del f["obs"]
            write_elem(f, "obs", obs)
            existing = read_elem(f["obsm"]) if "obsm" in f else {}
            existing.update(obsm)
            if "obsm" in f:
                del f["obsm"]
            write_elem(f, "obsm", existing)
            uns = read_elem(f["uns"]) if "uns" in f else {}
            uns["pertcontrast_export"] = info
            if "uns" in f:
                del f["uns"]
            write_elem(f, "uns", uns)
