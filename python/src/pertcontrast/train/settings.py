"""Training settings: everything that changes the result of training."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from pertcontrast.errors import ParameterError


@dataclass(frozen=True)
class TrainingSettings:
    max_epochs: int | None = None  # None: chosen from the data size (see resolve_epochs)
    batch_size: int = 256
    learning_rate: float = 2e-3
    # L2 on all weights: at 1e-6 the salient encoder memorised training labels over long
    # runs and escapers drifted off 0 (escaper AUROC 0.90); 1e-3 erases the salient signal
    weight_decay: float = 1e-4
    control_fraction: float = 0.3
    warmup_steps: int | None = None  # KL and penalty warm-up; None: a quarter of the steps, at most 1000
    validation_fraction: float = 0.1
    # Decoy controls: trained with the perturbed cells' objective instead of the controls'
    # (salient latent free, no Wasserstein term), they are what a perturbation without an
    # effect looks like to the trained model, and so the null of responders, effects and
    # DE. Controls trained as controls were pulled to 0 (a null of them finds effects
    # everywhere); controls left out of training are no better, since the perturbed cells
    # they are compared with were trained on.
    decoy_control_fraction: float = 0.2
    early_stopping: bool = True
    early_stopping_patience: int = 15
    lr_patience: int = 6
    lr_factor: float = 0.5
    gradient_clip_norm: float = 50.0
    wasserstein_weight: float = 1.0  # 5 pulled weak programs to 0 with the controls (benchmarks/README.md)
    classification_weight: float = 0.0  # > 0 needs a model set up with a classifier
    # off by default: it keeps phase, clone and batch out of the salient space, but it also
    # moves effects that lie along a background axis into the background (the Papalexi
    # screen) and erodes weak programs (benchmarks/README.md, "Independence of the salient latent")
    independence_weight: float = 0.0
    # the same measure against the named nuisance columns only (the cell-cycle scores of
    # 'preprocess'): keeps phase out of the salient space without moving effects that lie
    # along other background axes (benchmarks/README.md, "The nuisance term")
    nuisance_weight: float = 10.0
    seed: int = 0
    max_steps_auto: int = 6_000
    resident: str = "auto"  # hold the counts on the device: auto (CUDA, when they fit), on, off
    # build the next minibatch in a background thread: True, False, or "auto" (on CUDA, or
    # on CPU when a core is left over by torch's threads: otherwise the thread only
    # competes with the step it should overlap)
    prefetch: bool | str = "auto"
    precision: str = "32"  # "bf16-mixed": bfloat16 matrix products on CUDA, likelihood in float32
    sampling: str = "auto"  # "random" rows, or "buffered" (shuffled file blocks); auto: buffered on disk

    def __post_init__(self):
        checks = [
            (self.max_epochs is None or self.max_epochs >= 1, "max_epochs", "must be at least 1"),
            (self.batch_size >= 2, "batch_size", "must be at least 2"),
            (self.learning_rate > 0, "learning_rate", "must be positive"),
            (0 < self.control_fraction < 1, "control_fraction", "must be between 0 and 1"),
            (self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", "must be 0 or more"),
            (0 <= self.validation_fraction < 0.5, "validation_fraction", "must be in [0, 0.5)"),
            (0 <= self.decoy_control_fraction < 0.8, "decoy_control_fraction", "must be in [0, 0.8)"),
            (self.early_stopping_patience >= 1, "early_stopping_patience", "must be at least 1"),
            (self.gradient_clip_norm > 0, "gradient_clip_norm", "must be positive"),
            (self.wasserstein_weight >= 0, "wasserstein_weight", "must be 0 or more"),
            (self.classification_weight >= 0, "classification_weight", "must be 0 or more"),
            (self.independence_weight >= 0, "independence_weight", "must be 0 or more"),
            (self.nuisance_weight >= 0, "nuisance_weight", "must be 0 or more"),
            (self.resident in ("auto", "on", "off"), "resident", "must be auto, on or off"),
            (self.prefetch in (True, False, "auto"), "prefetch", "must be True, False or auto"),
            (self.precision in ("32", "bf16-mixed"), "precision", "must be 32 or bf16-mixed"),
            (self.sampling in ("auto", "random", "buffered"), "sampling", "must be auto, random or buffered"),
        ]
        for ok, param, message in checks:
            if not ok:
                raise ParameterError(f"{message}.", param=param)

    def resolve_epochs(self, steps_per_epoch: int) -> int:
        if self.max_epochs is not None:
            return self.max_epochs
        return int(min(400, max(20, round(self.max_steps_auto / max(steps_per_epoch, 1)))))

    def resolve_warmup(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(min(1000, total_steps // 4))

    def to_dict(self) -> dict:
        return asdict(self)


def settings_hash(*parts: dict) -> str:
    """A short stable hash of result-affecting settings (names checkpoints, like CellBender)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
