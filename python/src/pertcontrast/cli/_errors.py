"""The error translation layer at the CLI edge: library exceptions, OS errors (full or
read-only disk, permissions), HDF5 format errors and text decoding errors become one line
naming the file and what to do. Anything not recognised is left to the group's fallback."""

from __future__ import annotations

import contextlib
import csv
import errno
import re
import sys

import click

from pertcontrast.errors import PertcontrastError

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# how h5py, HDF5 and torch's zip writer report an OS error they met, when they keep no errno
_ERRNO_TEXT = (
    (errno.ENOSPC, re.compile(r"No space left on device|errno = 28\b|Disk quota exceeded")),
    (errno.EROFS, re.compile(r"Read-only file system|errno = 30\b")),
    (errno.EACCES, re.compile(r"Permission denied|errno = 13\b")),
)
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter failed|file write failed|unexpected pos")
_HDF5_FORMAT = re.compile(r"file signature not found|truncated file|bad object header|Unable to (synchronously )?"
                          r"open (file|object)|not an HDF5 file|bad symbol table|addr overflow|wrong B-tree")


# settings fields whose option is named otherwise
FIELD_FLAGS = {"min_umis": "--min-guide-umis", "min_fraction": "--min-guide-fraction",
               "control_labels": "--control-label", "score_cell_cycle": "--cell-cycle",
               "categorical_covariate_keys": "--categorical-covariate",
               "continuous_covariate_keys": "--continuous-covariate", "nuisance_keys": "--nuisance-key",
               # tracking.TrackingOptions and the model registry's Python arguments
               "uri": "--mlflow-uri", "offline_ok": "--mlflow-offline-ok",
               "spec": "--model", "requested": "--requested-model"}


class CommandError(click.ClickException):
    """A translated error: printed as ``Error: MESSAGE`` with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def flag_of(ctx: click.Context | None, param: str | None) -> str | None:
    """The flag that sets the settings field ``param`` in this command (``n_top_genes``
    -> ``--n-top-genes``), or the field's dashed name when the command has no such option."""
    if not param:
        return None
    if param in FIELD_FLAGS:
        return FIELD_FLAGS[param]
    option = _option(ctx, param)
    if option is None:
        return "--" + param.replace("_", "-")
    return next((o for o in option.opts if o.startswith("--")), option.opts[0])


def setting_of(ctx: click.Context | None, spec: str) -> str:
    """How this command gives a setting named ``FIELD`` or ``FIELD=VALUE`` in a message
    (``{param:...}``): its flag, followed by the value (``--max-qc-drop 1``); a boolean
    flag pair gives the flag that sets it so (``chunked=False`` -> ``--in-memory``)."""
    field, has_value, value = spec.partition("=")
    flag = flag_of(ctx, field)
    if not has_value:
        return flag
    option = _option(ctx, field)
    if option is not None and option.is_flag and value in ("True", "False"):
        on, off = option.opts[0], (option.secondary_opts or [None])[0]
        return on if value == "True" else off or f"{on} {value}"
    return f"{flag} {value}"


def _option(ctx: click.Context | None, param: str) -> click.Option | None:
    if ctx is None:
        return None
    dashed = "--" + param.replace("_", "-")
    return next((o for o in ctx.command.params if isinstance(o, click.Option)
                 and (o.name == param or dashed in o.opts)), None)


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def errno_of(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return error.errno
    text = str(error)
    for number, pattern in _ERRNO_TEXT:
        if pattern.search(text):
            return number
    return None


def _write_failure(number: int, where: str) -> str:
    if number in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: the disk is full (no space left on the device); nothing was replaced. Free some space "
                "or write the output elsewhere.")
    if number == errno.EROFS:
        return f"{where}: the file system is read-only; write the output to a writable folder."
    return f"{where}: permission denied; write the output to a folder you may write in, or fix its permissions."


def translate(error: BaseException, ctx: click.Context | None, inputs: list, outputs: list) -> str | None:
    """One line for ``error``, or None when it is not one this layer knows."""
    output_names = ", ".join(str(o.path) for o in outputs) or "the output"
    input_names = ", ".join(str(i) for i in inputs) or "the input"
    for cause in _chain(error):
        if isinstance(cause, PertcontrastError):
            return cause.describe(flag_of(ctx, cause.param), lambda spec: setting_of(ctx, spec))
    for cause in _chain(error):
        number = errno_of(cause)
        if number is not None:
            filename = getattr(cause, "filename", None)
            return _write_failure(number, str(filename) if filename else output_names)
        if isinstance(cause, RuntimeError) and _TORCH_WRITE_FAILED.search(str(cause)):
            return (f"{output_names}: writing failed ({_first_line(cause)}); the disk may be full or the folder "
                    "unwritable. Free some space or write elsewhere.")
        if isinstance(cause, UnicodeDecodeError):
            return (f"{input_names}: not UTF-8 text ({cause.reason} at byte {cause.start}); save the file as UTF-8 "
                    "(e.g. 'iconv -f latin1 -t utf-8').")
        if isinstance(cause, csv.Error):
            return f"{input_names}: not a readable CSV file ({_first_line(cause)}); check its quoting and encoding."
        if isinstance(cause, OSError) and _HDF5_FORMAT.search(str(cause)):
            return (f"{getattr(cause, 'filename', None) or input_names}: not a readable HDF5 file "
                    f"({_first_line(cause)}); it may be truncated or corrupt. Re-copy or re-create it.")
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def quiet_write_echoes():
    """h5py reports a failed write again from every object it frees (hundreds of
    'Exception ignored' tracebacks on a full disk); the command's own error already says
    it, so those echoes are dropped while the command runs."""
    previous, previous_excepthook = sys.unraisablehook, sys.excepthook

    def hook(unraisable):
        if errno_of(unraisable.exc_value) is None:
            previous(unraisable)

    def excepthook(kind, value, traceback):  # Cython prints a freed object's error through it
        if errno_of(value) is None:
            previous_excepthook(kind, value, traceback)

    sys.unraisablehook, sys.excepthook = hook, excepthook
    try:
        yield
    finally:
        # no gc.collect() here: collecting h5py objects of files other code still holds
        # crashed libhdf5 (a segfault in test_guides_inputs on a clean clone)
        sys.unraisablehook, sys.excepthook = previous, previous_excepthook
