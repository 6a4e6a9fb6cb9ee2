"""Options and helpers shared by several commands."""

from __future__ import annotations

import logging
import sys

import click

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def device_option(function):
    return click.option(
        "--device",
        type=click.Choice(DEVICE_CHOICES),
        default="auto",
        show_default=True,
        help="Where to compute: 'auto' uses a CUDA GPU when one is visible.",
    )(function)


def progress_option(function):
    """For commands that draw a bar only (no log lines yet): simulate, de, generate."""
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress bars (default: only when stderr is a terminal).",
    )(function)


def progress_lines_option(function):
    """For commands that report progress anywhere (pertcontrast.progress): train, export."""
    return click.option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="Report progress: a bar on a terminal, else a plain line per epoch or block "
        "(at most every 15 s within one) that any log keeps.",
    )(function)


def resolve_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "Warning: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: bool = True) -> None:
    """Library messages (``pertcontrast`` logger) go to stderr, one line each."""
    logger = logging.getLogger("pertcontrast")
    if not any(isinstance(h, _CurrentStderrHandler) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(_ConsoleFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def echo_command_line() -> None:
    """Log the exact command, the version and where the package was loaded from first
    (what was run is then in every log)."""
    from pathlib import Path

    from pertcontrast import versions
    from pertcontrast.cli._secrets import mask_argv
    from pertcontrast.tracking.uris import scrub

    # scrub: a tracking URI with user:password@ must never reach a log.
    logging.getLogger("pertcontrast").info(
        "pertcontrast %s (%s): %s", versions.__version__, Path(versions.__file__).parent,
        " ".join(scrub(a) for a in mask_argv(sys.argv)),
    )
