"""``coderig serve``: the gateway in front of supervised engine replicas."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Serve a code-completion model behind an OpenAI-compatible gateway."""
    raise click.ClickException("not yet")
