from __future__ import annotations

import platform

import click

PACKAGES = ("pertcontrast", "torch", "pyro-ppl", "scanpy", "anndata", "mlflow", "pandas", "numpy", "scikit-learn", "click")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from pertcontrast import __version__

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        if name == "pertcontrast":  # also right for a source tree run without installing
            versions[name] = __version__
            continue
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
