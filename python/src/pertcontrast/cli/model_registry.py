from __future__ import annotations

import datetime

import click

from pertcontrast.cli._common import setup_logging

uri_option = click.option(
    "--mlflow-uri", default=None,
    help="Tracking server holding the registry (default: MLFLOW_TRACKING_URI). Credentials only via "
         "MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN.",
)


def _when(milliseconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@click.group("registry")
def registry_group():
    """List, inspect and promote registered pertcontrast models.

    \b
    Examples:
      pertcontrast registry list perturb-model
      pertcontrast registry show perturb-model@champion
      pertcontrast registry resolve perturb-model@champion     # -> models:/perturb-model/3
      pertcontrast registry promote perturb-model 3 --alias champion
    """


@registry_group.command("list")
@click.argument("name")
@uri_option
def list_command(name, mlflow_uri):
    """List the versions of registered model NAME (newest last)."""
    from pertcontrast.tracking.model_registry import list_versions

    setup_logging()
    rows = list_versions(name, mlflow_uri)
    click.echo(f"{'version':>7}  {'aliases':<16} {'screen':<20} {'created':<20} run")
    for row in rows:
        click.echo(
            f"{row['version']:>7}  {','.join(row['aliases']) or '-':<16} {row['tags'].get('screen_id', '-'):<20} "
            f"{_when(row['created']):<20} {row['run_id'] or '-'}"
        )


@registry_group.command("show")
@click.argument("spec", metavar="NAME@ALIAS|NAME/VERSION")
@uri_option
def show_command(spec, mlflow_uri):
    """Show the version an alias or version number points to: run, tags, summary metrics."""
    from pertcontrast.tracking.model_registry import show_version

    setup_logging()
    info = show_version(spec, mlflow_uri)
    click.echo(f"model:        models:/{info['name']}/{info['version']}")
    click.echo(f"aliases:      {', '.join(info['aliases']) or '-'}")
    click.echo(f"run:          {info['run_id'] or '-'} ({info.get('run_name', '-')}, {info.get('run_status', '-')})")
    click.echo(f"source:       {info['source']}")
    click.echo(f"created:      {_when(info['created'])}")
    if info["description"]:
        click.echo(f"description:  {info['description']}")
    for key, value in sorted(info["tags"].items()):
        click.echo(f"tag:          {key} = {value}")
    for key, value in info.get("metrics", {}).items():
        click.echo(f"metric:       {key} = {value:.4g}")


@registry_group.command("resolve")
@click.argument("spec", metavar="NAME@ALIAS|NAME/VERSION|NAME/latest")
@uri_option
def resolve_command(spec, mlflow_uri):
    """Print the fixed models:/NAME/VERSION that SPEC points to now (for pipelines: pin
    an alias once, so every screen uses one version and -resume notices a moved alias)."""
    from pertcontrast.tracking.model_registry import resolve

    setup_logging()
    click.echo(resolve(spec, mlflow_uri))


@registry_group.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", required=True, help="Alias to point at VERSION (e.g. champion); it moves if it exists.")
@uri_option
def promote_command(name, version, alias, mlflow_uri):
    """Point ALIAS of registered model NAME at VERSION."""
    from pertcontrast.tracking.model_registry import promote

    setup_logging()
    previous = promote(name, str(version), alias, mlflow_uri)
    moved = f" (was version {previous})" if previous and previous != str(version) else ""
    click.echo(f"models:/{name}@{alias} -> version {version}{moved}")


COMMANDS = [registry_group]


@registry_group.command("download")
@click.argument("spec", metavar="NAME@ALIAS|NAME/VERSION")
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@click.option("--requested-model", default=None, metavar="models:/NAME@ALIAS",
              help="What was asked for, when SPEC is its pinned version (recorded in registry.json).")
@uri_option
def download_command(spec, output, requested_model, mlflow_uri):
    """Fetch a registered model as a model folder (with registry.json recording its name,
    version and run), usable wherever a model folder is accepted."""
    from pertcontrast.tracking.model_registry import download_model

    setup_logging()
    info = download_model(spec, output, mlflow_uri, requested=requested_model)
    click.echo(f"wrote {output}: models:/{info['model_name']}/{info['model_version']} (run {info['model_run_id'] or '-'})", err=True)
