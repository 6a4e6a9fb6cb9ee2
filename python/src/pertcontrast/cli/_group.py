"""Click group that turns unexpected exceptions into one-line errors (unless --debug)."""

from __future__ import annotations

import os
import sys
import traceback

import click

from pertcontrast.cli._errors import quiet_write_echoes
from pertcontrast.errors import PertcontrastError


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get("PERTCONTRAST_DEBUG", "") not in ("", "0", "false")


class PertcontrastGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        with quiet_write_echoes():
            return self._main(argv, prog_name, complete_var, **extra)

    def _main(self, argv, prog_name, complete_var, **extra):
        try:
            return super().main(
                args=argv,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except click.ClickException as error:
            if _debug_requested(argv):
                traceback.print_exc()
            error.show()
            sys.exit(error.exit_code)
        except PertcontrastError as error:  # raised outside a command's guard (cli._guard)
            if _debug_requested(argv):
                traceback.print_exc()
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Exit as exit_:
            sys.exit(exit_.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except MemoryError:
            if _debug_requested(argv):
                raise
            click.echo(
                "Error: out of memory. Lower --batch-size or run on a node with more memory.",
                err=True,
            )
            sys.exit(137)
        except Exception as error:  # noqa: BLE001 - the last line of defence for users
            if _debug_requested(argv):
                raise
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            click.echo(
                f"Error: unexpected {type(error).__name__}: {message} "
                "(rerun with --debug for the traceback and report it)",
                err=True,
            )
            sys.exit(1)
