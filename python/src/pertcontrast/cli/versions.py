from __future__ import annotations

import click

from pertcontrast.versions import package_versions


@click.command("versions")
@click.option("--process", default=None, help="Nextflow process name: print versions.yml for it.")
def versions_command(process):
    """Print the versions of pertcontrast and its main dependencies (YAML)."""
    versions = package_versions()
    if process:
        click.echo(f'"{process}":')
        for name, value in versions.items():
            click.echo(f"    {name}: {value}")
    else:
        for name, value in versions.items():
            click.echo(f"{name}: {value}")


COMMANDS = [versions_command]
