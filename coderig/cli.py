"""The one entry point: ``coderig serve | bench | plan | deploy | engine | top``.

Subcommands are imported when they run (click's documented ``LazyGroup`` pattern): each one
pulls in its own heavy libraries (scipy for plan, aiohttp for bench, FastAPI for serve), and
``coderig bench`` should not pay to import the planner before it sends its first request.
"""

from __future__ import annotations

import importlib

import click

from coderig import __version__

SUBCOMMANDS = {
    "serve": "coderig.serve.cli:serve",
    "bench": "coderig.bench.cli:bench",
    "plan": "coderig.plan.cli:plan",
    "deploy": "coderig.deploy.cli:deploy",
    "engine": "coderig.engines.cli:engine",
    "top": "coderig.top:top",
}


class LazyGroup(click.Group):
    """A group whose subcommands are ``module:attribute`` paths, imported on first use."""

    def __init__(self, *args, lazy_subcommands: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_subcommands:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = self.lazy_subcommands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_subcommands[cmd_name]} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    lazy_subcommands=SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="coderig")
def main() -> None:
    """Host your own code-completion LLM, load-test it, and size the hardware it needs."""
