"""One duration type for every command's flags: it reads every form any of them took before."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from coderig.cli_types import DURATION, DURATION_OR_OFF


def _command(kind: click.ParamType, default: object = None) -> click.Command:
    @click.command()
    @click.option("--wait", type=kind, default=default)
    def command(wait: float | None) -> None:
        click.echo(repr(wait))

    return command


def _run(kind: click.ParamType, *args: str, default: object = None) -> click.testing.Result:
    return CliRunner().invoke(_command(kind, default), list(args))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1m0.5s", 60.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("100ns", 1e-7),
        ("3", 3.0),  # a bare number is seconds
        ("0.25", 0.25),
        (" 2s ", 2.0),
    ],
)
def test_go_style_durations_and_bare_seconds_become_float_seconds(text, seconds):
    done = _run(DURATION, "--wait", text)
    assert done.exit_code == 0, done.output
    assert float(done.output) == pytest.approx(seconds)


def test_numeric_defaults_pass_through_as_seconds():
    assert _run(DURATION, default=30).output == "30.0\n"
    assert _run(DURATION, default="60s").output == "60.0\n"


def test_no_value_and_no_default_stays_none():
    assert _run(DURATION).output == "None\n"


@pytest.mark.parametrize("bad", ["", "5 s", "5sec", "s", "1.5.2s", "-5s", "off"])
def test_a_bad_duration_is_a_usage_error_naming_the_flag(bad):
    done = _run(DURATION, "--wait", bad)
    assert done.exit_code == 2
    assert "Invalid value for '--wait'" in done.output


def test_off_and_none_switch_a_limit_off_only_where_allowed():
    assert _run(DURATION_OR_OFF, "--wait", "off").output == "None\n"
    assert _run(DURATION_OR_OFF, "--wait", "none").output == "None\n"
    assert _run(DURATION_OR_OFF, "--wait", "1s").output == "1.0\n"
    assert _run(DURATION_OR_OFF, "--wait", "later").exit_code == 2
