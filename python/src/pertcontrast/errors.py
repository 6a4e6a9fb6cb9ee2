"""User-facing errors.

Every error a user can cause is one of these: the CLI prints its message on one line and
exits non-zero without a traceback (unless ``--debug``). They subclass
``click.ClickException`` so the library raises the same objects whether it is called from
the command line or from a notebook.
"""

import click


class PertcontrastError(click.ClickException):
    """Base class: a problem the user can fix; the message says what to do."""

    exit_code = 1


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


class OutputExistsError(PertcontrastError):
    """An output would overwrite something that is already there (pass overwrite to allow it)."""
