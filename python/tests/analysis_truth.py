"""Scoring analysis outputs against the truth of a simulated screen (for the quality
tests and benchmarks/analysis_quality.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, average_precision_score, roc_auc_score


def truth_table(adata) -> pd.DataFrame:
    """The simulated perturbations (perturbation, program, has_effect)."""
    table = pd.DataFrame(adata.uns["truth"]["perturbations"])
    table["has_effect"] = table["has_effect"].astype(bool)
    return table.set_index("perturbation")


def simulated_genes(adata) -> list[str]:
    """All genes of the simulated screen (the columns of the true LFC matrix), rebuilt
    from the design recorded in ``uns["truth"]`` (preprocessing drops genes)."""
    from pertcontrast.data.simulate import iter_simulated_chunks

    truth = adata.uns["truth"]
    config = {k: v for k, v in dict(truth["config"]).items()}
    var, _ = next(iter_simulated_chunks(str(truth["preset"]), int(truth["seed"]), **config))
    return list(var.index)


def affected_genes(adata, genes) -> pd.DataFrame:
    """Boolean perturbations x ``genes``: |true lfc| > 0."""
    truth = adata.uns["truth"]
    lfc = pd.DataFrame(np.asarray(truth["perturbation_lfc"]),
                       index=[str(p) for p in truth["perturbation_lfc_rows"]], columns=simulated_genes(adata))
    return lfc.reindex(columns=list(genes)).abs() > 0


def de_metrics(de_table: pd.DataFrame, adata) -> pd.DataFrame:
    """Per perturbation with an effect: AUROC and AUPRC of the model ranking (prob_de,
    ties broken by |lfc_mean|) and of Wilcoxon (-log10 p, ties by |lfc|) against the
    truly affected genes; the mean row last. Perturbations without statistics (no cells
    used) are left out."""
    effect = truth_table(adata)
    genes = list(pd.unique(de_table["gene"]))
    affected = affected_genes(adata, genes)
    rows = []
    for perturbation, part in de_table.groupby("perturbation", observed=True):
        if not effect.loc[str(perturbation), "has_effect"]:
            continue
        part = part.set_index("gene").loc[genes]
        if part["prob_de"].isna().all():
            continue  # no cells used (e.g. no responders)
        y = affected.loc[str(perturbation)].to_numpy()
        model = part["prob_de"].to_numpy() + 1e-6 * np.tanh(part["lfc_mean"].abs().to_numpy())
        wilcoxon = -np.log10(np.maximum(part["wilcoxon_pvalue"].to_numpy(), 1e-300)) \
            + 1e-6 * np.tanh(part["wilcoxon_lfc"].abs().to_numpy())
        rows.append({
            "perturbation": str(perturbation),
            "model_auroc": roc_auc_score(y, model), "model_auprc": average_precision_score(y, model),
            "lfc_auroc": roc_auc_score(y, part["lfc_mean"].abs()),
            "lfc_auprc": average_precision_score(y, part["lfc_mean"].abs()),
            "wilcoxon_auroc": roc_auc_score(y, wilcoxon), "wilcoxon_auprc": average_precision_score(y, wilcoxon),
            **_population_scores(part, y),
            "n_called": int(part["is_de"].sum()), "n_true_called": int((part["is_de"].to_numpy() & y).sum()),
            "n_wilcoxon_called": int(part["wilcoxon_is_de"].sum()),
            "n_wilcoxon_true_called": int((part["wilcoxon_is_de"].to_numpy() & y).sum()),
            "n_affected": int(y.sum()),
        })
    table = pd.DataFrame(rows).set_index("perturbation")
    table.loc["mean"] = table.mean()
    return table


def _population_scores(part: pd.DataFrame, y: np.ndarray) -> dict:
    if "population_prob_de" not in part:
        return {}
    from pertcontrast.analysis.multiple_testing import posterior_fdr_calls

    score = part["population_prob_de"].to_numpy() + 1e-6 * np.tanh(part["population_lfc"].abs().to_numpy())
    calls = posterior_fdr_calls(part["population_prob_de"].to_numpy(), 0.05)
    return {"population_auroc": roc_auc_score(y, score), "population_auprc": average_precision_score(y, score),
            "n_population_called": int(calls.sum()), "n_population_true_called": int((calls & y).sum())}


def false_discoveries(de_table: pd.DataFrame, adata) -> dict[str, int]:
    """Genes called DE (model) for each perturbation without a true effect."""
    effect = truth_table(adata)
    nulls = [p for p in effect.index if not effect.loc[p, "has_effect"]]
    called = de_table[de_table["is_de"].astype(bool)]
    counts = called["perturbation"].astype(str).value_counts()
    return {p: int(counts.get(p, 0)) for p in nulls}


def escaper_auroc(obs: pd.DataFrame) -> float:
    """AUROC of responder_probability for truth_responder vs truth_escaper among cells of
    perturbations with an effect."""
    cells = obs[(obs["truth_responder"] | obs["truth_escaper"]).astype(bool)]
    return float(roc_auc_score(cells["truth_responder"].astype(bool), cells["responder_probability"]))


def cluster_ari(clusters: pd.DataFrame, adata) -> float:
    """ARI between perturbation clusters and the true programs ('none' for no effect)."""
    truth = truth_table(adata)["program"]
    return float(adjusted_rand_score(truth.loc[clusters["perturbation"].astype(str)].to_numpy(),
                                     clusters["cluster"].astype(str).to_numpy()))
