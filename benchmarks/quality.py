"""Quality on cells the models did not train on, for pertcontrast and its peers, from one
command.

For each preset and seed, a screen is simulated (the training cells) together with new
cells of the same screen (``simulate --cell-seed``: same truth, other cells). Every
method is fitted on the training cells with its defaults and scored on both sets:

- pertcontrast (the README's path: preprocess with the batch key, train, latents,
  responders, effects, DE) with its nulls: the decoy controls on the training cells
  (controls it trained as if perturbed), every control on the new cells;
- PCA + Wilcoxon: 50 PCs of log-normalised HVG counts (fitted on the training cells),
  Wilcoxon over all genes;
- scvi-tools' ContrastiveVI with the batch covariate and ``wasserstein_penalty`` (it is a
  benchmark-only dependency: ``pip install -e './python[benchmark]'``).

Scores (``pertcontrast.analysis.truth``): program and perturbation k-NN from the salient
space, phase/clone/batch leakage into it, program leakage into the background, escaper
AUROC, responder TPR and FPR (escapers, no-effect and knockdown-only perturbations),
effect calls (TPR, FPR at BH 0.05), DE AUROC/AUPRC over all genes of the screen and
precision/recall of the calls at their nominal FDR, beside the naive mean-difference
ranking. Everything is cached under ``--workdir`` (screens, models, scores), so a rerun
only computes what is missing.

    python benchmarks/quality.py --presets standard,hard,many --seeds 0,1,2
    python benchmarks/quality.py --presets standard --seeds 0 --methods pertcontrast,pca --json q.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("pertcontrast", "pca", "contrastivevi")
CELL_SETS = ("train", "new")


def screens(folder: Path, preset: str, seed: int, n_cells: int | None):
    """(training cells, new cells, prepared training cells); simulated once per folder."""
    import anndata as ad

    from pertcontrast.data.preprocess import PreprocessSettings, preprocess
    from pertcontrast.data.simulate import simulate

    paths = {name: folder / f"{name}.h5ad" for name in ("train", "new", "prepared")}
    if not all(p.exists() for p in paths.values()):
        overrides = {"n_cells": n_cells} if n_cells else {}
        train = simulate(preset, seed=seed, **overrides)
        new = simulate(preset, seed=seed, cell_seed=1, **overrides)
        settings = PreprocessSettings("perturbation", "control", batch_key="batch")
        prepared, _ = preprocess(train.copy(), settings)
        # the new cells pass the same QC (as new data goes through 'preprocess' before the
        # model sees it): the model learned no low-quality cells, and their odd latents
        # would be an effect of QC, not of the perturbation
        new = new[preprocess(new.copy(), settings)[0].obs_names].copy()
        folder.mkdir(parents=True, exist_ok=True)
        for name, adata in (("train", train[prepared.obs_names].copy()), ("new", new), ("prepared", prepared)):
            adata.write_h5ad(paths[name])
    return tuple(ad.read_h5ad(paths[name]) for name in ("train", "new", "prepared"))


def salient_summary(salient, background, obs) -> dict:
    from pertcontrast.analysis.truth import escaper_auroc, representation_scores

    norm = np.linalg.norm(salient, axis=1)
    controls = obs["perturbation"].astype(str).to_numpy() == "control"
    responders = obs["truth_responder"].to_numpy(bool)
    return {**representation_scores(salient, background, obs),
            "salient_norm_controls_over_responders": float(norm[controls].mean() / norm[responders].mean()),
            "escaper_auroc_norm": escaper_auroc(norm, obs)}


def effect_pvalues(salient, labels, null_controls, seed=0) -> pd.Series:
    from pertcontrast.analysis.energy import energy_test

    pvalues = {}
    for i, perturbation in enumerate(sorted(set(labels) - {"control"})):
        cells = salient[labels == perturbation]
        pvalues[perturbation] = energy_test(cells, salient[null_controls], 200, 300, seed=[seed, i])[1]
    return pd.Series(pvalues)


# -- pertcontrast ------------------------------------------------------------------------
def field_values(pairs) -> dict:
    """``["field=value", ...]`` of the command line as a dict (values as text)."""
    return dict(pair.split("=", 1) for pair in pairs)


def fit_pertcontrast(prepared, folder: Path, args):
    from pertcontrast import ContrastiveModel

    path = folder / "pertcontrast.model"
    if path.exists():
        return ContrastiveModel.load(path)
    model = ContrastiveModel.from_anndata(prepared, **field_values(args.pertcontrast_architecture))
    overrides = field_values(args.pertcontrast_setting)
    model.train(progress=False, device=args.device, max_epochs=args.max_epochs,
                **{key: float(value) for key, value in overrides.items()})
    model.save(path)
    return model


def score_pertcontrast(model, adata, args) -> dict:
    from pertcontrast.analysis.cells import unmatched_cells
    from pertcontrast.analysis.decode import ExpressionResiduals
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.analysis.differential import differential_expression
    from pertcontrast.analysis.responders import call_responders
    from pertcontrast.analysis.truth import (
        de_scores,
        effect_rates,
        escaper_auroc,
        false_de_genes,
        perturbation_truth,
        responder_rates,
    )

    truth = perturbation_truth(adata)
    latents = model.latents(adata, device=args.device)
    salient, obs = latents["salient"], adata.obs
    labels = obs["perturbation"].astype(str).to_numpy()
    null = (labels == "control") & np.isin(model.split_of(adata.obs_names), ["decoy", "new"])
    scores = salient_summary(salient, latents["background"], obs)
    residuals = ExpressionResiduals(model, adata, args.device, source="adata")
    split = model.split_of(adata.obs_names)
    responders = call_responders(salient, labels, "control", null_controls=null, residuals=residuals,
                                 unmatched=unmatched_cells(split, labels == "control"))
    residuals.release()
    scores["escaper_auroc"] = escaper_auroc(responders.score, obs)
    scores["escaper_auroc_probability"] = escaper_auroc(np.nan_to_num(responders.probability), obs)
    scores.update(responder_rates(responders.call == "responder", obs, truth))
    scores.update(effect_rates(effect_pvalues(salient, labels, null), truth))
    detection = responders.table.set_index("perturbation")["detection_pvalue"]
    scores.update({f"detection_{k}": v for k, v in effect_rates(detection, truth).items()})
    if args.de:
        adata.obs["responder_call"] = responders.call
        table = differential_expression(model, adata, DESettings(seed=0), device=args.device,
                                        null_controls=null).table
        scores.update(de_scores(table, adata, "de_score", "is_de"))
        # the model's own ranking (prob_de; genes outside the model rank last)
        scores["de_auroc_model_only"] = de_scores(table, adata, "prob_de")["de_auroc"]
        false = false_de_genes(table, adata)
        scores["false_de_genes_per_null_perturbation"] = float(np.mean(list(false.values()))) if false else 0.0
    return scores


# -- PCA + Wilcoxon ------------------------------------------------------------------------
class LogNormalised:
    """Blocks of log-normalised expression, in the shape ``call_responders`` takes its
    residuals (the null's mean is removed there), with the counts and a model-free fit
    beside them: every cell expected at the controls' mean proportions and its own depth,
    inverse dispersions by moments of the controls. What the model's residuals add over
    this is the background they remove."""

    def __init__(self, adata, controls: np.ndarray, batch_size: int = 2048):
        self.counts, self.batch_size, self.n_genes = adata.X.tocsr(), batch_size, adata.n_vars
        self.gene_names = list(adata.var_names)  # the detection leaves each perturbation's target out
        control_counts = self.counts[np.flatnonzero(controls)]
        depth = np.asarray(control_counts.sum(axis=1)).ravel()
        self.log_proportion = np.log((np.asarray(control_counts.sum(axis=0)).ravel() + 0.5) / depth.sum())
        proportion = np.exp(self.log_proportion)
        # 1 / theta = sum((x - mu)^2 - mu) / sum(mu^2) over the controls, mu = depth x proportion
        squares = proportion**2 * (depth**2).sum()
        excess = (np.asarray(control_counts.power(2).sum(axis=0)).ravel()
                  - 2 * proportion * (control_counts.T @ depth) + squares - proportion * depth.sum())
        self.dispersion = np.clip(squares / np.maximum(excess, 1e-9), 0.01, 1e4)

    def __call__(self, rows):
        from pertcontrast.analysis.decode import ExpressionBlock
        from pertcontrast.analysis.wilcoxon import log_normalise

        for start in range(0, len(rows), self.batch_size):
            block = rows[start : start + self.batch_size]
            counts = self.counts[block]
            depth = np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1.0)
            yield block, ExpressionBlock(log_normalise(counts).toarray().astype(np.float64),
                                         counts.toarray().astype(np.float64),
                                         np.log(depth)[:, None] + self.log_proportion[None, :])


def score_pca(train, prepared, adata, args, cache: dict) -> dict:
    from sklearn.decomposition import PCA

    from pertcontrast.analysis.responders import call_responders
    from pertcontrast.analysis.truth import (
        de_scores,
        effect_rates,
        escaper_auroc,
        perturbation_truth,
        responder_rates,
    )
    from pertcontrast.analysis.wilcoxon import log_normalise, wilcoxon_against_controls, normalise_rows

    genes = list(prepared.var_names)
    if "pca" not in cache:
        cache["pca"] = PCA(50, random_state=0).fit(log_normalise(train[:, genes].X).toarray())
    pcs = cache["pca"].transform(log_normalise(adata[:, genes].X).toarray())
    obs, labels = adata.obs, adata.obs["perturbation"].astype(str).to_numpy()
    controls = labels == "control"
    scores = salient_summary(pcs, pcs, obs)
    scores["escaper_auroc"] = escaper_auroc(np.linalg.norm(pcs - pcs[controls].mean(0), axis=1), obs)
    truth = perturbation_truth(adata)
    scores.update(effect_rates(effect_pvalues(pcs, labels, controls), truth))
    # without a model: pertcontrast's cross-fitted gene-space responder scores on plain
    # log-normalised expression (mixscape-like), to show what the model's residuals add
    responders = call_responders(pcs, labels, "control", null_controls=controls,
                                 residuals=LogNormalised(adata[:, genes], controls))
    scores["escaper_auroc_genes"] = escaper_auroc(responders.score, obs)
    scores.update({f"{k}_genes": v for k, v in responder_rates(responders.call == "responder", obs, truth).items()})
    detection = responders.table.set_index("perturbation")["detection_pvalue"]
    scores.update({f"detection_{k}_genes": v for k, v in effect_rates(detection, truth).items()})
    if args.de:
        counts = adata.X.tocsr()
        control_counts = counts[controls]
        control_mean = np.asarray(normalise_rows(control_counts).mean(axis=0)).ravel()
        control_lognorm = log_normalise(control_counts)
        parts = []
        for perturbation in sorted(set(labels) - {"control"}):
            lfc, p, padj = wilcoxon_against_controls(counts[labels == perturbation], control_lognorm, control_mean)
            parts.append(pd.DataFrame({"perturbation": perturbation, "gene": adata.var_names, "score": -np.log10(
                np.maximum(p, 1e-300)) + 1e-6 * np.tanh(np.abs(lfc)), "called": padj < 0.05}))
        scores.update(de_scores(pd.concat(parts), adata, "score", "called"))
    return scores


# -- ContrastiveVI -------------------------------------------------------------------------
def fit_contrastivevi(prepared, folder: Path, args):
    import scvi

    path = folder / "contrastivevi.model"
    counts = prepared.copy()
    scvi.external.ContrastiveVI.setup_anndata(counts, batch_key="batch")
    if path.exists():
        return scvi.external.ContrastiveVI.load(str(path), adata=counts)
    scvi.settings.seed = 0
    model = scvi.external.ContrastiveVI(counts, n_hidden=128, n_background_latent=16, n_salient_latent=10,
                                        wasserstein_penalty=args.wasserstein_penalty)
    labels = counts.obs["perturbation"].astype(str).to_numpy()
    model.train(background_indices=np.flatnonzero(labels == "control").tolist(),
                target_indices=np.flatnonzero(labels != "control").tolist(), max_epochs=args.contrastivevi_epochs,
                accelerator="gpu" if args.device == "cuda" else "cpu", enable_progress_bar=False, logger=False,
                enable_checkpointing=False)
    model.save(str(path))
    return model


def score_contrastivevi(model, prepared, adata, args) -> dict:
    import scvi

    from pertcontrast.analysis.truth import de_scores, effect_rates, escaper_auroc, perturbation_truth

    cells = adata[:, list(prepared.var_names)].copy()
    scvi.external.ContrastiveVI.setup_anndata(cells, batch_key="batch")
    salient = model.get_latent_representation(cells, representation_kind="salient")
    background = model.get_latent_representation(cells, representation_kind="background")
    obs, labels = cells.obs, cells.obs["perturbation"].astype(str).to_numpy()
    scores = salient_summary(salient, background, obs)
    scores["escaper_auroc"] = escaper_auroc(np.linalg.norm(salient, axis=1), obs)
    scores.update(effect_rates(effect_pvalues(salient, labels, labels == "control"), perturbation_truth(adata)))
    if args.de and args.contrastivevi_de:
        parts = []
        for perturbation in sorted(set(labels) - {"control"}):
            table = model.differential_expression(cells, groupby="perturbation", group1=[perturbation],
                                                  group2="control", silent=True)
            parts.append(pd.DataFrame({"perturbation": perturbation, "gene": table.index,
                                       "score": table["proba_de"].to_numpy(),
                                       "called": table["is_de_fdr_0.05"].to_numpy(bool)}))
        scores.update(de_scores(pd.concat(parts), adata, "score", "called"))
    return scores


def naive_scores(adata, args) -> dict:
    from pertcontrast.analysis.truth import mean_difference_scores

    if not args.de:
        return {}
    return {"de_" + k.removeprefix("de_") + "_naive": v for k, v in
            mean_difference_scores(adata.X.tocsr(), adata.obs, adata.var_names, adata).items()}


def run_one(preset: str, seed: int, args) -> dict:
    """{method: {cell set: scores}} for one screen, from the cache where present."""
    folder = Path(args.workdir) / f"{preset}_seed{seed}"
    train, new, prepared = screens(folder, preset, seed, args.n_cells)
    results = {}
    cache: dict = {}
    for method in args.methods:
        scores_file = folder / f"{method}.scores.json"
        if scores_file.exists() and not (args.rescore == "all" or method in args.rescore.split(",")):
            results[method] = json.loads(scores_file.read_text())
            continue
        started = time.time()
        if method == "pertcontrast":
            model = fit_pertcontrast(prepared, folder, args)
            fitted = time.time()
            out = {name: score_pertcontrast(model, cells.copy(), args)
                   for name, cells in zip(CELL_SETS, (train, new))}
        elif method == "pca":
            fitted = time.time()
            out = {name: score_pca(train, prepared, cells, args, cache) for name, cells in zip(CELL_SETS, (train, new))}
        else:
            model = fit_contrastivevi(prepared, folder, args)
            fitted = time.time()
            out = {name: score_contrastivevi(model, prepared, cells, args) for name, cells in zip(CELL_SETS, (train, new))}
        out["seconds"] = {"fit": round(fitted - started, 1), "score": round(time.time() - fitted, 1)}
        if scores_file.exists():  # a rescore keeps the cached scores it did not recompute (DE with --no-de)
            cached = json.loads(scores_file.read_text())
            out = {key: {**cached.get(key, {}), **value} if key in CELL_SETS else value for key, value in out.items()}
        scores_file.write_text(json.dumps(out, indent=1, default=float))
        results[method] = out
        print(f"{preset} seed {seed} {method}: done ({out['seconds']})", file=sys.stderr, flush=True)
    results["naive"] = {name: naive_scores(cells, args) for name, cells in zip(CELL_SETS, (train, new))}
    return results


def table(all_results: dict) -> pd.DataFrame:
    """Rows: scores; columns: (preset, method, cell set), averaged over seeds."""
    frames = {}
    for (preset, seed), results in all_results.items():
        for method, per_set in results.items():
            for cell_set in CELL_SETS:
                if cell_set in per_set:
                    frames.setdefault((preset, method, cell_set), []).append(pd.Series(per_set[cell_set]))
    return pd.DataFrame({key: pd.concat(series, axis=1).mean(axis=1) for key, series in frames.items()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="standard,hard,many")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n-cells", type=int, default=None, help="override the presets' cell numbers")
    parser.add_argument("--max-epochs", type=int, default=None, help="pertcontrast (default: from the data size)")
    parser.add_argument("--pertcontrast-setting", action="append", default=[], metavar="FIELD=NUMBER",
                        help="a TrainingSettings field for pertcontrast's fit (repeatable), e.g. independence_weight=2")
    parser.add_argument("--pertcontrast-architecture", action="append", default=[], metavar="FIELD=CHOICE",
                        help="a text Architecture field for pertcontrast (repeatable), e.g. salient_prior=perturbation")
    parser.add_argument("--contrastivevi-epochs", type=int, default=100)
    parser.add_argument("--wasserstein-penalty", type=float, default=1.0, help="ContrastiveVI's")
    parser.add_argument("--no-de", dest="de", action="store_false", help="skip DE (faster)")
    parser.add_argument("--no-contrastivevi-de", dest="contrastivevi_de", action="store_false")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default="quality-work")
    parser.add_argument("--rescore", nargs="?", const="all", default="",
                        help="recompute scores, keeping fitted models: all methods, or those named (a,b); "
                             "cached scores not recomputed (DE with --no-de) are kept")
    parser.add_argument("--json", help="also write every score to this file")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    all_results = {(preset, int(seed)): run_one(preset, int(seed), args)
                   for preset in args.presets.split(",") for seed in args.seeds.split(",")}
    summary = table(all_results)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_rows", 200):
        print(summary.round(3).to_string())
    if args.json:
        Path(args.json).write_text(json.dumps({f"{p}/{s}": r for (p, s), r in all_results.items()},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
