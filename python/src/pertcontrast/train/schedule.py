"""Warm-up and early stopping, both counted so they work on any data size."""

from __future__ import annotations

import math


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear ramp to 1 over ``warmup_steps`` optimizer steps (not epochs: a 2M-cell
    screen trains for a few epochs, and an epoch-based warm-up would never finish);
    never 0, since it scales Pyro sites (step 0 gets 1 / warmup_steps)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


class EarlyStopping:
    """Stop when the validation objective has not improved for ``patience`` checks."""

    def __init__(self, patience: int, min_relative_delta: float = 1e-4):
        self.patience = patience
        self.min_relative_delta = min_relative_delta
        self.best = math.inf
        self.best_epoch = -1
        self.bad_checks = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; return True when it is the best so far."""
        threshold = self.best - abs(self.best) * self.min_relative_delta if math.isfinite(self.best) else math.inf
        if value < threshold:
            self.best, self.best_epoch, self.bad_checks = value, epoch, 0
            return True
        self.bad_checks += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_checks >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_checks": self.bad_checks}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_checks = state["best"], state["best_epoch"], state["bad_checks"]
