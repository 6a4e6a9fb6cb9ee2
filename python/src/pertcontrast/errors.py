"""User-facing errors: plain exceptions carrying what went wrong.

Every error a user can cause is one of these. The library raises them whether it is called
from the command line or from a notebook; the CLI edge (``cli/_errors.py``) prints the
message on one line and exits non-zero without a traceback (unless ``--debug``). A
message that concerns one setting names it through ``param`` (the settings field, e.g.
``n_top_genes``), so the library does not need to know the command line's flag names:
the CLI phrases it as the flag (``--n-top-genes``), a notebook sees the field. A message
that names other settings too writes each as ``{param:FIELD}`` (or ``{param:FIELD=VALUE}``
for a value to give it), phrased the same way: ``--max-qc-drop 1`` on the command line,
``max_qc_drop=1`` in a notebook.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SETTING = re.compile(r"\{param:([A-Za-z_][A-Za-z0-9_]*(?:=[^{}]*)?)\}")


class PertcontrastError(Exception):
    """Base class: a problem the user can fix; the message says what to do."""

    exit_code = 1

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def describe(self, param_name: str | None = None, name_of: Callable[[str], str] | None = None) -> str:
        """The message, led by the setting it concerns, or with that setting in place of
        ``{param}``; every ``{param:FIELD}`` (``{param:FIELD=VALUE}``) becomes
        ``name_of("FIELD")`` (``name_of("FIELD=VALUE")``), or the text after the colon as
        it stands without ``name_of``. ``param_name`` overrides how ``param`` is called,
        else ``name_of`` names it too: the CLI names settings by their flags."""
        message = SETTING.sub(lambda match: name_of(match.group(1)) if name_of else match.group(1), self.message)
        name = param_name or (name_of(self.param) if name_of and self.param else self.param)
        if name and "{param}" in message:  # the message says where the setting goes
            return message.replace("{param}", name)
        return f"{name} {message}" if name else message

    def __str__(self) -> str:
        return self.describe()


class InputDataError(PertcontrastError):
    """The input file or its contents are not usable (wrong values, missing columns...)."""


class SamplesheetError(PertcontrastError):
    """The pipeline samplesheet is malformed: names the row, the column and the problem."""


class ParameterError(PertcontrastError):
    """A setting is out of range or inconsistent with the data."""


class ModelLoadError(PertcontrastError):
    """A model folder or registry URI cannot be loaded or does not fit the data."""


class TrainingDivergedError(PertcontrastError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class TrackingError(PertcontrastError):
    """The MLflow tracking server or registry cannot be used as asked."""


class OutputPathError(PertcontrastError):
    """An output path cannot be written as asked (it is an input, its folder is missing or
    read-only, the disk is too full, or another run holds it)."""


class OutputExistsError(PertcontrastError):
    """An output would overwrite something that is already there (pass overwrite to allow it)."""
