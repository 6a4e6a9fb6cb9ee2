"""What runs around every command: its outputs are checked and locked before it starts
(pertcontrast.outputs), and what it raises is translated into one line (cli._errors)."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import click

from pertcontrast.cli._errors import CommandError, translate
from pertcontrast.errors import PertcontrastError
from pertcontrast.outputs import OutputLock, PlannedOutput, check_output_path

# parameters that name something a command writes
OUTPUT_PARAMS = ("output", "output_dir", "qc_dir", "checkpoint_dir", "table_path")
# a rough output size, as a multiple of the inputs' size (the rest need little: 1 MB)
SIZE_FACTOR = {"preprocess": 1.0, "merge": 1.2, "assign-guides": 1.0, "generate": 1.0}


# folders a command only resolves other paths against (never reads as a whole, never
# writes): an output may lie inside them (the pipeline writes beside its launch folder)
REFERENCE_FOLDERS = ("base_dir",)


def _is_input(param: click.Parameter) -> bool:
    return isinstance(param.type, click.Path) and param.type.exists and param.name not in REFERENCE_FOLDERS


def _values(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (tuple, list)) else [value]


def plan(ctx: click.Context) -> tuple[list[Path], list[PlannedOutput]]:
    """The command's input paths and the outputs it will write, from its parameters."""
    inputs, outputs = [], []
    for param in ctx.command.params:
        values = _values(ctx.params.get(param.name))
        if _is_input(param):
            inputs += [Path(v) for v in values]
        elif param.name == "model_spec":
            inputs += [Path(v) for v in values if not str(v).startswith("models:/") and os.path.exists(v)]
        elif param.name in OUTPUT_PARAMS and isinstance(param, click.Option):
            folder = isinstance(param.type, click.Path) and not param.type.file_okay
            outputs += [PlannedOutput(Path(v), folder, param.opts[0]) for v in values]
    return inputs, outputs


def _input_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
    return total


def _check_and_lock(ctx: click.Context, inputs, outputs, stack: contextlib.ExitStack) -> None:
    estimate = int(SIZE_FACTOR.get(ctx.command.name, 0) * _input_bytes(inputs))
    for output in outputs:
        check_output_path(output, inputs, estimate)
    for output in outputs:
        stack.enter_context(OutputLock(output))


def guard(command: click.Command) -> click.Command:
    """Wrap ``command`` (and a group's subcommands) in the output checks and the error
    translation."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard(sub)
    if command.callback is None or getattr(command.callback, "_guarded", False):
        return command
    callback = command.callback

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        ctx = click.get_current_context()
        inputs, outputs = plan(ctx)
        with contextlib.ExitStack() as stack:
            try:
                _check_and_lock(ctx, inputs, outputs, stack)
                return callback(*args, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as error:
                message = translate(error, ctx, inputs, outputs)
                if message is None:
                    raise
                code = error.exit_code if isinstance(error, PertcontrastError) else 1
                raise CommandError(message, code) from error

    guarded._guarded = True
    command.callback = guarded
    return command
