"""``coderig bench``: attack, report, sweep."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Load-test an OpenAI-compatible endpoint at a fixed rate, open loop."""
