"""``coderig engine``: which llama-server coderig runs, and building it ahead of time."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coderig.engines.llamacpp_build import (
    CPU_LEVELS,
    LlamaServerBinary,
    LlamaServerNotFound,
    build_dir,
    build_flags,
    build_llama_server,
    cpu_level,
    ensure_llama_server,
    find_llama_server,
    llama_cpp_version,
)


def llama_server_with_progress(
    explicit: Path | None, console: Console, *, build: bool = True
) -> LlamaServerBinary:
    """Find llama-server, or build it with a progress bar; ClickException when impossible."""
    try:
        found = find_llama_server(explicit)
        if found is not None:
            return found
        if not build:
            raise LlamaServerNotFound("no llama-server yet: run `coderig engine build`")
        console.print(
            f"[bold]coderig[/] building llama.cpp's llama-server from the {llama_cpp_version()} "
            "llama-cpp-python sources (once; cached in "
            f"{build_dir()}). A few minutes on 2 cores."
        )
        with _build_progress(console) as report:
            return ensure_llama_server(explicit, progress=report)
    except LlamaServerNotFound as exc:
        raise click.ClickException(str(exc)) from exc


class _build_progress:
    """A rich progress bar fed by the build's ``(done, total, what)`` reports."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("preparing", total=None)

    def __enter__(self):
        self.progress.start()
        return self.report

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def report(self, done: int, total: int, what: str) -> None:
        if total:
            self.progress.update(self.task, completed=done, total=total, description="compiling")
        else:
            self.progress.update(self.task, description=what)


@click.group()
def engine() -> None:
    """The llama.cpp engine: which llama-server runs, and building it."""


@engine.command()
@click.option("--force", is_flag=True, help="Rebuild even when a cached build exists.")
@click.option(
    "--level",
    type=click.Choice(list(CPU_LEVELS)),
    default=None,
    help="Instruction-set level to build for [default: the highest this CPU has]. A build for "
    "a level this CPU lacks is cached, but `coderig serve` here never picks it.",
)
def build(force: bool, level: str | None) -> None:
    """Build llama-server from the installed llama-cpp-python's sources, into the cache."""
    console = Console(stderr=True)
    try:
        if not force:
            cached = build_dir(flags=build_flags(level)) / "llama-server"
            if cached.exists():
                console.print(f"llama-server already built: {cached}")
                return
        console.print(f"building llama-server (llama-cpp-python {llama_cpp_version()})")
        with _build_progress(console) as report:
            path = build_llama_server(progress=report, force=force, level=level)
    except LlamaServerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"built {path}")


@engine.command()
@click.option("--llama-server", "explicit", type=click.Path(path_type=Path), default=None)
def info(explicit: Path | None) -> None:
    """Which llama-server `coderig serve` would run, and how it was built."""
    try:
        found = find_llama_server(explicit)
    except LlamaServerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"llama-cpp-python: {llama_cpp_version()}")
    click.echo(f"CPU level:        {cpu_level()} (the highest of {', '.join(CPU_LEVELS)})")
    click.echo(f"build flags:      {' '.join(build_flags())}")
    click.echo(f"cache:            {build_dir()}")
    if found is None:
        click.echo("llama-server:     none yet (`coderig engine build` builds it)")
        return
    click.echo(f"llama-server:     {found.path} (from {found.source})")
    click.echo(f"version:          {found.version()}")
