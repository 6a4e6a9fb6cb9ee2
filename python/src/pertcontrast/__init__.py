"""pertcontrast: contrastive VAE for Perturb-seq screens.

Every cell gets a *background* latent (variation shared with the non-targeting
controls: cell cycle, clonal sub-states, batch, depth) and perturbed cells get a
*salient* latent that controls do not have, so the salient space holds the
perturbation effect with the cell-line heterogeneity removed.
"""

from pertcontrast.versions import __version__


def __getattr__(name):
    # Lazy so `import pertcontrast` (and `pertcontrast --help`) stays fast: torch and pyro load
    # only when the model is actually used.
    if name == "ContrastiveModel":
        from pertcontrast.api import ContrastiveModel

        return ContrastiveModel
    raise AttributeError(f"module 'pertcontrast' has no attribute {name!r}")


__all__ = ["ContrastiveModel", "__version__"]
