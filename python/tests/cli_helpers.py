"""Running the CLI in-process from tests."""

from click.testing import CliRunner

from pertcontrast.cli import main


def run(args):
    """(exit code, output) of ``pertcontrast ARGS``."""
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def preprocess_args(path, out, *extra):
    """Arguments of ``pertcontrast preprocess`` for a simulated screen."""
    return ["preprocess", str(path), "--perturbation-key", "perturbation", "--control-label", "control",
            "--output", str(out), *extra]
