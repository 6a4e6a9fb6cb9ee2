"""Analysis commands: generate, responders, de, effects, calibration (thin wrappers over
pertcontrast.steps.analysis). Each reads the prepared file (PREPARED, the counts) and the
outputs of the steps before it (--latents, --responders), joined by cell name."""

from __future__ import annotations

import click

from pertcontrast.cli._common import (
    device_option,
    echo_command_line,
    progress_lines_option,
    resolve_progress,
    setup_logging,
)

MODEL_HELP = "Model folder from 'pertcontrast train', or a registry URI models:/NAME@ALIAS or models:/NAME/VERSION."
PREPARED = click.argument("prepared", metavar="PREPARED", type=click.Path(exists=True))
STEP_FILE = click.Path(exists=True, dir_okay=False)


def latents_option(function):
    return click.option("--latents", required=True, type=STEP_FILE,
                        help="The .h5ad written by 'pertcontrast export' for PREPARED (salient latents).")(function)


def responders_option(help_text: str):
    return click.option("--responders", type=STEP_FILE, default=None,
                        help=f"The .h5ad written by 'pertcontrast responders' for PREPARED: {help_text}")


def model_source_options(function=None, *, required: bool = True, extra_help: str = ""):
    def decorate(function):
        function = click.option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", default=None,
                                help="Tracking server for models:/ URIs (default: MLFLOW_TRACKING_URI).")(function)
        return click.option("--model", "model_spec", required=required, default=None,
                            help=MODEL_HELP + extra_help)(function)

    return decorate(function) if function is not None else decorate


def label_options(function):
    function = click.option("--control-label", default=None,
                            help="Control label (default: recorded by 'pertcontrast preprocess').")(function)
    return click.option("--perturbation-key", default=None,
                        help="Perturbation column (default: recorded by 'pertcontrast preprocess').")(function)


@click.command("generate")
@PREPARED
@model_source_options
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help=".h5ad to write.")
@click.option("--mode", "modes", type=click.Choice(["counterfactual", "background_free", "effect"]), multiple=True,
              help="Layer(s) to write (repeatable; default: all three).")
@click.option("--background", type=click.Choice(["marginal", "prior"]), default="marginal", show_default=True,
              help="Reference for background_free: average over control cells' backgrounds, or the prior mean.")
@click.option("--n-reference", type=click.IntRange(min=1), default=100, show_default=True,
              help="Control cells whose backgrounds make the marginal reference.")
@click.option("--max-cells", type=click.IntRange(min=1), default=None,
              help="Generate for a random subsample of this many cells (for large screens).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True, help="Cells per block.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the subsample and the reference.")
@device_option
@progress_lines_option
def generate_command(prepared, model_spec, mlflow_uri, output, modes, background, n_reference, max_cells,
                     batch_size, seed, device, progress):
    """Decode expression without the perturbation or without the background.

    PREPARED is the .h5ad from 'pertcontrast preprocess' (or any count file with the
    model's genes). Writes layers (cells x model genes, per 10k counts; effect in log2):
    counterfactual (salient latent set to 0), background_free (the cell's salient latent on
    a reference background) and effect (log2 fold change, model fit vs counterfactual);
    obs holds the cell names only. Layers are dense: for large screens use --max-cells
    (memory ~ cells x genes x 4 bytes x layers).
    """
    from pertcontrast.analysis.generate import MODES, GenerateSettings
    from pertcontrast.model_source import load_model
    from pertcontrast.steps.analysis import generate_file

    setup_logging()
    echo_command_line()
    settings = GenerateSettings(tuple(modes) or MODES, background, n_reference, max_cells, batch_size, seed)
    model, info = load_model(model_spec, mlflow_uri)
    generate_file(prepared, model, output, settings, device, info, resolve_progress(progress))
    click.echo(f"wrote {output}", err=True)


@click.command("responders")
@PREPARED
@latents_option
@model_source_options(required=False, extra_help=(
    " Recommended: the scores are then taken over the genes, on each cell's expression minus the model's fit "
    "of it unperturbed (far fewer escapers called); without it, on the salient latents."))
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help=".h5ad to write.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default=None,
              help="Per-perturbation table (default: responders.csv beside --output).")
@click.option("--null-quantile", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.875,
              show_default=True,
              help="A responder scores above this quantile of the null controls' scores (on its own direction): "
                   "about 1 minus it of the cells that do not respond (escapers) are called.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the cross-fitting split.")
@label_options
@device_option
def responders_command(prepared, latents, model_spec, mlflow_uri, output, table_path, null_quantile, seed,
                       perturbation_key, control_label, device):
    """Call responders and non-responders (escapers) among perturbed cells.

    PREPARED is the .h5ad from 'pertcontrast preprocess' (counts and perturbation labels),
    --latents the export of it. With --model, each perturbed cell's score is the likelihood
    ratio of its counts under the model's fit of it unperturbed times its perturbation's
    effect (estimated over the genes from the perturbation's other cells) against the fit
    alone; without it, its salient mean projected on the perturbation's mean salient
    direction. Effects are cross-fitted (a cell never helps estimate the effect it is
    scored on); the null is the controls the model did not train on. A cell of a detected
    perturbation is a responder when its score is above --null-quantile of the null's.
    Writes obs columns responder_score, responder_probability (a two-component mixture
    against the null, for ranking) and responder_call (control / responder /
    non-responder); responders.csv has one row per perturbation (detection test, sizes).
    """
    from pertcontrast.steps.analysis import responders_file

    setup_logging()
    echo_command_line()
    model, info = (None, None)
    if model_spec is not None:
        from pertcontrast.model_source import load_model

        model, info = load_model(model_spec, mlflow_uri)
    result = responders_file(prepared, latents, output, table_path, null_quantile, seed, perturbation_key, control_label,
                             model, device, info)
    n = int((result.call == "responder").sum())
    click.echo(f"wrote {output}: {n} responders in {len(result.table)} perturbations", err=True)


@click.command("de")
@PREPARED
@model_source_options
@responders_option("responder calls, for --responders-only.")
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Folder to write (de/).")
@click.option("--delta", type=click.FloatRange(min=0, min_open=True), default=0.15, show_default=True,
              help="|log2 fold change| that counts as an effect (prob_de = P(|LFC| > delta)).")
@click.option("--fdr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="False discovery rate of the calls (Benjamini-Hochberg; the posterior expected FDR of posterior_is_de).")
@click.option("--pseudocount", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Added to expression per 10k before log fold changes (model and Wilcoxon); "
                   "damps changes of barely expressed genes.")
@click.option("--samples", "n_samples", type=click.IntRange(min=1), default=25, show_default=True,
              help="Posterior samples per cell.")
@click.option("--max-cells-per-perturbation", type=click.IntRange(min=1), default=500, show_default=True,
              help="Random subsample of each perturbation's cells for the posterior samples "
                   "(the residual test and Wilcoxon use every cell).")
@click.option("--max-control-cells", type=click.IntRange(min=2), default=10000, show_default=True,
              help="Random subsample of the null controls for the Wilcoxon test.")
@click.option("--share-gain", type=click.FloatRange(min=0), default=19.0, show_default=True,
              help="Perturbations that look alike (a shared program) lend each other strength: a gene an "
                   "alike perturbation changed gets up to 1 + this weight in a weighted Benjamini-Hochberg "
                   "(weights scaled to mean 1, shown as de_weight). 0: plain BH per perturbation.")
@click.option("--responders-only/--all-cells", default=False, show_default=True,
              help="Use only cells called responders (needs --responders).")
@click.option("--perturbation", "perturbations", multiple=True,
              help="Only this perturbation (repeatable; default: every perturbation). Only the perturbations "
                   "named lend each other strength (--share-gain).")
@click.option("--top-n", type=click.IntRange(min=1), default=20, show_default=True, help="Genes per list in de_top.csv.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True, help="Cells per block.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsamples and posterior samples.")
@device_option
@progress_lines_option
def de_command(prepared, model_spec, mlflow_uri, responders, output, delta, fdr, pseudocount, n_samples,
               max_cells_per_perturbation, max_control_cells, share_gain, responders_only, perturbations, top_n,
               batch_size, seed, device, progress):
    """Differential expression of every perturbation vs controls.

    PREPARED is the .h5ad from 'pertcontrast preprocess' (the counts). The calls
    (is_de): a t-test on the model's residuals (each cell's log expression minus the
    model's fit of it unperturbed, so cycle, clone, batch and depth are gone) of every
    cell of the perturbation against every null control, a weighted Benjamini-Hochberg at
    --fdr over the perturbation's genes (genes that alike perturbations changed weigh more:
    --share-gain); genes outside the model by Wilcoxon. Beside them the decoded
    counterfactual: paired posterior samples of each perturbed cell decoded with and
    without its salient latent (LFC mean, median, sd, P(|LFC| > delta), Bayes factor,
    posterior_is_de), and a Wilcoxon rank-sum test on log-normalised counts against the
    null controls (BH). Writes de.parquet, de.csv.gz, de_top.csv and de_settings.json into
    --output.
    """
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.model_source import load_model
    from pertcontrast.steps.analysis import de_file

    setup_logging()
    echo_command_line()
    settings = DESettings(delta=delta, fdr=fdr, pseudocount=pseudocount, n_samples=n_samples,
                          max_cells_per_perturbation=max_cells_per_perturbation,
                          max_control_cells=max_control_cells, share_gain=share_gain,
                          responders_only=responders_only, top_n=top_n, batch_size=batch_size, seed=seed)
    model, info = load_model(model_spec, mlflow_uri)
    result = de_file(prepared, model, output, settings, device, info, resolve_progress(progress),
                     list(perturbations) or None, responders=responders)
    n_called = int(result.table["is_de"].sum())
    click.echo(f"wrote {output}: {n_called} DE calls over {len(result.cells_used)} perturbations", err=True)


@click.command("effects")
@PREPARED
@latents_option
@responders_option("responder fractions, and --responders-only.")
@click.option("--de", "de_folder", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder written by 'pertcontrast de'.")
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Folder to write (effects/).")
@click.option("--max-cells", type=click.IntRange(min=2), default=300, show_default=True,
              help="Cells per group (perturbation, controls) for the energy distance.")
@click.option("--permutations", "n_permutations", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Permutations for the energy distance p-value (its resolution is 1 / (1 + permutations)).")
@click.option("--responders-only/--all-cells", default=False, show_default=True,
              help="Energy distance of the responders only.")
@click.option("--top-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Genes in top_up / top_down.")
@click.option("--profile", type=click.Choice(["salient", "lfc"]), default="salient", show_default=True,
              help="Cluster perturbations on their mean salient latent (minus the controls') or on their "
                   "mean LFC over the genes called DE.")
@click.option("--fdr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="A perturbation has an effect when its energy distance to the null controls (controls "
                   "the model did not train on) is significant at this Benjamini-Hochberg FDR; the others "
                   "join the no-effect cluster.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsamples and permutations.")
@label_options
def effects_command(prepared, latents, responders, de_folder, output, max_cells, n_permutations, responders_only,
                    top_n, profile, fdr, seed, perturbation_key, control_label):
    """Perturbation effect table, perturbation clusters and gene programs.

    PREPARED is the .h5ad from 'pertcontrast preprocess', --latents its export and
    --responders (optional) its responder calls. Writes effects.csv,
    perturbation_clusters.csv, perturbation_similarity.csv and gene_programs.csv.
    """
    from pertcontrast.analysis.effects import EffectSettings
    from pertcontrast.steps.analysis import effects_file

    setup_logging()
    echo_command_line()
    settings = EffectSettings(max_cells, n_permutations, responders_only, top_n, profile, fdr, seed)
    table = effects_file(prepared, latents, de_folder, output, settings, responders, perturbation_key, control_label)
    click.echo(f"wrote {output}: {len(table)} perturbations in {table['cluster'].nunique()} clusters", err=True)


@click.command("calibration")
@PREPARED
@latents_option
@model_source_options
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True,
              help="Folder to write (calibration/).")
@click.option("--groups", "n_groups", type=click.IntRange(min=1), default=5,
              show_default=True, help="Pseudo-perturbations: random groups of null controls, sized like real ones.")
@click.option("--fdr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="The level of the effect test (BH) and of the DE calls, as in the real calls.")
@click.option("--de/--no-de", default=True, show_default=True,
              help="Run DE (model and Wilcoxon) on the groups too (most of the time).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the groups and permutations.")
@device_option
@label_options
def calibration_command(prepared, latents, model_spec, mlflow_uri, output, n_groups, fdr, de, seed, device,
                        perturbation_key, control_label):
    """Pseudo-perturbation check: are this screen's calls calibrated?

    Random groups of null controls (decoy controls and controls the model never saw),
    sized like the screen's perturbations, go through the same effect test, responder
    calls and DE as the real perturbations, each against the other null controls. None
    has an effect: a calibrated screen calls no effect, at most ~5% responders and at most
    ~5% of genes. Writes calibration.csv and summary.json into --output (the report shows
    them with --calibration).
    """
    from pertcontrast.analysis.calibration import CalibrationSettings
    from pertcontrast.analysis.de import DESettings
    from pertcontrast.model_source import load_model
    from pertcontrast.steps.calibration import calibration_file

    setup_logging()
    echo_command_line()
    settings = CalibrationSettings(n_groups=n_groups, fdr=fdr, de=de, seed=seed)
    model, info = load_model(model_spec, mlflow_uri)
    result = calibration_file(prepared, latents, model, output, settings, DESettings(fdr=fdr), device,
                              perturbation_key, control_label, info)
    verdict = "within" if result["passed"] else "OUTSIDE"
    click.echo(f"wrote {output}: {result['effects_called']} of {result['n_groups']} pseudo-perturbations called, "
               f"{result['responder_fraction']:.1%} responders; {verdict} the targets", err=True)


COMMANDS = [generate_command, responders_command, de_command, effects_command, calibration_command]
