"""How a library error names the settings it concerns: by field in Python, by flag at the
CLI edge (``PertcontrastError.describe`` and ``cli._errors``)."""

import click
import pytest

from pertcontrast.cli._errors import flag_of, setting_of, translate
from pertcontrast.errors import ParameterError


@click.command()
@click.option("--max-qc-drop", type=float)
@click.option("--min-guide-umis", "min_umis", type=int)
@click.option("--chunked/--in-memory", "chunked", default=None)
@click.option("--samples", "n_samples", type=int)
def command(**_):
    pass


@pytest.fixture
def ctx():
    with click.Context(command) as context:
        yield context


def test_a_setting_leads_the_message_or_takes_its_place():
    assert ParameterError("must be at least 1.", param="max_epochs").describe() == "max_epochs must be at least 1."
    assert str(ParameterError("must be at least 1.", param="max_epochs")) == "max_epochs must be at least 1."
    placed = ParameterError("pass the column with {param}.", param="perturbation_key")
    assert placed.describe() == "pass the column with perturbation_key."
    assert placed.describe("--perturbation-key") == "pass the column with --perturbation-key."
    assert ParameterError("no setting here.").describe() == "no setting here."


def test_other_settings_are_named_as_fields_without_the_cli():
    error = ParameterError("Loosen {param:qc_mads} or pass {param:max_qc_drop=1}; {param:chunked=False} too.")
    assert error.describe() == "Loosen qc_mads or pass max_qc_drop=1; chunked=False too."
    assert str(error) == error.describe()


def test_other_settings_are_named_by_the_callable():
    error = ParameterError("is too low; or lower {param:min_umis}.", param="max_qc_drop")
    assert error.describe(name_of=str.upper) == "MAX_QC_DROP is too low; or lower MIN_UMIS."
    assert error.describe("--given", name_of=str.upper) == "--given is too low; or lower MIN_UMIS."


def test_the_cli_names_settings_by_this_commands_flags(ctx):
    assert flag_of(ctx, "n_samples") == "--samples"
    assert flag_of(ctx, "min_umis") == "--min-guide-umis"
    assert flag_of(ctx, "not_an_option") == "--not-an-option"
    assert setting_of(ctx, "max_qc_drop=1") == "--max-qc-drop 1"
    assert setting_of(ctx, "chunked=False") == "--in-memory"
    assert setting_of(ctx, "chunked=True") == "--chunked"
    error = ParameterError("QC drops too much; loosen {param:qc_mads} or pass {param:max_qc_drop=1} "
                           "({param:chunked=False}, {param:n_samples}).", param="min_umis")
    assert translate(error, ctx, [], []) == ("--min-guide-umis QC drops too much; loosen --qc-mads or pass "
                                             "--max-qc-drop 1 (--in-memory, --samples).")


def test_a_placeholder_needs_a_field_name():
    assert ParameterError("{param:} and {param:1x} stay; {param} is filled.", param="seed").describe() == (
        "{param:} and {param:1x} stay; seed is filled.")
