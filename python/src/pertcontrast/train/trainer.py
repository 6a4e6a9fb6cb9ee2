"""The training loop: stratified minibatches, Adam with a plateau schedule, step-counted
warm-up, validation-based early stopping, gradient clipping, checkpoints every epoch and
a clear stop on NaN/inf."""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyro
import torch

from pertcontrast.data.loader import (
    CellArrays,
    CountRows,
    DeviceResidentCounts,
    ShuffleBufferEpoch,
    StratifiedBatches,
    make_batch,
    prefetch,
    sequential_batches,
)
from pertcontrast.errors import TrainingDivergedError
from pertcontrast.module.contrastive import ContrastiveModule, TermWeights
from pertcontrast.module.objective import TERM_NAMES, NamedTermsELBO
from pertcontrast.train.checkpoint import load_checkpoint, save_checkpoint
from pertcontrast.train.host_memory import reuse_freed_host_memory
from pertcontrast.train.schedule import EarlyStopping, warmup_factor
from pertcontrast.train.settings import TrainingSettings

EpochCallback = Callable[[dict], None]


@dataclass
class TrainingData:
    counts: CountRows
    cells: CellArrays
    train_rows: np.ndarray
    validation_rows: np.ndarray


@dataclass
class TrainingResult:
    history: pd.DataFrame
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None
    seconds: float
    best_monitored: float = float("nan")  # the best validation objective (early stopping's)
    extra: dict = field(default_factory=dict)


def split_cells(is_control: np.ndarray, validation_fraction: float, decoy_control_fraction: float,
                seed: int) -> dict[str, np.ndarray]:
    """Rows for ``train``, ``validation`` (a random ``validation_fraction`` of controls and
    of perturbed cells: early stopping) and ``decoy`` (a random ``decoy_control_fraction``
    of the controls, trained as if perturbed: the null of the analyses). Sorted, disjoint."""
    rng = np.random.default_rng([seed, 7])
    parts = {"train": [], "validation": [], "decoy": []}
    for group, decoy_fraction in ((np.flatnonzero(is_control), decoy_control_fraction),
                                  (np.flatnonzero(~is_control), 0.0)):
        shuffled = rng.permutation(group)
        n_decoy = int(round(len(group) * decoy_fraction))
        n_validation = int(round((len(group) - n_decoy) * validation_fraction))
        if validation_fraction > 0 and len(group) >= 10:
            n_validation = max(n_validation, 1)
        parts["decoy"].append(shuffled[:n_decoy])
        parts["validation"].append(shuffled[n_decoy : n_decoy + n_validation])
        parts["train"].append(shuffled[n_decoy + n_validation :])
    return {name: np.sort(np.concatenate(rows)) for name, rows in parts.items()}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from pertcontrast.errors import ParameterError

        raise ParameterError("{param} cuda was asked for but no CUDA GPU is visible; use {param} auto or cpu.",
                             param="device")
    return torch.device(device)


def clip_gradients(parameters: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` without its rescaling pass when nothing is to be clipped.

    torch multiplies every gradient by min(1, max_norm / norm) to avoid reading the norm
    back from the device; on CPU there is nothing to wait for, and the multiplication by
    1 (exact, so skipping it changes no number) is a full pass over the gradients.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    # torch scales by max_norm / (norm + 1e-6) when that is below 1 (NaN included)
    if norm.device.type != "cpu" or not float(norm) + 1e-6 <= max_norm:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)


class _Accumulator:
    """Sums of full-screen term estimates over the steps of an epoch."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self.correct = 0
        self.classified = 0

    def add(self, terms: dict[str, float], batch, encoded) -> None:
        """One step's terms (each as it enters the loss), and the classifier's hits."""
        self.count += 1
        row = dict(terms, loss=sum(terms.values()),
                   elbo=-sum(v for k, v in terms.items() if k == "reconstruction" or k.startswith("kl_")))
        for name, value in row.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if "classifier_logits" in encoded:
            perturbed = ~batch["is_control"]
            hits = (encoded["classifier_logits"].argmax(dim=-1) == batch["label"]) & perturbed
            self.correct += int(hits.sum())
            self.classified += int(perturbed.sum())

    def per_cell(self, n_cells: int, prefix: str, scale_by_steps: bool = True) -> dict[str, float]:
        divisor = n_cells * (self.count if scale_by_steps else 1)
        row = {f"{prefix}_{name}": value / divisor for name, value in self.sums.items()}
        for name in TERM_NAMES:
            row.setdefault(f"{prefix}_{name}", 0.0)
        row[f"{prefix}_classifier_accuracy"] = self.correct / self.classified if self.classified else float("nan")
        return row


class Trainer:
    def __init__(
        self,
        module: ContrastiveModule,
        data: TrainingData,
        settings: TrainingSettings,
        device: torch.device,
        checkpoint_file: Path | None = None,
        callbacks: tuple[EpochCallback, ...] = (),
        progress: bool = True,
    ):
        self.module = module.to(device)
        self.elbo = NamedTermsELBO()
        # walking the module tree for its parameters every step costs more than clipping
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        self.data = data
        self.settings = settings
        self.device = device
        self.checkpoint_file = checkpoint_file
        self.callbacks = callbacks
        self.progress = progress
        # fused: one kernel for all parameters instead of a dozen small ops per tensor
        # (on CPU the unfused update was about a tenth of a step)
        self.optimizer = torch.optim.Adam(
            self.parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.lr_factor, patience=settings.lr_patience, min_lr=1e-5
        )
        self.stopper = EarlyStopping(settings.early_stopping_patience)
        # Reading random rows from disk is slow: on-disk data is sampled in shuffled blocks.
        self.buffered = settings.sampling == "buffered" or (settings.sampling == "auto" and data.counts.on_disk)
        self.steps_per_epoch = self._sampler(0).steps
        self.max_epochs = settings.resolve_epochs(self.steps_per_epoch)
        self.warmup_steps = settings.resolve_warmup(self.max_epochs * self.steps_per_epoch)
        self.resident = self._resident_counts()
        self.step = 0
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.last_checkpoint_epoch: int | None = None

    def _resident_counts(self) -> DeviceResidentCounts | None:
        """Counts on the device when asked, or (auto) on CUDA when they use less than half
        of the free device memory; out-of-core (backed) data always streams from disk."""
        mode, matrix = self.settings.resident, self.data.counts.matrix
        if mode == "off" or self.buffered or self.data.counts.on_disk or self.data.counts.gene_index is not None:
            return None
        if mode == "auto":
            if self.device.type != "cuda":
                return None
            free, _ = torch.cuda.mem_get_info(self.device)
            if DeviceResidentCounts.nbytes(matrix) > free / 2:
                return None
        return DeviceResidentCounts(matrix, self.data.cells, self.device)

    def _batch(self, rows: np.ndarray, weights: np.ndarray) -> dict[str, torch.Tensor]:
        if self.resident is not None:
            return self.resident.batch(rows, weights, rows)
        return make_batch(self.data.counts, self.data.cells, rows, weights, rows, self.device)

    def _sampler(self, epoch: int):
        """This epoch's minibatch plan; seeded by (seed, epoch) so a resumed run replays it."""
        data, settings = self.data, self.settings
        rng = np.random.default_rng([settings.seed, epoch])
        if self.buffered:
            return ShuffleBufferEpoch(data.counts, data.cells, data.train_rows, settings.batch_size,
                                      settings.control_fraction, rng)
        is_control = data.cells.is_control[data.train_rows]
        batches = StratifiedBatches(data.train_rows[is_control], data.train_rows[~is_control],
                                    settings.batch_size, settings.control_fraction, rng)
        batches.steps = batches.steps_per_epoch
        return batches

    def _epoch_batches(self, epoch: int):
        sampler = self._sampler(epoch)

        def generate():
            if self.buffered:
                for buffer_counts, buffer_cells, local, weights, rows in sampler:
                    yield make_batch(buffer_counts, buffer_cells, local, weights, rows, self.device)
                return
            for _ in range(sampler.steps):
                rows, weights = sampler.next_batch()
                yield self._batch(rows, weights)

        if self._prefetch() and self.resident is None:
            return prefetch(generate())
        return generate()

    def _prefetch(self) -> bool:
        if self.settings.prefetch != "auto":
            return bool(self.settings.prefetch)
        if self.device.type == "cuda":
            return True
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cores > torch.get_num_threads()

    def _autocast(self):
        enabled = self.settings.precision == "bf16-mixed" and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- checkpoints -------------------------------------------------------------------
    def _state(self, next_epoch: int) -> dict:
        return {
            "next_epoch": next_epoch,
            "step": self.step,
            "module": self.module.state_dict(),
            "best_module": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "stopper": self.stopper.state_dict(),
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def _restore(self, state: dict) -> int:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stopper.load_state_dict(state["stopper"])
        self.best_state = state["best_module"]
        self.history = list(state["history"])
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["next_epoch"])

    # -- one epoch ---------------------------------------------------------------------
    def _loss(self, batch, n_cells: int, weights: TermWeights):
        with self._autocast():
            return self.elbo.loss_and_terms(self.module.model, self.module.guide, batch, n_cells, weights)

    def _weights(self, full: bool = False) -> TermWeights:
        factor = 1.0 if full else warmup_factor(self.step, self.warmup_steps)
        return TermWeights(
            kl=factor,
            wasserstein=self.settings.wasserstein_weight * factor,
            classification=self.settings.classification_weight * factor,
            independence=self.settings.independence_weight * factor,
            nuisance=self.settings.nuisance_weight * factor,
        )

    def _train_epoch(self, epoch: int, bar) -> dict[str, float]:
        data, settings = self.data, self.settings
        n_train = len(data.train_rows)
        accumulator = _Accumulator()
        self.module.train()
        for batch in self._epoch_batches(epoch):
            objective, terms, encoded = self._loss(batch, n_train, self._weights())
            # The objective estimates a sum over the whole screen; the optimizer sees it per
            # cell so learning rates and clipping do not depend on the screen's size.
            loss = objective / n_train
            if not torch.isfinite(loss):
                self._diverged(epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(self.parameters, settings.gradient_clip_norm)
            self.optimizer.step()
            self.step += 1
            accumulator.add(terms, batch, encoded)
            if bar is not None:
                bar.update(1)
                if self.step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4g}", epoch=epoch + 1, refresh=False)
        row = accumulator.per_cell(n_train, "train")
        weights = self._weights()
        row["kl_weight"] = weights.kl
        return row

    @torch.no_grad()
    def evaluate(self, rows: np.ndarray, prefix: str) -> dict[str, float]:
        """Exact sums of every term over ``rows`` (dropout off, fixed sampling seed)."""
        if len(rows) == 0:
            return {}
        self.module.eval()
        accumulator = _Accumulator()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.settings.seed + 1)
            for block in sequential_batches(rows, max(self.settings.batch_size, 1024)):
                # stratum_weight makes every cell count exactly once: the plate's scale is
                # len(rows) / len(block), and this undoes it.
                weight = np.full(len(block), len(block) / len(rows))
                batch = self._batch(block, weight)
                _, terms, encoded = self._loss(batch, len(rows), self._weights(full=True))
                accumulator.add(terms, batch, encoded)
        return accumulator.per_cell(len(rows), prefix, scale_by_steps=False)

    def _diverged(self, epoch: int) -> None:
        where = (
            f"the last good checkpoint (epoch {self.last_checkpoint_epoch}) is kept at {self.checkpoint_file}"
            if self.last_checkpoint_epoch is not None
            else "no checkpoint was written yet"
        )
        raise TrainingDivergedError(
            f"training loss became NaN/inf at epoch {epoch + 1}, step {self.step}; {where}. "
            f"Try a lower {{param:learning_rate}} (now {self.settings.learning_rate:g}), a smaller "
            "{param:gradient_clip_norm}, or {param:likelihood=nb}, and check the input for extreme counts."
        )

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> TrainingResult:
        from pertcontrast.progress import progress_bar

        reuse_freed_host_memory()
        torch.manual_seed(self.settings.seed)
        pyro.set_rng_seed(self.settings.seed)
        start_epoch, resumed = 0, None
        if self.checkpoint_file is not None:
            state = load_checkpoint(self.checkpoint_file)
            if state is not None:
                start_epoch = resumed = self._restore(state)
                self.last_checkpoint_epoch = start_epoch
        started = time.perf_counter()
        total = self.max_epochs * self.steps_per_epoch
        bar = progress_bar(total, "train", "step", self.progress, initial=start_epoch * self.steps_per_epoch)
        stopped_early = False
        try:
            with pyro.validation_enabled(False):
                stopped_early = self._loop(start_epoch, bar)
        finally:
            bar.close()
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        return TrainingResult(
            history=pd.DataFrame(self.history),
            best_epoch=self.stopper.best_epoch + 1,
            best_monitored=self.stopper.best if math.isfinite(self.stopper.best) else float("nan"),
            stopped_early=stopped_early,
            resumed_from_epoch=resumed,
            seconds=time.perf_counter() - started,
        )

    def _monitored(self, row: dict) -> float:
        """What early stopping and the LR schedule watch: the validation objective without
        the classifier term. The classifier can keep improving on training labels while
        the fit to the counts no longer does; stopping on it would reward memorising."""
        prefix = "validation" if f"validation_loss" in row else "train"
        return row[f"{prefix}_loss"] - row[f"{prefix}_classification"]

    def _loop(self, start_epoch: int, bar) -> bool:
        for epoch in range(start_epoch, self.max_epochs):
            tick = time.perf_counter()
            row = {"epoch": epoch + 1}
            row.update(self._train_epoch(epoch, bar))
            row.update(self.evaluate(self.data.validation_rows, "validation"))
            row["learning_rate"] = self.optimizer.param_groups[0]["lr"]
            row["step"] = self.step
            row["seconds"] = time.perf_counter() - tick
            monitored = self._monitored(row)
            if not math.isfinite(monitored):
                self._diverged(epoch)
            warmed_up = self.step >= self.warmup_steps
            if warmed_up:
                self.scheduler.step(monitored)
                if self.stopper.update(monitored, epoch) or self.best_state is None:
                    self.best_state = copy.deepcopy(self.module.state_dict())
            self.history.append(row)
            # Checkpoint before anything else (e.g. a tracking server call) can fail.
            if self.checkpoint_file is not None:
                save_checkpoint(self.checkpoint_file, self._state(epoch + 1))
                self.last_checkpoint_epoch = epoch + 1
            for callback in self.callbacks:
                callback(row)
            if bar is not None:
                bar.report(epoch=f"{epoch + 1}/{self.max_epochs}", train_loss=row["train_loss"],
                           validation_loss=row.get("validation_loss"))
            if self.settings.early_stopping and warmed_up and self.stopper.should_stop:
                return True
        return False
