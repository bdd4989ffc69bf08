"""What the ``coderig plan`` commands share: option texts and types, and the catalog,
calibration and schedule every command resolves the same way (click errors for bad input)."""

from __future__ import annotations

import math

import click

from coderig.cli_types import with_options
from coderig.on_hours import Schedule
from coderig.plan.catalog import Catalog, load_catalog
from coderig.plan.planner import Calibrated, calibrated

DEFAULT_MODEL = "qwen2.5-coder-7b"


def csv_list(value: str | None) -> list[str]:
    """A comma list option, lower-cased, blanks dropped."""
    return [item.strip().lower() for item in (value or "").split(",") if item.strip()]


PREFIX_CACHE_HELP = (
    "Fraction of each prompt vLLM serves from its prefix cache instead of prefilling it "
    "(0-1, rounded down to whole KV blocks). 0 (default) plans for distinct prompts, the "
    "conservative case; completions of one developer share most of their prompt with the "
    "previous one, so a prefix-aware router can reach far more."
)


WORKLOAD_HELP = (
    "attack: requests at a rate, as `coderig bench attack` sends them; typing: --developers "
    "typing, the script `coderig bench typing` sends (same traffic code and seed): requests "
    "after each pause, cancelled at the next keystroke, continuing the previous prompt."
)
TYPING_PARAMS_HELP = (
    "With --workload typing: a typing-model TOML, as `coderig bench typing --params`."
)
TYPING_PARAMS_FILE = click.Path(exists=True, dir_okay=False)
WINDOW_HELP = (
    "With --workload typing: the gateway's --stable-window-lines (0: prompts as an editor "
    "sends them to the engine directly)."
)
OUTPUT_TOKENS_HELP = "Tokens per answer [default: 128; 64 with --workload typing, as bench typing]."


def output_tokens_for(value: int | None, workload: str) -> int:
    """``--output-tokens``, or its default for the workload (bench typing asks 64)."""
    if value is not None:
        return value
    return 64 if workload == "typing" else 128


def fraction(_ctx, _param, value):
    """Click callback: a share between 0 and 1."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1")
    return value


def load_catalogs(catalog_files: tuple[str, ...]) -> Catalog:
    """The catalog with the user's files over it; a click error for a bad one."""
    try:
        return load_catalog(catalog_files)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def calibration_for(
    catalog: Catalog,
    calibrate_files: tuple[str, ...],
    overrides: dict,
    *,
    with_loo: bool = True,
    refit: bool = False,
) -> Calibrated:
    """The factors to plan with (refitted on ``--calibrate`` files); a click error for a file
    that cannot be read."""
    try:
        return calibrated(catalog, calibrate_files, overrides, with_loo=with_loo, refit=refit)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def schedule_for(hours: str | None, days: str | None, schedule_text: str | None) -> Schedule:
    """When replicas run: ``--schedule`` in serve's syntax, else ``--hours``/``--days``."""
    try:
        if schedule_text and schedule_text.strip().lower() in ("always", "24/7", "none"):
            return Schedule.always()
        if schedule_text:
            return Schedule.parse(schedule_text)
        if hours or days:
            return Schedule.from_hours_days(hours or "0-24", days or "daily")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return Schedule.always()


def json_default(value):
    """``json.dumps`` default: an infinite latency (an overloaded option) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


# serve's --stable-window-* options, as a typing workload renders its prompts with them.
TYPING_WINDOW_OPTIONS = (
    click.option(
        "--stable-window-lines", type=int, default=16, show_default=True, help=WINDOW_HELP
    ),
    click.option(
        "--stable-window-anchor",
        type=click.Choice(["developer", "content"]),
        default="developer",
        show_default=True,
        help="With --workload typing: the gateway's --stable-window-anchor.",
    ),
    click.option(
        "--stable-window-max-drop",
        type=click.FloatRange(0, 0.75, min_open=True),
        default=0.5,
        show_default=True,
        help="With --workload typing: the gateway's --stable-window-max-drop.",
    ),
)


def typing_window_options(command):
    """Add :data:`TYPING_WINDOW_OPTIONS` to a command."""
    return with_options(TYPING_WINDOW_OPTIONS, command)


# What each request of an attack holds.
TOKEN_OPTIONS = (
    click.option("--prompt-tokens", type=int, default=700, show_default=True),
    click.option("--output-tokens", type=int, default=None, help=OUTPUT_TOKENS_HELP),
    click.option(
        "--prefix-cache-hit",
        type=float,
        default=0.0,
        show_default=True,
        callback=fraction,
        help=PREFIX_CACHE_HELP,
    ),
)


def token_options(command):
    """Add :data:`TOKEN_OPTIONS` to a command."""
    return with_options(TOKEN_OPTIONS, command)
