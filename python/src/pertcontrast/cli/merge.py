from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.command("merge")
@click.argument("prepared", metavar="PREPARED", type=click.Path(exists=True, dir_okay=False))
@click.argument("outputs", metavar="[STEP_OUTPUT.h5ad]...", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="Combined .h5ad to write.")
def merge_command(prepared, outputs, output):
    """Write one .h5ad with the prepared counts and what every step added.

    PREPARED is the .h5ad from 'pertcontrast preprocess'; each STEP_OUTPUT (e.g. the
    latents from 'pertcontrast export', the calls from 'pertcontrast responders') adds its
    obs columns, obsm arrays and uns entries, joined by cell name (in the order given: a
    later file wins a name clash). The counts are copied as stored, never loaded.
    """
    from pertcontrast.steps.merge import merge_files

    setup_logging()
    echo_command_line()
    added = merge_files(prepared, outputs, output)
    n_added = sum(len(keys) for keys in added.values())
    click.echo(f"wrote {output}: {n_added} entries added to {prepared}", err=True)


COMMANDS = [merge_command]
