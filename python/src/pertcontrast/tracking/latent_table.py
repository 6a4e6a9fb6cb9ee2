"""The pyfunc's computation without MLflow: a cells x genes count table in, the salient
and background coordinates out (see ``pyfunc.py`` for the input contract)."""

from __future__ import annotations


def _count_matrix(gene_columns):
    """float32 counts of a table of integer or float columns; pandas sparse columns
    (``pd.DataFrame.sparse.from_spmatrix``) become CSR without being densified."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    if len(gene_columns.columns) and all(isinstance(t, pd.SparseDtype) for t in gene_columns.dtypes):
        return sp.csr_matrix(gene_columns.sparse.to_coo(), dtype=np.float32)
    return gene_columns.to_numpy(dtype=np.float32)


def output_columns(n_salient: int, n_background: int) -> list[str]:
    return [f"salient_{i + 1}" for i in range(n_salient)] + [f"background_{i + 1}" for i in range(n_background)]


def latent_table(model, counts):
    """The pyfunc's prediction, also usable without MLflow (tests compare the two)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from pertcontrast.errors import InputDataError

    encoding = model.encoding
    covariates = list(encoding.categorical_covariates) + list(encoding.continuous_covariates)
    if not isinstance(counts, pd.DataFrame):
        raise InputDataError("predict takes a pandas DataFrame: one row per cell, one column per gene.")
    missing_covariates = [c for c in covariates if c not in counts.columns]
    if missing_covariates:
        raise InputDataError(
            f"the input has no column {', '.join(map(repr, missing_covariates))}, which the model uses "
            "as a covariate; add it (one value per cell)."
        )
    genes = pd.Index(encoding.gene_names)
    # Genes are matched by name; the model's check names how many and which are missing.
    positions = model.gene_index(pd.Index(counts.columns.astype(str)), source="input table")
    gene_columns = counts if positions is None else counts.iloc[:, positions]
    matrix = _count_matrix(gene_columns)
    obs = counts[covariates].copy() if covariates else pd.DataFrame(index=counts.index)
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=genes))
    latents = model.latents(adata, device="cpu")
    values = np.concatenate([latents["salient"], latents["background"]], axis=1)
    columns = output_columns(model.architecture.n_salient, model.architecture.n_background)
    return pd.DataFrame(values, index=counts.index, columns=columns)
