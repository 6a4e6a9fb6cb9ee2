"""Which cells an analysis uses: perturbation groups, responder filters, subsamples, and
sparse row reads aligned to the model's genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.errors import InputDataError

RESPONDER_COLUMN = "responder_call"
SPLIT_COLUMN = "pertcontrast_split"  # written by export: train, validation, decoy or new
NULL_SPLITS = ("decoy", "new")  # controls trained as if perturbed, or never seen
MIN_NULL_CONTROLS = 10


def perturbation_labels(obs: pd.DataFrame, key: str, source: str = "input") -> np.ndarray:
    if key not in obs:
        raise InputDataError(
            f"{source}: obs has no column '{key}' (the perturbation column); "
            "pass {param} with the right name.", param="perturbation_key"
        )
    return obs[key].astype(str).to_numpy()


def responder_mask(obs: pd.DataFrame, source: str = "input") -> np.ndarray:
    """True for cells called responders by ``pertcontrast responders``."""
    if RESPONDER_COLUMN not in obs:
        raise InputDataError(
            f"{source}: no responder calls (obs '{RESPONDER_COLUMN}'); run 'pertcontrast responders' "
            "first and pass its output with {param:responders}, or drop {param:responders_only}."
        )
    return obs[RESPONDER_COLUMN].astype(str).to_numpy() == "responder"


def null_controls(obs: pd.DataFrame, is_control: np.ndarray, source: str = "input") -> np.ndarray:
    """The null of every comparison with controls: decoy controls (trained as if they
    were a perturbation, they are what a perturbation without effect looks like to the
    model) and controls the model never saw. Data without the split column (written by
    ``pertcontrast export``) is taken as new to the model."""
    if SPLIT_COLUMN not in obs:
        return np.asarray(is_control, bool)
    null = np.asarray(is_control, bool) & obs[SPLIT_COLUMN].astype(str).isin(NULL_SPLITS).to_numpy()
    if null.sum() < MIN_NULL_CONTROLS:
        raise InputDataError(
            f"{source}: only {int(null.sum())} decoy or unseen control cells (obs '{SPLIT_COLUMN}' decoy or "
            f"new); at least {MIN_NULL_CONTROLS} are needed as the null. Train with {{param:decoy_control_fraction}} "
            "above 0, or add control cells the model has not seen."
        )
    return null


def training_split(recorded, model, obs_names) -> np.ndarray | None:
    """Each cell's role in training (train, validation, decoy, new): ``recorded`` (the
    ``pertcontrast_split`` column 'pertcontrast export' wrote), else the model's own record
    of its cells; None without either."""
    if recorded is not None:
        return np.asarray(pd.Series(np.asarray(recorded)).astype(str))
    return model.split_of(obs_names) if model is not None else None


def unmatched_cells(split, is_control: np.ndarray) -> np.ndarray | None:
    """Perturbed cells whose training differs from their null's: on a training screen the
    validation cells (held out for early stopping) were not trained on, while the null,
    the decoy controls, was. Their residuals are larger than a trained cell's, so where
    they sit beside trained cells against a trained null, a test finds a difference that is
    no effect. None when there are none (or no split is known)."""
    if split is None:
        return None
    unmatched = (np.asarray(split).astype(str) == "validation") & ~np.asarray(is_control, bool)
    has_decoys = (np.asarray(split).astype(str) == "decoy").any()
    return unmatched if unmatched.any() and has_decoys else None


def subsample(rows: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_cells`` of ``rows`` (uniformly, without replacement), sorted."""
    rows = np.asarray(rows)
    if max_cells is not None and len(rows) > max_cells:
        rows = rng.choice(rows, size=max_cells, replace=False)
    return np.sort(rows)


def perturbation_groups(
    labels: np.ndarray,
    control_label: str,
    keep: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Rows of each perturbation (sorted by name), optionally restricted to ``keep``;
    perturbations left with no cells are kept with an empty array."""
    groups = {}
    for perturbation in sorted(set(labels) - {control_label}):
        mask = labels == perturbation
        if keep is not None:
            mask &= keep
        groups[perturbation] = np.flatnonzero(mask)
    return groups


def target_columns(perturbations, gene_names) -> np.ndarray:
    """Per perturbation, the column of the gene named like it (its target), -1 for none."""
    position = {str(name): i for i, name in enumerate(gene_names)}
    return np.array([position.get(str(p), -1) for p in perturbations], dtype=int)


def sparse_rows(matrix, rows: np.ndarray, gene_index: np.ndarray | None = None) -> sp.csr_matrix:
    """Rows (sorted) of a cells x genes matrix (in memory or backed) as CSR, with the
    columns reordered to ``gene_index`` when given."""
    rows = np.sort(np.asarray(rows))
    block = matrix[rows]
    block = sp.csr_matrix(block) if not sp.issparse(block) else block.tocsr()
    if gene_index is not None:
        block = block[:, gene_index]
    return sp.csr_matrix(block)
