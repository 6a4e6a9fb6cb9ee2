"""Progress a person can follow in any log: a tqdm bar on a terminal (or in a notebook),
plain lines elsewhere (a batch job's log, Nextflow's ``.command.log``), where a bar's
carriage returns would leave one unreadable line or nothing at all.

Lines look like ``train: epoch 3/50, step 1200/5000 (24%), train loss 412.3, validation
loss 420.1, elapsed 0:05:00, ETA 0:15:50``. Within a long pass a line is written at most
every ``interval`` seconds; :meth:`LineProgress.report` (the end of an epoch or a pass)
always writes one.

Nothing here imports the rest of the package: every layer may use it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Iterable, Iterator

LINE_INTERVAL_SECONDS = 15.0


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0,
                 interval: float = LINE_INTERVAL_SECONDS, write: Callable[[str], None] | None = None):
    """A bar on a terminal, else a :class:`LineProgress`; :class:`NoProgress` when not
    ``enabled``. ``write`` sends the lines somewhere else than stderr (e.g. a logger),
    and then never draws a bar."""
    if not enabled:
        return NoProgress()
    if write is None and _interactive():
        return _Bar(total, desc, unit, initial)
    return LineProgress(total, desc, unit, initial, interval, write)


def track(items: Iterable, desc: str, unit: str, enabled: bool = True, total: int | None = None,
          interval: float = LINE_INTERVAL_SECONDS, write: Callable[[str], None] | None = None) -> Iterator:
    """Iterate over ``items`` showing one step per item (a block, a perturbation...)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    bar = progress_bar(total, desc, unit, enabled, interval=interval, write=write)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def _interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def clock(seconds: float) -> str:
    """``H:MM:SS``; ``?`` when not known."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _value(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = True, **values) -> None:
        pass

    def report(self, **values) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """Plain lines: the count done, the latest figures, elapsed time and an ETA from the
    rate of this run (steps resumed from a checkpoint do not count)."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0,
                 interval: float = LINE_INTERVAL_SECONDS, write: Callable[[str], None] | None = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.initial = self.n_written = int(initial)
        self.interval = interval
        self.write = write or _stderr_line
        self.values: dict = {}
        self.started = self.last_line = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_line >= self.interval and self.n < self.total:
            self._line(self.values)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        """The latest figures (e.g. the last step's loss), for the next line."""
        self.values = values

    def report(self, **values) -> None:
        """A line now, ``values`` (e.g. the epoch and its losses) included."""
        self._line(values)

    def close(self) -> None:
        if self.n != self.n_written:
            self._line(self.values)

    def _line(self, values: dict) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        done = self.n - self.initial
        left = (self.total - self.n) * elapsed / done if done > 0 else float("nan")
        values = dict(values)
        fields = [f"epoch {values.pop('epoch')}"] if "epoch" in values else []
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        fields.append(f"{self.unit} {self.n}/{self.total}{percent}")
        fields += [f"{key.replace('_', ' ')} {_value(value)}" for key, value in values.items() if value is not None]
        self.write(f"{self.desc}: {', '.join(fields)}, elapsed {clock(elapsed)}, ETA {clock(left)}")
        self.last_line, self.n_written = now, self.n


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Bar:
    """tqdm, with :meth:`report` shown as the bar's figures."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=1.0, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.bar.set_postfix({k: _value(v) for k, v in values.items()}, refresh=refresh)

    def report(self, **values) -> None:
        self.set_postfix(refresh=True, **values)

    def close(self) -> None:
        self.bar.close()
