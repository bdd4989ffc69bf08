"""``coderig plan``: size the hardware before you buy it."""

from __future__ import annotations

import click


@click.group(invoke_without_command=True)
@click.pass_context
def plan(ctx: click.Context) -> None:
    """From team size and a latency target: peak load, GPUs, replicas, monthly cost."""
