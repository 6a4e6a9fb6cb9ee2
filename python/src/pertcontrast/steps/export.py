from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.versions import __version__
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


def export_step(input_path, model_spec: str, output, *, mlflow_uri: str | None = None,
                requested_model: str | None = None, record_lookup: bool = True,
                experiment_name: str = "pertcontrast", batch_size: int = 4096, device: str = "auto",
                sample: bool = False, progress: bool = False) -> dict[str, np.ndarray]:
    """``export_file`` for a model folder or a registry URI: resolves the model and, for a
    ``models:/`` URI with ``record_lookup``, records the export as a lookup run."""
    import contextlib

    from pertcontrast.model_source import load_model

    if requested_model:
        from pertcontrast.tracking.model_registry import load_registered_model

        model, info = load_registered_model(model_spec, mlflow_uri, requested=requested_model)
    else:
        model, info = load_model(model_spec, mlflow_uri)
    recording = contextlib.nullcontext()
    if record_lookup and info.get("model_source") == "registry":
        from pertcontrast.tracking.model_registry import tracking_uri
        from pertcontrast.tracking.side_runs import lookup_run

        recording = lookup_run(info, input_path, output, tracking_uri(mlflow_uri), experiment_name)
    with recording:
        return export_file(input_path, model, output, batch_size=batch_size, device=device, sample=sample,
                           model_info=info, progress=progress)
