"""Settings of the guide step (plain dataclasses: the command line takes its defaults from
here, so the module imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pertcontrast.errors import ParameterError

MULTIPLE_TARGETS = ("exclude", "combine")


@dataclass(frozen=True)
class AssignmentSettings:
    """A guide is called from ``min_umis`` UMIs on (or its mixture threshold, if higher)
    when they are at least ``min_fraction`` of the cell's guide UMIs; guides with UMIs in
    fewer than ``min_cells_for_mixture`` cells get no mixture."""

    min_umis: int = 3
    min_fraction: float = 0.03
    min_cells_for_mixture: int = 20

    def __post_init__(self):
        if self.min_umis < 1:
            raise ParameterError(f"must be at least 1 (got {self.min_umis}).", param="min_umis")
        if not 0 <= self.min_fraction <= 1:
            raise ParameterError(f"must be between 0 and 1 (got {self.min_fraction}).", param="min_fraction")
        if self.min_cells_for_mixture < 5:
            raise ParameterError(f"must be at least 5 (got {self.min_cells_for_mixture}).", param="min_cells_for_mixture")


@dataclass(frozen=True)
class GuideSettings:
    assignment: AssignmentSettings = field(default_factory=AssignmentSettings)
    multiple_targets: str = "exclude"
    perturbation_key: str = "perturbation"
    knockdown_fdr: float = 0.05
    max_knockdown_controls: int = 5000
    seed: int = 0

    def __post_init__(self):
        if self.multiple_targets not in MULTIPLE_TARGETS:
            raise ParameterError(
                f"must be one of {', '.join(MULTIPLE_TARGETS)} (got {self.multiple_targets!r}).", param="multiple_targets")
        if not 0 < self.knockdown_fdr < 1:
            raise ParameterError(f"must be between 0 and 1 (got {self.knockdown_fdr}).", param="knockdown_fdr")
        if self.max_knockdown_controls < 3:
            raise ParameterError(f"must be at least 3 (got {self.max_knockdown_controls}).", param="max_knockdown_controls")
        if not self.perturbation_key.strip():
            raise ParameterError("must not be empty.", param="perturbation_key")
