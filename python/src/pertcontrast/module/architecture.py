"""The shapes and choices that define a model (saved in its config): a plain dataclass,
light to import (the command line reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, fields

LIKELIHOODS = ("zinb", "nb")
LIBRARY_MODES = ("observed", "latent")
SALIENT_PRIORS = ("standard", "perturbation")
SALIENT_INPUTS = ("counts", "residual")


@dataclass(frozen=True)
class Architecture:
    """Everything that defines the shapes of the networks (saved in the model config)."""

    n_genes: int
    n_covariates: int
    n_labels: int
    n_library_groups: int = 1
    n_background: int = 32  # cycle, clones, sub-states and depth need room
    n_salient: int = 10
    n_hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.0  # encoders only
    likelihood: str = "zinb"
    library: str = "observed"
    salient_linear: bool = True  # direct linear path salient -> expression logits
    classifier: bool = False  # the perturbation classifier of the salient mean
    # a perturbed cell's salient prior: half at 0 (escaper), half at a centre learned per
    # perturbation; N(0, I) ("standard") makes a weak program cost each cell its own code
    salient_prior: str = "perturbation"
    salient_input: str = "residual"  # the salient encoder reads the counts minus the decoded background

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.library not in LIBRARY_MODES:
            raise ValueError(f"library must be one of {LIBRARY_MODES}, got {self.library!r}")
        if self.salient_prior not in SALIENT_PRIORS:
            raise ValueError(f"salient_prior must be one of {SALIENT_PRIORS}, got {self.salient_prior!r}")
        if self.salient_input not in SALIENT_INPUTS:
            raise ValueError(f"salient_input must be one of {SALIENT_INPUTS}, got {self.salient_input!r}")


def architecture_defaults() -> dict:
    """The user-settable fields (everything but what the data decides) and their defaults."""
    return {f.name: f.default for f in fields(Architecture) if f.name not in DATA_FIELDS}


DATA_FIELDS = ("n_genes", "n_covariates", "n_labels", "n_library_groups")
