"""Where an AnnData keeps its raw counts: ``X`` or a layer (``layers["counts"]`` is the
scverse habit, with normalised values in ``X``)."""

from __future__ import annotations

import pandas as pd

from pertcontrast.errors import InputDataError


def counts_view(adata, layer: str | None, source: str = "adata"):
    """``adata`` itself when its counts are in ``X``; otherwise a light AnnData whose ``X``
    is ``adata.layers[layer]`` (the same matrix object, not a copy, so a sparse layer stays
    sparse), with a copy of ``obs`` (what the analyses add there never reaches ``adata``)."""
    import anndata as ad

    if layer is None:
        return adata
    if layer not in adata.layers:
        raise InputDataError(
            f"{source}: no layer '{layer}' (layers: {', '.join(map(str, adata.layers.keys())) or 'none'}); the model "
            f"reads its raw counts from layers['{layer}'] (set up with layer='{layer}'): add it, or set model.layer."
        )
    return ad.AnnData(X=adata.layers[layer], obs=adata.obs.copy(), var=pd.DataFrame(index=adata.var_names),
                      uns=dict(adata.uns))
