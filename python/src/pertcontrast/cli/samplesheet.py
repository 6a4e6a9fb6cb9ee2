from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.command("check-samplesheet")
@click.argument("samplesheet", type=click.Path(exists=True, dir_okay=False))
@click.option("--schema", "schema_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON schema of the samplesheet (default: the copy shipped with pertcontrast).")
@click.option("--base-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder that relative paths in the sheet are resolved from (default: the current folder).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the checked sheet here (CSV, schema column order, local paths made absolute).")
def check_samplesheet_command(samplesheet, schema_path, base_dir, output):
    """Check a pipeline samplesheet (one row per screen) before any work starts.

    Fails on the first problem with a message naming the row (the header is row 1), the
    column and what is wrong: unknown or missing column, empty required value, invalid id,
    duplicate id, a local file that does not exist. URLs (s3://, gs://, https://) are not
    checked; the executor stages them.
    """
    from pertcontrast.data.samplesheet import validate_samplesheet
    from pertcontrast.io import write_table_atomic

    setup_logging()
    echo_command_line()
    table = validate_samplesheet(samplesheet, schema_path, base_dir=base_dir)
    if output:
        write_table_atomic(table, output)
    ids = ", ".join(table["id"].astype(str))
    click.echo(f"{samplesheet}: {len(table)} screen(s) OK: {ids}", err=True)


COMMANDS = [check_samplesheet_command]
