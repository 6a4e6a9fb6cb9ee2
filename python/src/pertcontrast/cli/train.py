from __future__ import annotations

import click

from pertcontrast.cli._common import (
    device_option,
    echo_command_line,
    progress_option,
    resolve_progress,
    setup_logging,
)


def model_options(function):
    options = [
        click.option("--perturbation-key", default=None, help="Override the perturbation column recorded by preprocess."),
        click.option("--control-label", default=None, help="Override the control label recorded by preprocess."),
        click.option("--batch-key", default=None, help="Override: batch column (categorical covariate)."),
        click.option("--categorical-covariate", "categorical", multiple=True,
                     help="Override the categorical covariates recorded by preprocess (repeatable)."),
        click.option("--continuous-covariate", "continuous", multiple=True,
                     help="Override the continuous covariates recorded by preprocess (repeatable)."),
        click.option("--n-background", type=int, default=10, show_default=True, help="Size of the background latent."),
        click.option("--n-salient", type=int, default=10, show_default=True, help="Size of the salient latent."),
        click.option("--n-hidden", type=int, default=128, show_default=True, help="Hidden units per layer."),
        click.option("--n-layers", type=int, default=1, show_default=True, help="Hidden layers in encoders and decoder."),
        click.option("--dropout", type=float, default=0.1, show_default=True, help="Encoder dropout rate."),
        click.option("--likelihood", type=click.Choice(["zinb", "nb"]), default="zinb", show_default=True,
                     help="Count likelihood: zero-inflated or plain negative binomial."),
        click.option("--library", type=click.Choice(["observed", "latent"]), default="observed", show_default=True,
                     help="Library size: the observed total counts, or a LogNormal latent per cell."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def training_options(function):
    options = [
        click.option("--max-epochs", type=int, default=None, help="Epochs (default: from data size, ~12k steps, 20-400 epochs)."),
        click.option("--batch-size", type=int, default=256, show_default=True, help="Cells per minibatch."),
        click.option("--learning-rate", type=float, default=2e-3, show_default=True, help="Adam learning rate."),
        click.option("--control-fraction", type=float, default=0.3, show_default=True,
                     help="Fraction of every minibatch that is control cells."),
        click.option("--warmup-steps", type=int, default=None,
                     help="Steps of KL and penalty warm-up (default: a quarter of all steps, at most 2000)."),
        click.option("--validation-fraction", type=float, default=0.1, show_default=True, help="Held-out cells for validation."),
        click.option("--early-stopping/--no-early-stopping", default=True, show_default=True,
                     help="Stop when the validation loss stops improving."),
        click.option("--early-stopping-patience", type=int, default=15, show_default=True, help="Epochs without improvement before stopping."),
        click.option("--gradient-clip-norm", type=float, default=50.0, show_default=True, help="Clip the gradient norm."),
        click.option("--wasserstein-weight", type=float, default=5.0, show_default=True,
                     help="Weight of the controls' salient penalty (squared 2-Wasserstein to 0)."),
        click.option("--classification-weight", type=float, default=1.0, show_default=True,
                     help="Weight of the perturbation classifier on the salient mean (0 turns it off)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed (CPU runs are repeatable)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_settings(options: dict):
    from pertcontrast.train.settings import TrainingSettings

    names = TrainingSettings.__dataclass_fields__.keys()
    return TrainingSettings(**{k: v for k, v in options.items() if k in names})


def build_model_options(options: dict) -> dict:
    return {
        "perturbation_key": options["perturbation_key"],
        "control_label": options["control_label"],
        "batch_key": options["batch_key"],
        "categorical_covariate_keys": list(options["categorical"]) or None,
        "continuous_covariate_keys": list(options["continuous"]) or None,
        "n_background": options["n_background"],
        "n_salient": options["n_salient"],
        "n_hidden": options["n_hidden"],
        "n_layers": options["n_layers"],
        "dropout": options["dropout"],
        "likelihood": options["likelihood"],
        "library": options["library"],
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
@progress_option
def train_command(input_path, output, device, checkpoint_dir, progress, **options):
    """Train the contrastive VAE on a prepared screen and save the model folder.

    INPUT is the .h5ad written by 'pertcontrast preprocess'. The folder gets the weights
    (model.pt), the config (config.json: architecture, genes, encodings, version) and the
    per-epoch training history (history.csv).
    """
    from pertcontrast.steps.train import train_file

    setup_logging()
    echo_command_line()
    settings = build_settings(options)
    model, result = train_file(
        input_path, output, settings, build_model_options(options), device=device,
        checkpoint_dir=checkpoint_dir, progress=resolve_progress(progress),
    )
    last = result.history.iloc[-1]
    click.echo(
        f"trained {len(result.history)} epochs in {result.seconds:.0f}s on {model.training['device']} "
        f"(best epoch {result.best_epoch}, validation loss {last.get('validation_loss', float('nan')):.2f} per cell); "
        f"wrote {output}",
        err=True,
    )


COMMANDS = [train_command]
