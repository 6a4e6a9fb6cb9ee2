from __future__ import annotations

import click

from pertcontrast.cli._common import (
    device_option,
    echo_command_line,
    progress_lines_option,
    setup_logging,
)
from pertcontrast.module.architecture import (
    LIBRARY_MODES,
    LIKELIHOODS,
    SALIENT_INPUTS,
    SALIENT_PRIORS,
    architecture_defaults,
)
from pertcontrast.train.settings import TrainingSettings

# one source per default: the dataclasses' (the Nextflow schema is checked against these)
ARCHITECTURE = architecture_defaults()
TRAINING = {name: field.default for name, field in TrainingSettings.__dataclass_fields__.items()}


def model_options(function):
    options = [
        click.option("--perturbation-key", default=None, help="Override the perturbation column recorded by preprocess."),
        click.option("--control-label", default=None, help="Override the control label recorded by preprocess."),
        click.option("--batch-key", default=None, help="Override: batch column (categorical covariate)."),
        click.option("--categorical-covariate", "categorical", multiple=True,
                     help="Override the categorical covariates recorded by preprocess (repeatable)."),
        click.option("--continuous-covariate", "continuous", multiple=True,
                     help="Override the continuous covariates recorded by preprocess (repeatable)."),
        click.option("--nuisance-key", "nuisance", multiple=True,
                     help="Numeric obs column the --nuisance-weight term keeps out of the salient latent "
                          "(repeatable; default: S_score and G2M_score when present)."),
        click.option("--n-background", type=int, default=ARCHITECTURE["n_background"], show_default=True,
                     help="Size of the background latent (cycle, clones, sub-states, depth need room)."),
        click.option("--n-salient", type=int, default=ARCHITECTURE["n_salient"], show_default=True,
                     help="Size of the salient latent."),
        click.option("--n-hidden", type=int, default=ARCHITECTURE["n_hidden"], show_default=True,
                     help="Hidden units per layer."),
        click.option("--n-layers", type=int, default=ARCHITECTURE["n_layers"], show_default=True,
                     help="Hidden layers in encoders and decoder."),
        click.option("--dropout", type=float, default=ARCHITECTURE["dropout"], show_default=True,
                     help="Encoder dropout rate (0: dropout noise drowns the weak program signal)."),
        click.option("--likelihood", type=click.Choice(LIKELIHOODS), default=ARCHITECTURE["likelihood"],
                     show_default=True,
                     help="Count likelihood: zero-inflated or plain negative binomial."),
        click.option("--library", type=click.Choice(LIBRARY_MODES), default=ARCHITECTURE["library"],
                     show_default=True,
                     help="Library size: the observed total counts, or a LogNormal latent per cell."),
        click.option("--salient-linear/--no-salient-linear", default=ARCHITECTURE["salient_linear"],
                     show_default=True,
                     help="A direct linear path from the salient latent to expression (additive programs)."),
        click.option("--salient-prior", type=click.Choice(SALIENT_PRIORS), default=ARCHITECTURE["salient_prior"],
                     show_default=True,
                     help="Prior of a perturbed cell's salient latent: standard Normal, or 'perturbation': half "
                          "at 0 (an escaper), half at a centre learned per perturbation, so cells that share a "
                          "response share a code (new cells are encoded without their label)."),
        click.option("--salient-input", type=click.Choice(SALIENT_INPUTS), default=ARCHITECTURE["salient_input"],
                     show_default=True,
                     help="What the salient encoder reads: the log-normalised counts, or 'residual': their "
                          "difference from the decoded background (cycle, clone and depth taken out first)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def training_options(function):
    options = [
        click.option("--max-epochs", type=int, default=None, help="Epochs (default: from the data size, about 6,000 steps, 20-400 epochs; early stopping ends sooner)."),
        click.option("--batch-size", type=int, default=TRAINING["batch_size"], show_default=True,
                     help="Cells per minibatch."),
        click.option("--learning-rate", type=float, default=TRAINING["learning_rate"], show_default=True,
                     help="Adam learning rate."),
        click.option("--control-fraction", type=float, default=TRAINING["control_fraction"], show_default=True,
                     help="Fraction of every minibatch that is control cells."),
        click.option("--warmup-steps", type=int, default=None,
                     help="Steps of KL and penalty warm-up (default: a quarter of all steps, at most 1000; "
                          "0: none)."),
        click.option("--validation-fraction", type=float, default=TRAINING["validation_fraction"], show_default=True,
                     help="Cells held out for validation (early stopping), of controls and of perturbed cells."),
        click.option("--decoy-control-fraction", type=float, default=TRAINING["decoy_control_fraction"],
                     show_default=True,
                     help="Controls trained as if they were a perturbation (decoys): what a perturbation "
                          "without effect looks like to the model, the null of responders, effects and DE "
                          "(recorded in the model folder; export marks them in obs 'pertcontrast_split')."),
        click.option("--early-stopping/--no-early-stopping", default=TRAINING["early_stopping"], show_default=True,
                     help="Stop when the validation loss stops improving."),
        click.option("--early-stopping-patience", type=int, default=TRAINING["early_stopping_patience"],
                     show_default=True, help="Epochs without improvement before stopping."),
        click.option("--gradient-clip-norm", type=float, default=TRAINING["gradient_clip_norm"], show_default=True,
                     help="Clip the gradient norm."),
        click.option("--wasserstein-weight", type=float, default=TRAINING["wasserstein_weight"], show_default=True,
                     help="Weight of the controls' salient penalty (squared 2-Wasserstein to 0)."),
        click.option("--classification-weight", type=float, default=TRAINING["classification_weight"],
                     show_default=True,
                     help="Weight of a perturbation classifier on the salient mean (0: none). It separates the "
                          "perturbations' codes on the training cells, escapers included, and does not carry over "
                          "to new cells."),
        click.option("--independence-weight", type=float, default=TRAINING["independence_weight"],
                     show_default=True,
                     help="Weight of a penalty on the dependence (normalised HSIC) of the salient on the background "
                          "latent, per cell: keeps cell-cycle phase, clone and batch out of the salient space "
                          "(0: none, the default). It also moves effects that lie along a background axis (e.g. a "
                          "response that varies in the controls too) into the background and erodes weak programs."),
        click.option("--nuisance-weight", type=float, default=TRAINING["nuisance_weight"], show_default=True,
                     help="Weight of the same penalty against the cell-cycle scores of 'preprocess' (S_score, "
                          "G2M_score) only: keeps phase out of the salient space and leaves effects along other "
                          "background axes where they are (0: none; inactive when the data has no such "
                          "columns)."),
        click.option("--seed", type=int, default=TRAINING["seed"], show_default=True,
                     help="Random seed (CPU runs are repeatable)."),
        click.option("--sampling", type=click.Choice(["auto", "random", "buffered"]), default=TRAINING["sampling"],
                     show_default=True,
                     help="Minibatch rows: random, or buffered (shuffled file blocks, for data read from disk). "
                          "auto: buffered when the counts stay on disk."),
        click.option("--resident", type=click.Choice(["auto", "on", "off"]), default=TRAINING["resident"],
                     show_default=True,
                     help="Keep all counts on the device (GPU) and build minibatches there. auto: on CUDA when they fit."),
        click.option("--precision", type=click.Choice(["32", "bf16-mixed"]), default=TRAINING["precision"],
                     show_default=True,
                     help="bf16-mixed: bfloat16 matrix products on CUDA (likelihood stays float32)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def tracking_options(function):
    options = [
        click.option("--mlflow/--no-mlflow", "mlflow", default=True, show_default=True, envvar="PERTCONTRAST_MLFLOW",
                     help="Track the run with MLflow (--no-mlflow or PERTCONTRAST_MLFLOW=0 turns it off)."),
        click.option("--mlflow-uri", default=None,
                     help="Tracking server (default: MLFLOW_TRACKING_URI; with neither, an embedded SQLite "
                          "store in OUTPUT/mlflow). Credentials only via MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN."),
        click.option("--experiment-name", default="pertcontrast", show_default=True, help="MLflow experiment."),
        click.option("--run-name", default=None, help="MLflow run name (default: the screen id)."),
        click.option("--screen-id", default=None, help="Screen id for tags and the registry (default: INPUT's file stem)."),
        click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Extra MLflow run tag (repeatable)."),
        click.option("--pipeline-run-name", envvar="PERTCONTRAST_PIPELINE_RUN_NAME", default=None,
                     help="Tag pipeline.run_name (e.g. Nextflow's workflow.runName)."),
        click.option("--pipeline-session-id", envvar="PERTCONTRAST_PIPELINE_SESSION_ID", default=None,
                     help="Tag pipeline.session_id (e.g. Nextflow's workflow.sessionId)."),
        click.option("--pipeline-revision", envvar="PERTCONTRAST_PIPELINE_REVISION", default=None,
                     help="Tag pipeline.revision (the pipeline's git commit or revision)."),
        click.option("--register-model", default=None, metavar="NAME",
                     help="Register the trained model as a new version of NAME in the model registry."),
        click.option("--model-alias", default=None, metavar="ALIAS",
                     help="Point ALIAS (e.g. champion) of --register-model at the new version."),
        click.option("--mlflow-record-only", is_flag=True, default=False,
                     help="Write the run to OUTPUT/mlflow_run.json only, into no store: 'pertcontrast mlflow store' "
                          "later puts the runs of several models into one (the pipeline does, without a server)."),
        click.option("--mlflow-offline-ok", is_flag=True, default=False,
                     help="If the server cannot be reached at start, log to the embedded store instead of failing "
                          "(upload later with 'pertcontrast mlflow sync')."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_tracking_options(options: dict, input_path: str):
    """TrackingOptions from the command's options, or None with --no-mlflow."""
    from pertcontrast.cli._secrets import masked
    from pertcontrast.tracking.session import TrackingOptions

    if not options["mlflow"]:
        if options["register_model"] or options["model_alias"]:
            raise click.UsageError("--register-model/--model-alias need MLflow tracking; drop --no-mlflow.")
        return None
    tags = {}
    for item in options["tags"]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{item}' is not KEY=VALUE.", param_hint="--tag")
        tags[key.strip()] = masked(value, f"--tag {key.strip()}", key)
    for name in ("run_name", "session_id", "revision"):
        if options[f"pipeline_{name}"]:
            tags[f"pipeline.{name}"] = options[f"pipeline_{name}"]
    return TrackingOptions(
        uri=options["mlflow_uri"], experiment_name=options["experiment_name"],
        run_name=masked(options["run_name"], "--run-name") if options["run_name"] else None,
        screen_id=options["screen_id"], tags=tags, register_model=options["register_model"],
        model_alias=options["model_alias"], offline_ok=options["mlflow_offline_ok"],
        record_only=options["mlflow_record_only"],
    )


def build_settings(options: dict):
    names = TrainingSettings.__dataclass_fields__.keys()
    return TrainingSettings(**{k: v for k, v in options.items() if k in names})


def build_model_options(options: dict) -> dict:
    return {
        "perturbation_key": options["perturbation_key"],
        "control_label": options["control_label"],
        "batch_key": options["batch_key"],
        "categorical_covariate_keys": list(options["categorical"]) or None,
        "continuous_covariate_keys": list(options["continuous"]) or None,
        "nuisance_keys": list(options["nuisance"]) or None,
        **{name: options[name] for name in ARCHITECTURE if name in options},
        "classifier": options["classification_weight"] > 0,
        "seed": options["seed"],
    }


@click.command("train")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@model_options
@training_options
@device_option
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Where epoch checkpoints go (default OUTPUT/checkpoints); a re-run with the same settings resumes.")
@click.option("--backed", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Keep the counts on disk and read them in blocks (out-of-core). auto: when they would "
                   "take more than 1 GB in memory.")
@tracking_options
@progress_lines_option
def train_command(input_path, output, device, checkpoint_dir, backed, progress, **options):
    """Train the contrastive VAE on a prepared screen and save the model folder.

    INPUT is the .h5ad written by 'pertcontrast preprocess'. The folder gets the weights
    (model.pt), the config (config.json: architecture, genes, encodings, version) and the
    per-epoch training history (history.csv).

    The run is tracked with MLflow (see docs/mlflow.md): parameters, per-epoch metrics,
    summary metrics, the model folder and plots, written first to OUTPUT/mlflow_run.json
    and then to the tracking server; --register-model adds a registry version.
    """
    from pertcontrast.steps.train import train_file

    setup_logging()
    echo_command_line()
    settings = build_settings(options)
    tracking = build_tracking_options(options, input_path)
    tracker = None
    if tracking is not None:
        from pertcontrast.tracking.session import TrainingTracker

        tracker = TrainingTracker.connect(tracking, output)  # fails here, before training
    model, result = train_file(
        input_path, output, settings, build_model_options(options), device=device,
        checkpoint_dir=checkpoint_dir, progress=progress, tracker=tracker,
        backed={"auto": "auto", "yes": True, "no": False}[backed],
    )
    last = result.history.iloc[-1]
    click.echo(
        f"trained {len(result.history)} epochs in {result.seconds:.0f}s on {model.training['device']} "
        f"(best epoch {result.best_epoch}, validation loss {last.get('validation_loss', float('nan')):.2f} per cell); "
        f"wrote {output}",
        err=True,
    )


COMMANDS = [train_command]
