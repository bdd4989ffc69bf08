"""The one entry point: ``coderig serve | bench | plan | deploy | engine | top``."""

from __future__ import annotations

import click

from coderig import __version__
from coderig.bench.cli import bench
from coderig.deploy.cli import deploy
from coderig.engines.cli import engine
from coderig.plan.cli import plan
from coderig.serve.cli import serve
from coderig.top import top


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coderig")
def main() -> None:
    """Host your own code-completion LLM, load-test it, and size the hardware it needs."""


main.add_command(serve)
main.add_command(bench)
main.add_command(plan)
main.add_command(deploy)
main.add_command(engine)
main.add_command(top)
