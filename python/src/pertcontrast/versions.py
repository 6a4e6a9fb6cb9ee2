"""The version of pertcontrast and of the packages it runs on, in one place: the
``versions`` command (versions.yml of every pipeline task), the MLflow run parameters and
the report's provenance section read it."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("pertcontrast", "torch", "pyro-ppl", "scanpy", "anndata", "mlflow", "pandas", "numpy", "scikit-learn",
            "click")
REPORT_PACKAGES = ("pertcontrast", "torch", "pyro-ppl", "anndata", "scanpy", "umap-learn", "matplotlib", "numpy",
                   "pandas", "scikit-learn", "mlflow")


def _source_version() -> str:
    """The version in python/pyproject.toml, for a source tree run without installing
    (bin/pertcontrast does that)."""
    import tomllib
    from pathlib import Path

    try:
        with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as handle:
            return tomllib.load(handle)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.0.0+unknown"


try:
    __version__ = version("pertcontrast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = _source_version()


def package_versions(packages=PACKAGES) -> dict[str, str]:
    """Python's version and each package's ("not installed" when missing)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        if name == "pertcontrast":  # also right for a source tree run without installing
            versions[name] = __version__
            continue
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
