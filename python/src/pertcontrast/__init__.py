"""pertcontrast: contrastive VAE for Perturb-seq screens.

Every cell gets a *background* latent (variation shared with the non-targeting
controls: cell cycle, clonal sub-states, batch, depth) and perturbed cells get a
*salient* latent that controls do not have, so the salient space holds the
perturbation effect with the cell-line heterogeneity removed.
"""

from importlib.metadata import PackageNotFoundError, version


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


def __getattr__(name):
    # Lazy so `import pertcontrast` (and `pertcontrast --help`) stays fast: torch and pyro load
    # only when the model is actually used.
    if name == "ContrastiveModel":
        from pertcontrast.model import ContrastiveModel

        return ContrastiveModel
    raise AttributeError(f"module 'pertcontrast' has no attribute {name!r}")


__all__ = ["ContrastiveModel", "__version__"]
