"""The ``pertcontrast`` command line: one thin command per pipeline step.

Each command parses options and calls one library function; heavy imports happen inside
the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from pertcontrast.versions import __version__
from pertcontrast.cli._group import PertcontrastGroup

COMMAND_MODULES = (
    "simulate",
    "guides",
    "preprocess",
    "train",
    "export",
    "analysis",
    "report",
    "merge",
    "versions",
    "samplesheet",
    "model_registry",
    "mlflow_sync",
)


@click.group(cls=PertcontrastGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pertcontrast")
@click.option(
    "--debug",
    is_flag=True,
    envvar="PERTCONTRAST_DEBUG",
    help="Show full tracebacks for errors (also PERTCONTRAST_DEBUG=1).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """pertcontrast: separate perturbation effects from cell-line background.

    A contrastive VAE (Pyro) gives every cell a *background* latent, the variation it
    shares with the non-targeting controls (cell cycle, clones, batch, depth), and gives
    perturbed cells a *salient* latent that holds the perturbation effect.

    \b
    Typical run:
      pertcontrast simulate --preset standard --seed 0 --output screen.h5ad
      pertcontrast preprocess screen.h5ad --perturbation-key perturbation \\
          --control-label control --batch-key batch --output prepared.h5ad
      pertcontrast train prepared.h5ad --output model/
      pertcontrast export prepared.h5ad --model model/ --output latents.h5ad
      pertcontrast responders prepared.h5ad --latents latents.h5ad --output responders.h5ad
      pertcontrast merge prepared.h5ad latents.h5ad responders.h5ad --output screen.h5ad
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register_commands() -> None:
    import importlib

    from pertcontrast.cli._guard import guard

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"pertcontrast.cli.{name}")
        for command in module.COMMANDS:
            main.add_command(guard(command))


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
