"""``coderig bench``: attack, typing, report, sweep, plot.

``coderig bench attack … | coderig bench report`` works like vegeta's pipe: results go to
standard output unless ``-o`` names a file, and progress goes to standard error.
``coderig bench typing`` prints its summary instead (``--json`` for the JSON object) and writes
its results with ``-o``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.editor_apis import APIS
from coderig.bench.progress import AttackProgress, TypingProgress
from coderig.bench.results import _dumps, result_to_dict, write_results
from coderig.bench.workload import (
    DEFAULT_CHARS_PER_TOKEN,
    WorkloadSpec,
    endpoint_kind,
    read_bodies,
)
from coderig.cli_types import DURATION
from coderig.traffic.arrivals import ARRIVALS


def _pairs(values: tuple[str, ...], sep: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        if sep not in v:
            raise click.BadParameter(f"{v!r}: expected {what}")
        key, _, val = v.partition(sep)
        out[key.strip()] = val.strip()
    return out


@click.group()
def bench() -> None:
    """Load-test a completion server: at a fixed rate, or as a team typing in editors."""


def attack_options(f: Any) -> Any:
    """Options shared by ``attack`` and ``sweep`` (everything but rate/output)."""
    opts = [
        click.option(
            "--url", required=True, help="Endpoint, e.g. http://127.0.0.1:8000/v1/completions."
        ),
        click.option("--duration", type=DURATION, default=None, help="Attack length (5s, 2m)."),
        click.option(
            "--requests",
            "requests_",
            type=int,
            default=None,
            help="Number of requests (with --duration: whichever ends first).",
        ),
        click.option(
            "--arrival",
            type=click.Choice(ARRIVALS),
            default="constant",
            show_default=True,
            help="Send times: evenly spaced, or seeded Poisson (exponential gaps).",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed for Poisson arrivals and prompt selection.",
        ),
        click.option(
            "--body",
            "body_file",
            type=click.Path(exists=True, dir_okay=False),
            help="One JSON body sent with every request (like vegeta -body).",
        ),
        click.option(
            "--bodies",
            "bodies_file",
            type=click.Path(exists=True, dir_okay=False),
            help="JSON Lines file of bodies, sent in order and cycled: a scripted workload.",
        ),
        click.option(
            "--prompt-tokens",
            type=int,
            default=None,
            help="Generate a distinct code prompt of about N tokens per request.",
        ),
        click.option(
            "--max-tokens", type=int, default=None, help="max_tokens of generated bodies."
        ),
        click.option(
            "--fim", is_flag=True, help="Fill-in-the-middle: prompt + suffix (/v1/completions)."
        ),
        click.option(
            "--ignore-eos",
            is_flag=True,
            help="Ask for exactly max-tokens outputs (ignore_eos + min_tokens).",
        ),
        click.option("--model", default=None, help='"model" field of generated bodies.'),
        click.option(
            "--chars-per-token",
            type=float,
            default=DEFAULT_CHARS_PER_TOKEN,
            show_default=True,
            help="Prompt sizing estimate when generating prompts.",
        ),
        click.option(
            "--tokenizer",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="A model's GGUF file: size generated prompts exactly in its tokens.",
        ),
        click.option(
            "--extra",
            default=None,
            help="JSON object merged into generated bodies, e.g. '{\"temperature\":0}'.",
        ),
        click.option("--header", "headers", multiple=True, help="'Name: value' (repeatable)."),
        click.option(
            "--timeout",
            type=DURATION,
            default=30.0,
            show_default=True,
            help="Whole-request timeout; a timed-out request is an error (status 0).",
        ),
        click.option(
            "--max-inflight",
            type=int,
            default=None,
            help="Concurrency cap: requests due while N are in flight are NOT sent "
            "(counted in the report), never delayed.",
        ),
        click.option(
            "--stream/--no-stream",
            default=None,
            help="Ask for (and parse) a token stream. Default: the body's own "
            '"stream", off for generated bodies.',
        ),
        click.option(
            "--include-usage/--no-include-usage",
            default=True,
            show_default=True,
            help="Send stream_options.include_usage so streams report token counts.",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            help="key=value stored in the results header (repeatable), e.g. gpu=h100.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bar on standard error (default: when it is a terminal).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def make_config(rate: float, o: dict[str, Any]) -> AttackConfig:
    """An :class:`AttackConfig` from parsed ``attack_options`` values."""
    if o["duration"] is None and o["requests_"] is None:
        raise click.UsageError("give --duration or --requests (attacks are always bounded)")
    if sum(bool(x) for x in (o["body_file"], o["bodies_file"], o["prompt_tokens"])) > 1:
        raise click.UsageError("--body, --bodies and --prompt-tokens are exclusive")
    try:
        bodies = read_bodies(o["bodies_file"]) if o["bodies_file"] else None
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--bodies") from None
    extra = {}
    if o["extra"]:
        try:
            extra = json.loads(o["extra"])
        except ValueError as exc:
            raise click.BadParameter(f"--extra is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise click.BadParameter("--extra must be a JSON object")
    spec = WorkloadSpec(
        body=Path(o["body_file"]).read_bytes() if o["body_file"] else None,
        body_file=o["body_file"] or o["bodies_file"],
        bodies=bodies,
        endpoint=endpoint_kind(o["url"]),
        prompt_tokens=o["prompt_tokens"],
        max_tokens=o["max_tokens"],
        fim=o["fim"],
        ignore_eos=o["ignore_eos"],
        model=o["model"],
        include_usage=o["include_usage"],
        chars_per_token=o["chars_per_token"],
        extra=extra,
        seed=o["seed"],
        tokenizer=o["tokenizer"],
    )
    if o["max_inflight"] is not None and o["max_inflight"] < 1:
        raise click.BadParameter("--max-inflight must be >= 1")
    return AttackConfig(
        url=o["url"],
        rate=rate,
        duration=o["duration"],
        requests=o["requests_"],
        arrival=o["arrival"],
        seed=o["seed"],
        timeout=o["timeout"],
        max_inflight=o["max_inflight"],
        stream=o["stream"],
        headers=_pairs(o["headers"], ":", "'Name: value'"),
        workload=spec,
        tags=_pairs(o["tags"], "=", "key=value"),
    )


class _LiveWriter:
    """Streams finished results to the output every ``interval`` seconds during the attack."""

    def __init__(self, out: IO[str], interval: float, progress: AttackProgress):
        self.out = out
        self.interval = interval
        self.progress = progress
        self.written = 0
        self.header_written = False
        self.last = 0.0
        self.state: Any = None

    def __call__(self, state: Any) -> None:
        self.state = state
        self.progress(state)
        if not self.header_written:
            self.out.write(_dumps(state.header) + "\n")
            self.out.flush()
            self.header_written = True
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.flush(state)

    def flush(self, state: Any) -> None:
        batch = state.completed[self.written :]
        self.written += len(batch)
        if batch:
            self.out.write("".join(_dumps(result_to_dict(r)) + "\n" for r in batch))
            self.out.flush()


@bench.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Requests per second.")
@attack_options
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Results file (JSON lines); '-' is standard output.",
)
@click.option(
    "--flush-every",
    type=DURATION,
    default=0.0,
    help="Also write finished results during the attack, every interval (for "
    "'report --every'); default: all at the end, which costs the sender nothing.",
)
@click.option(
    "--report/--no-report",
    "print_report",
    default=False,
    help="Print the text report to standard error when done.",
)
@click.option("--name", default="", help="Attack name stored in the header.")
@click.option(
    "--loop",
    "loop_",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop (auto: uvloop when installed; both reach 8000 req/s here).",
)
def attack(
    rate: float,
    output: str,
    flush_every: float,
    print_report: bool,
    name: str,
    loop_: str,
    **o: Any,
) -> None:
    """Send requests at --rate for --duration (or --requests), open loop; write results."""
    config = make_config(rate, o)
    config.name = name
    config.loop = loop_
    out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with AttackProgress(o["progress"], label=name or "attack") as progress:
            if flush_every > 0:
                live = _LiveWriter(out, flush_every, progress)
                header, results = _run(config, live)
                live.flush(live.state)  # every result is in state.completed once it ends
            else:
                header, results = _run(config, progress)
                write_results(out, header, results)
    finally:
        if out is not sys.stdout:
            out.close()
    if print_report:
        from coderig.bench.metrics import Metrics
        from coderig.bench.report import render_text

        click.echo(render_text(Metrics.of(header, results)), err=True, nl=False)


def _run(config: AttackConfig, on_tick: Any) -> tuple[dict, list[dict]]:
    try:
        return run_attack(config, on_tick)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _renderer(type_: str, buckets: str | None) -> Any:
    """A function (header, results) -> report text for ``--type``; a typing run's results get
    the typing summary (shown, cancelled, accepted...)."""
    from coderig.bench.metrics import Metrics
    from coderig.bench.report import parse_buckets, render_hist, render_json, render_text
    from coderig.bench.typing_report import is_typing, render_typing_text, summarize_typing

    def text(h: dict, r: list[dict]) -> str:
        if is_typing(h):
            return render_typing_text(summarize_typing(h, r))
        return render_text(Metrics.of(h, r))

    def json_(h: dict, r: list[dict]) -> str:
        if is_typing(h):
            return json.dumps(summarize_typing(h, r).to_dict()) + "\n"
        return render_json(Metrics.of(h, r))

    if type_ == "text":
        return text
    if type_ == "json":
        return json_
    if type_.startswith("hist"):
        spec = buckets or type_[4:]
        try:
            bounds = parse_buckets(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--type") from None
        return lambda h, r: render_hist(r, bounds)
    raise click.BadParameter(
        f"unknown report type {type_!r}: text, json or hist[...]", param_hint="--type"
    )


@bench.command()
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@click.option(
    "--type",
    "type_",
    default="text",
    show_default=True,
    help="text | json | hist[0,100ms,1s] (vegeta's bucket syntax).",
)
@click.option("--buckets", default=None, help="Histogram buckets, e.g. '[0,10ms,100ms]'.")
@click.option(
    "--every",
    type=DURATION,
    default=0.0,
    help="Re-print the report at this interval while results arrive (e.g. 1s).",
)
@click.option("-o", "--output", default="-", show_default=True, help="Report file.")
def report(
    files: tuple[str, ...], type_: str, buckets: str | None, every: float, output: str
) -> None:
    """Report on results files (standard input when none), like 'vegeta report'."""
    from coderig.bench.results import merge_attacks, open_lines, parse_lines

    render = _renderer(type_, buckets)
    sources = list(files) or ["-"]
    out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        if every > 0:
            _live_report(sources, render, every, out)
            return
        attacks = []
        for src in sources:
            try:
                attacks.extend(parse_lines(open_lines(src)))
            except (OSError, ValueError) as exc:
                raise click.ClickException(f"{src}: {exc}") from None
        if not attacks:
            raise click.ClickException("no results to report on (empty input?)")
        out.write(render(*merge_attacks(attacks)))
    finally:
        if out is not sys.stdout:
            out.close()


def _live_report(sources: list[str], render: Any, every: float, out: IO[str]) -> None:
    """Read in a thread, render every ``every`` seconds, then once more at end of input."""
    import threading

    from coderig.bench.results import merge_attacks, open_lines, parse_lines

    lines: list[str] = []
    finished = threading.Event()

    def reader() -> None:
        try:
            for src in sources:
                for line in open_lines(src):
                    lines.append(line)
        finally:
            finished.set()

    threading.Thread(target=reader, daemon=True).start()
    clear = out.isatty()
    while True:
        ended = finished.wait(every)
        try:
            attacks = parse_lines(lines[: len(lines)])
        except ValueError:
            attacks = []  # a line still being written; the next tick sees it whole
        if attacks and any(r for _, r in attacks):
            if clear:
                out.write("\033[H\033[2J")
            out.write(render(*merge_attacks(attacks)))
            if not ended:
                out.write("\n")
            out.flush()
        if ended:
            return


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected rates like 1,8,32") from None
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter("rates must be positive numbers")
    return rates


@bench.command()
@click.option("--rates", default=None, help="Comma-separated rates to attack at, e.g. 1,8,32.")
@click.option(
    "--slo",
    type=DURATION,
    default=None,
    help="Search for the highest rate whose latency percentile meets this (e.g. 1.5s).",
)
@click.option(
    "--percentile",
    type=click.Choice(["50", "90", "95", "99"]),
    default="99",
    show_default=True,
    help="Latency percentile the SLO applies to.",
)
@click.option(
    "--min-success",
    type=float,
    default=0.99,
    show_default=True,
    help="A step also needs this success ratio to meet the SLO.",
)
@click.option(
    "--min-rate",
    type=float,
    default=1.0,
    show_default=True,
    help="Search: first rate tried (then doubled).",
)
@click.option(
    "--max-rate",
    type=float,
    default=1024.0,
    show_default=True,
    help="Search: never attack faster than this.",
)
@click.option(
    "--steps",
    type=int,
    default=3,
    show_default=True,
    help="Search: bisection steps after the first miss.",
)
@click.option(
    "--pause",
    type=DURATION,
    default=1.0,
    show_default=True,
    help="Idle time between steps so one step's backlog doesn't leak into the next.",
)
@attack_options
@click.option(
    "--out-dir",
    default="bench-sweep",
    show_default=True,
    help="Where results (rate-R.jsonl), sweep.json, PNGs and sweep.html go.",
)
def sweep(
    rates: str | None,
    slo: float | None,
    percentile: str,
    min_success: float,
    min_rate: float,
    max_rate: float,
    steps: int,
    pause: float,
    out_dir: str,
    **o: Any,
) -> None:
    """Attack at several rates (or search under an SLO); print a table, write plots."""
    from rich.console import Console
    from rich.table import Table

    from coderig.bench.plots import table_rows, write_plots
    from coderig.bench.sweep import run_sweep

    if rates is None and slo is None:
        raise click.UsageError("give --rates or --slo")
    config = make_config(1.0, o)
    err = Console(stderr=True)

    def on_step(step: Any) -> None:
        s = step.summary
        verdict = "" if step.meets_slo is None else (" ok" if step.meets_slo else " miss")
        err.print(
            f"rate {step.rate:g}: p{percentile} "
            f"{s.latencies.percentile(int(percentile)):.4f}s success {s.success:.2%}{verdict}"
        )

    try:
        result = run_sweep(
            config,
            rates=_rates(rates) if rates else None,
            slo=slo,
            percentile=int(percentile),
            min_success=min_success,
            min_rate=min_rate,
            max_rate=max_rate,
            steps=steps,
            pause=pause,
            out_dir=out_dir,
            on_step=on_step,
            on_tick_factory=lambda r: AttackProgress(o["progress"], label=f"{r:g} req/s"),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    rows = table_rows(result)
    table = Table(title="coderig bench sweep")
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*row.values())
    Console(width=160).print(table)
    if slo is not None:
        best = "none" if result.best_rate is None else f"{result.best_rate:g} req/s"
        click.echo(f"highest rate meeting p{percentile} <= {slo:g}s: {best}")
    paths = write_plots(result, out_dir)
    click.echo("wrote " + ", ".join(paths.values()), err=True)


@bench.command("typing")
@click.option(
    "--url", required=True, help="The server's base URL, e.g. http://127.0.0.1:8000 (see --api)."
)
@click.option("--developers", type=int, default=4, show_default=True, help="Developers typing.")
@click.option("--duration", type=DURATION, required=True, help="How long they type (60s, 5m).")
@click.option(
    "--debounce",
    type=DURATION,
    default=None,
    help="Editor's wait after the last keystroke before it asks [default: 300ms].",
)
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Directory of the code they type (the team's own) [default: Python's stdlib source].",
)
@click.option(
    "--max-tokens", type=int, default=64, show_default=True, help="Tokens asked per suggestion."
)
@click.option(
    "--api",
    type=click.Choice(APIS),
    default="openai",
    show_default=True,
    help="openai: POST /v1/completions; infill: llama.cpp's POST /infill; ollama: POST "
    "/api/generate; tabby: Tabby's POST /v1/completions with segments.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same typing.")
@click.option("--model", default=None, help="Model name sent [default: asked from the server].")
@click.option(
    "--prefix-lines",
    type=int,
    default=None,
    help="Lines above the cursor's line in each prompt [default: 256, as llama.vim].",
)
@click.option(
    "--suffix-lines",
    type=int,
    default=None,
    help="Lines below the cursor in each prompt [default: 64, as llama.vim].",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML file of typing parameters (shaped like coderig/traffic/typing_team.toml).",
)
@click.option(
    "--timeout",
    type=DURATION,
    default=30.0,
    show_default=True,
    help="Longest any request may take (the next keystroke usually ends it sooner).",
)
@click.option("--header", "headers", multiple=True, help="'Name: value' (repeatable).")
@click.option("--tag", "tags", multiple=True, help="key=value stored in the results header.")
@click.option("--name", default="", help="Run name stored in the header.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "-o",
    "--output",
    default=None,
    help="Results file (JSON lines, one per request); '-' is standard output (the summary "
    "then goes to standard error).",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write the PNG and HTML plots to this directory.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on standard error (default: when it is a terminal).",
)
def typing_cmd(
    url: str,
    developers: int,
    duration: float,
    debounce: float | None,
    corpus: str | None,
    max_tokens: int,
    api: str,
    seed: int,
    model: str | None,
    prefix_lines: int | None,
    suffix_lines: int | None,
    params_file: str | None,
    timeout: float,
    headers: tuple[str, ...],
    tags: tuple[str, ...],
    name: str,
    as_json: bool,
    output: str | None,
    plots_dir: str | None,
    progress: bool | None,
) -> None:
    """Developers typing in editors: a request after each pause, cancelled at the next key.

    Each developer types real code from the corpus at a measured human rhythm and sometimes
    moves to another place or file; after each pause longer than --debounce the "editor" sends
    a fill-in-the-middle request, and the next keystroke cancels it by closing its connection.
    Prints how many suggestions arrived before the next keystroke.
    """
    from coderig.bench.typing import TypingConfig, run_typing
    from coderig.bench.typing_report import render_typing_text, summarize_typing

    if developers < 1:
        raise click.BadParameter("must be >= 1", param_hint="--developers")
    config = TypingConfig(
        url=url,
        developers=developers,
        duration=duration,
        debounce=debounce,
        corpus=corpus,
        max_tokens=max_tokens,
        api=api,
        seed=seed,
        model=model,
        prefix_lines=prefix_lines,
        suffix_lines=suffix_lines,
        params_file=params_file,
        timeout=timeout,
        headers=_pairs(headers, ":", "'Name: value'"),
        tags=_pairs(tags, "=", "key=value"),
        name=name,
    )
    with TypingProgress(progress, label=name or f"{developers} typing") as bar:
        try:
            header, results = run_typing(config, bar)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if output is not None:
        out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
        try:
            write_results(out, header, results)
        finally:
            if out is not sys.stdout:
                out.close()
    summary = summarize_typing(header, results)
    text = json.dumps(summary.to_dict()) + "\n" if as_json else render_typing_text(summary)
    click.echo(text, nl=False, err=output == "-")
    if plots_dir:
        from coderig.bench.plots import typing_label, write_typing_plots

        paths = write_typing_plots([(typing_label(header), header, results)], plots_dir)
        click.echo("wrote " + ", ".join(paths.values()), err=True)


@bench.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out-dir",
    default="bench-plots",
    show_default=True,
    help="Where the PNGs and the HTML page go.",
)
def plot(files: tuple[str, ...], out_dir: str) -> None:
    """Plot typing results files: shown-latency CDF (one curve per run) and outcomes over time."""
    from coderig.bench.plots import typing_label, write_typing_plots
    from coderig.bench.results import read_attacks
    from coderig.bench.typing_report import is_typing

    runs = []
    for path in files:
        try:
            attacks = read_attacks(path)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        for header, results in attacks:
            if not is_typing(header):
                raise click.ClickException(
                    f"{path}: not a typing run (plots of rate sweeps come from 'bench sweep')"
                )
            label = typing_label(header)
            runs.append((label if len(files) == 1 else f"{Path(path).stem}: {label}", header,
                         results))  # fmt: skip
    paths = write_typing_plots(runs, out_dir)
    click.echo("wrote " + ", ".join(paths.values()), err=True)
