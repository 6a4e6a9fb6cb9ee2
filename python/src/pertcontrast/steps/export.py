from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast import __version__
from pertcontrast.data.reading import read_anndata
from pertcontrast.io import write_step_output

EXPORT_KEY = "pertcontrast_export"


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
    """Write ``output``: the cells of ``input_path`` (obs_names) with
    ``.obsm["X_salient"]``, ``.obsm["X_background"]`` (posterior means),
    ``.obs["salient_norm"]``, ``.obs["pertcontrast_split"]`` (train / validation / decoy / new) and the model's identity in ``.uns["pertcontrast_export"]``;
    no counts (they stay in ``input_path``).

    ``.h5ad`` inputs are read from disk block by block, so memory stays bounded by
    ``batch_size``.
    """
    input_path = Path(input_path)
    is_h5ad = input_path.suffix == ".h5ad"
    adata = read_anndata(input_path, backed=is_h5ad)
    try:
        latents = model.latents(adata, batch_size=batch_size, device=device, sample=sample, progress=progress)
        obs_names = adata.obs_names.copy()
    finally:
        if is_h5ad:
            adata.file.close()
    obsm = {"X_salient": latents["salient"], "X_background": latents["background"]}
    if sample:
        obsm["X_salient_sample"] = latents["salient_sample"]
        obsm["X_background_sample"] = latents["background_sample"]
    info = {"pertcontrast_version": __version__, **(model_info or {})}
    # which cells the model trained on: analyses take their null from the others
    split = pd.Categorical(model.split_of(obs_names), categories=["train", "validation", "decoy", "new"])
    write_step_output(output, obs_names, obs={"salient_norm": latents["salient_norm"], "pertcontrast_split": split},
                      obsm=obsm, uns={EXPORT_KEY: info})
    return latents
