"""The analyses as methods of :class:`~pertcontrast.ContrastiveModel`, named as in
scvi-tools (``scvi.external.ContrastiveVI``): thin calls of the functions the pipeline
steps use, with the same nulls.

    salient = model.get_latent_representation(adata, store=True)   # .obsm["X_salient"]
    expression = model.get_normalized_expression(adata, kind="background_free")
    table = model.differential_expression(adata)
    calls = model.call_responders(adata)

``adata`` defaults to the AnnData the model was set up (or loaded) with; counts are read
from ``layers[model.layer]`` (``X`` when None). Nothing is written into ``adata`` unless a
method is asked to (``store=True``).

The null of DE and responders is what the steps use (``analysis.cells.null_controls``):
decoy controls (trained as if perturbed) and controls the model never saw. On the
training cells each cell's role comes from the model (:meth:`split_of`); an AnnData
written by ``pertcontrast export`` carries it in ``obs["pertcontrast_split"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pertcontrast.data.layers import counts_view
from pertcontrast.errors import InputDataError, ParameterError

LATENT_KINDS = ("salient", "background")
EXPRESSION_KINDS = ("observed", "counterfactual", "background_free")
# What each kind is computed from in analysis.generate (observed = counterfactual x 2^effect).
GENERATE_MODES = {"observed": ("counterfactual", "effect"), "counterfactual": ("counterfactual",),
                  "background_free": ("background_free",)}
# scvi-tools' names for columns of the DE table (the originals stay). ``bayes_factor`` is
# log10; scvi-tools' ``lnbayes_factor`` is the natural log.
DE_ALIASES = {"proba_de": "prob_de", "lfc_std": "lfc_sd", "bayes_factor_log10": "bayes_factor"}


@dataclass
class ResponderCalls:
    """What :meth:`AnalysisMixin.call_responders` returns."""

    cells: pd.DataFrame  # index: obs names; responder_score, responder_probability, responder_call
    perturbations: pd.DataFrame  # one row per perturbation (see docs/outputs.md, responders.csv)


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))} (got {value!r}).")


class AnalysisMixin:
    """Methods of ContrastiveModel; expects ``encoding``, ``layer``, ``source_adata``,
    ``latents()`` and ``split_of()`` from it."""

    # -- data ---------------------------------------------------------------------------
    def _cells(self, adata, source: str = "adata"):
        """(the user's AnnData, the same cells with raw counts in X)."""
        if adata is None:
            adata = self.source_adata
            if adata is None:
                raise ParameterError("no AnnData to analyse: pass adata=..., or load the model with "
                                     "ContrastiveModel.load(folder, adata=adata).")
        return adata, counts_view(adata, self.layer, source)

    def _split(self, cells) -> np.ndarray:
        """Each cell's role in training: the export's column, else the model's record."""
        from pertcontrast.analysis.cells import SPLIT_COLUMN, training_split

        return training_split(cells.obs.get(SPLIT_COLUMN), self, cells.obs_names)

    def _labels_and_null(self, cells, source: str = "adata") -> tuple[np.ndarray, np.ndarray]:
        """Perturbation labels and the null controls (see the module docstring)."""
        from pertcontrast.analysis.cells import SPLIT_COLUMN, null_controls, perturbation_labels

        labels = perturbation_labels(cells.obs, self.encoding.perturbation_key, source)
        is_control = labels == self.encoding.control_label
        if not is_control.any():
            raise InputDataError(f"{source}: no control cells ('{self.encoding.control_label}' in "
                                 f"obs['{self.encoding.perturbation_key}']); they are the null.")
        obs = pd.DataFrame({SPLIT_COLUMN: self._split(cells)}, index=cells.obs_names)
        return labels, null_controls(obs, is_control, source)

    # -- latents ------------------------------------------------------------------------
    def get_latent_representation(self, adata=None, representation_kind: str = "salient", give_mean: bool = True,
                                  store: bool = False, batch_size: int = 4096, device: str = "auto",
                                  seed: int = 0) -> np.ndarray:
        """Cells x latent dimensions: the posterior mean (or, ``give_mean=False``, one
        posterior sample) of the salient or background latent. ``store=True`` also
        writes it to ``adata.obsm["X_salient"]`` / ``["X_background"]``."""
        _check_choice("representation_kind", representation_kind, LATENT_KINDS)
        adata, cells = self._cells(adata)
        latents = self.latents(cells, batch_size=batch_size, device=device, sample=not give_mean, seed=seed)
        values = latents[representation_kind if give_mean else f"{representation_kind}_sample"]
        if store:
            adata.obsm[f"X_{representation_kind}"] = values
        return values

    # -- expression ---------------------------------------------------------------------
    def get_normalized_expression(self, adata=None, kind: str = "observed", background: str = "marginal",
                                  n_reference: int = 100, max_cells: int | None = None, batch_size: int = 1024,
                                  seed: int = 0, device: str = "auto", return_numpy: bool = False):
        """Decoded expression per 10k counts, cells x the model's genes (dense: subsample
        with ``max_cells`` or pass a subset for large screens):

        - ``observed``: the model's fit of each cell (its background and salient latents);
        - ``counterfactual``: the same cell unperturbed (salient set to 0);
        - ``background_free``: the cell's salient latent on a reference background
          (``background="marginal"``: averaged over ``n_reference`` controls; ``"prior"``).

        A DataFrame indexed by cell (or an array with ``return_numpy``)."""
        from pertcontrast.analysis.generate import GenerateSettings, generate_expression

        _check_choice("kind", kind, EXPRESSION_KINDS)
        adata, cells = self._cells(adata)
        settings = GenerateSettings(modes=GENERATE_MODES[kind], background=background, n_reference=n_reference,
                                    max_cells=max_cells, batch_size=batch_size, seed=seed)
        rows, layers = generate_expression(self, cells, settings, device, source="adata")
        values = layers["counterfactual"] * np.exp2(layers["effect"]) if kind == "observed" else layers[kind]
        if return_numpy:
            return values
        return pd.DataFrame(values, index=cells.obs_names[rows], columns=list(self.encoding.gene_names))

    # -- differential expression ---------------------------------------------------------
    def differential_expression(self, adata=None, perturbations=None, responders_only: bool = False,
                                device: str = "auto", progress: bool = False, **settings) -> pd.DataFrame:
        """The DE table of ``pertcontrast de`` (one row per perturbation x gene, every
        gene of ``adata``; columns in docs/outputs.md) against the null controls, plus
        scvi-tools' names: ``proba_de`` (= ``prob_de``), ``lfc_std`` (= ``lfc_sd``),
        ``bayes_factor_log10`` (= ``bayes_factor``, base 10) and ``lnbayes_factor``
        (natural log, as scvi-tools reports it). ``settings``: fields of
        :class:`~pertcontrast.analysis.de.DESettings` (``delta``, ``fdr``, ``n_samples``...).
        ``responders_only`` needs ``obs["responder_call"]``: ``call_responders(store=True)``."""
        from pertcontrast.analysis.cells import RESPONDER_COLUMN
        from pertcontrast.analysis.de import DESettings
        from pertcontrast.analysis.differential import differential_expression

        de_settings = DESettings(responders_only=responders_only, **settings)
        adata, cells = self._cells(adata)
        if responders_only and RESPONDER_COLUMN not in cells.obs:
            raise InputDataError(f"adata: obs has no '{RESPONDER_COLUMN}'; call model.call_responders(adata, "
                                 "store=True) first, or drop responders_only.")
        _, null = self._labels_and_null(cells)
        result = differential_expression(self, cells, de_settings, device, progress, "adata", perturbations, null)
        table = result.table
        for alias, column in DE_ALIASES.items():
            table[alias] = table[column]
        table["lnbayes_factor"] = table["bayes_factor"] * math.log(10.0)
        return table

    # -- responders ---------------------------------------------------------------------
    def call_responders(self, adata=None, null_quantile: float = 0.875, seed: int = 0, store: bool = False,
                        device: str = "auto") -> ResponderCalls:
        """Which perturbed cells respond (``pertcontrast responders``): per cell a score, a
        posterior probability and a call, scored over the genes on the model's residuals;
        per perturbation the detection test against the null and the responder fraction.
        ``store=True`` also writes the three per-cell columns into ``adata.obs``."""
        from pertcontrast.analysis.cells import unmatched_cells
        from pertcontrast.analysis.decode import ExpressionResiduals
        from pertcontrast.analysis.responders import call_responders

        adata, cells = self._cells(adata)
        labels, null = self._labels_and_null(cells)
        unmatched = unmatched_cells(self._split(cells), labels == self.encoding.control_label)
        salient = self.latents(cells, device=device)["salient"]
        residuals = ExpressionResiduals(self, cells, device, source="adata")
        try:
            result = call_responders(salient, labels, self.encoding.control_label, null, seed=seed,
                                     null_quantile=null_quantile, residuals=residuals, unmatched=unmatched)
        finally:
            residuals.release()
        per_cell = pd.DataFrame({"responder_score": result.score, "responder_probability": result.probability,
                                 "responder_call": result.call}, index=cells.obs_names)
        if store:
            for column in per_cell.columns:
                adata.obs[column] = per_cell[column].to_numpy() if column != "responder_call" else result.call
        return ResponderCalls(per_cell, result.table)
