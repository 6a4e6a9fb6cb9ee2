"""Scores against the truth of a simulated screen (``pertcontrast simulate``): what the
quality tests assert and ``benchmarks/quality.py`` prints, for any method's latents,
calls and DE table. Only simulated screens carry the ``truth_*`` columns this reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from pertcontrast.analysis.multiple_testing import benjamini_hochberg
from pertcontrast.analysis.predictability import knn_predictability


def perturbation_truth(adata) -> pd.DataFrame:
    """The simulated perturbations, indexed by name: program, has_effect (a downstream
    program), knockdown (the target drops; knockdown-only perturbations have no program)."""
    table = pd.DataFrame(adata.uns["truth"]["perturbations"]).copy()
    table["has_effect"] = table["has_effect"].astype(bool)
    table["knockdown"] = table["knockdown"].astype(bool) if "knockdown" in table else table["has_effect"]
    return table.set_index("perturbation")


def screen_genes(adata) -> list[str]:
    """Every gene of the simulated screen (preprocessing may have dropped some): the
    columns of the true log fold changes."""
    return [str(g) for g in adata.uns["truth"]["perturbation_lfc_genes"]]


# a change a screen can see: aligned programs shift every gene loading on a background
# axis a little (on `hard`, two thirds of the affected genes by under 0.1 natural log), so
# recall over every affected gene is capped far below 1 by changes no test detects;
# recall is also reported over the changes at least this large
VISIBLE_LOG2FC = 0.25


def true_lfc(adata, genes) -> pd.DataFrame:
    """Perturbations x ``genes``: the true log fold changes (natural log; 0 off the screen)."""
    truth = adata.uns["truth"]
    lfc = pd.DataFrame(np.asarray(truth["perturbation_lfc"]), columns=screen_genes(adata),
                       index=[str(p) for p in truth["perturbation_lfc_rows"]])
    return lfc.reindex(columns=list(genes)).fillna(0.0)


def representation_scores(salient: np.ndarray, background: np.ndarray, obs: pd.DataFrame, seed: int = 0) -> dict:
    """k-NN predictability above chance (see ``knn_predictability``) among truly responding
    cells: the program and the perturbation from the salient latent (what it should
    hold), phase, clone and batch from it (leakage), the program from the background."""
    responders = obs["truth_responder"].to_numpy(bool)
    column = lambda name: obs[name].astype(str).to_numpy()[responders]  # noqa: E731
    salient, background = np.asarray(salient)[responders], np.asarray(background)[responders]
    scores = {"program_from_salient": knn_predictability(salient, column("truth_program"), seed=seed),
              "perturbation_from_salient": knn_predictability(salient, column("perturbation"), seed=seed)}
    for name, key in (("phase", "truth_phase"), ("clone", "truth_clone"), ("batch", "batch")):
        if key in obs:
            scores[f"{name}_in_salient"] = knn_predictability(salient, column(key), seed=seed)
    scores["program_in_background"] = knn_predictability(background, column("truth_program"), seed=seed)
    return scores


def escaper_auroc(score: np.ndarray, obs: pd.DataFrame) -> float:
    """AUROC of a per-cell score for truly responding cells against escapers (cells of
    perturbations with a program whose knockdown failed)."""
    cells = (obs["truth_responder"] | obs["truth_escaper"]).to_numpy(bool)
    return float(roc_auc_score(obs["truth_responder"].to_numpy(bool)[cells], np.asarray(score)[cells]))


def responder_rates(called: np.ndarray, obs: pd.DataFrame, truth: pd.DataFrame, key: str = "perturbation") -> dict:
    """Fraction called responders among truly responding cells (TPR), escapers, cells of
    perturbations with no effect at all, and of knockdown-only perturbations."""
    called = np.asarray(called, bool)
    labels = obs[key].astype(str)
    no_effect = labels.isin(truth.index[~truth.has_effect & ~truth.knockdown]).to_numpy()
    knockdown_only = labels.isin(truth.index[~truth.has_effect & truth.knockdown]).to_numpy()
    rate = lambda mask: float(called[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return {"responder_tpr": rate(obs["truth_responder"].to_numpy(bool)),
            "responder_fpr_escapers": rate(obs["truth_escaper"].to_numpy(bool)),
            "responder_fpr_no_effect": rate(no_effect), "responder_fpr_knockdown_only": rate(knockdown_only)}


def effect_rates(pvalues: pd.Series, truth: pd.DataFrame, fdr: float = 0.05) -> dict:
    """Perturbations called at BH ``fdr`` from per-perturbation p-values: the fraction of
    those with a program (TPR) and of those without one (FPR; ``effect_fpr_no_effect``
    leaves out the knockdown-only ones, whose target gene does change), and the fraction
    of the calls that are false (FDP: what BH bounds in expectation, so it is the number to
    hold against ``fdr``; with many true effects BH may call a null one and still be within it)."""
    called = pd.Series(benjamini_hochberg(pvalues.to_numpy()) < fdr, index=pvalues.index.astype(str))
    has_program = truth.loc[called.index, "has_effect"].to_numpy()
    no_effect = ~has_program & ~truth.loc[called.index, "knockdown"].to_numpy(bool)
    rate = lambda mask: float(called[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return {"effect_tpr": rate(has_program), "effect_fpr": rate(~has_program),
            "effect_fpr_no_effect": rate(no_effect),
            "effect_fdp": float((called & ~has_program).sum() / called.sum()) if called.any() else 0.0}


def de_scores(table: pd.DataFrame, adata, score_column: str, call_column: str | None = None) -> dict:
    """DE against the truly affected genes, over every gene of the screen (a gene missing
    from ``table`` scores lowest and is not called), averaged over perturbations with a
    program: AUROC and AUPRC of ``score_column`` (higher = more DE), and the precision
    and recall of the calls in ``call_column``, recall also over the visible changes
    (true |log2 FC| >= ``VISIBLE_LOG2FC``: ``de_recall_visible``)."""
    genes = screen_genes(adata)
    truth = perturbation_truth(adata)
    size = true_lfc(adata, genes).abs()
    affected, visible = size > 0, size >= VISIBLE_LOG2FC * np.log(2)
    rows = []
    for perturbation, part in table.groupby("perturbation", observed=True):
        if not truth.loc[str(perturbation), "has_effect"]:
            continue
        part = part.drop_duplicates("gene").set_index("gene").reindex(genes)
        y = affected.loc[str(perturbation)].to_numpy()
        score = part[score_column].to_numpy(float)
        if np.isnan(score).all():
            continue
        score = np.where(np.isnan(score), np.nanmin(score) - 1.0, score)
        row = {"auroc": roc_auc_score(y, score), "auprc": average_precision_score(y, score)}
        if call_column:
            calls = part[call_column].fillna(False).to_numpy(bool)
            row["precision"] = float((calls & y).sum() / calls.sum()) if calls.any() else float("nan")
            row["recall"] = float((calls & y).sum() / y.sum())
            seen = visible.loc[str(perturbation)].to_numpy()
            if seen.any():
                row["recall_visible"] = float((calls & seen).sum() / seen.sum())
            row["n_called"] = int(calls.sum())
        rows.append(row)
    frame = pd.DataFrame(rows)
    return {f"de_{k}": float(v) for k, v in frame.mean(numeric_only=True).items()}


def false_de_genes(table: pd.DataFrame, adata, call_column: str = "is_de") -> dict[str, int]:
    """Genes called for each perturbation without a program (knockdown-only ones may
    rightly call their own target)."""
    truth = perturbation_truth(adata)
    counts = table[table[call_column].fillna(False).astype(bool)]["perturbation"].astype(str).value_counts()
    return {p: int(counts.get(p, 0)) for p in truth.index[~truth.has_effect]}


def mean_difference_scores(counts, obs: pd.DataFrame, genes, adata, key: str = "perturbation",
                           control_label: str = "control") -> dict:
    """The naive reference: |difference of mean log-normalised expression| of each
    perturbation's cells against the controls, over ``genes`` (all the screen's)."""
    from pertcontrast.analysis.wilcoxon import log_normalise

    lognorm = log_normalise(counts)
    labels = obs[key].astype(str).to_numpy()
    control_mean = np.asarray(lognorm[labels == control_label].mean(axis=0)).ravel()
    parts = []
    for perturbation in sorted(set(labels) - {control_label}):
        mean = np.asarray(lognorm[labels == perturbation].mean(axis=0)).ravel()
        parts.append(pd.DataFrame({"perturbation": perturbation, "gene": list(genes),
                                   "score": np.abs(mean - control_mean)}))
    return de_scores(pd.concat(parts), adata, "score")
