"""A typing team as the planner sees it: the very script ``coderig bench typing`` sends.

``coderig bench typing`` turns a team into requests with
:func:`coderig.traffic.typing_team.typing_team` (keystrokes, debounce, the next keystroke that
cancels). The planner calls the same function with the same seed, so it plans for the same
requests, and reduces each to what an engine sees:

* when it is sent, and when the editor gives up on it (the developer's next keystroke);
* its prompt in tokens, as the gateway renders it: the code before the cursor from the
  stable window's anchor line (``coderig serve --stable-window-lines`` and
  ``--stable-window-anchor``, 0 lines = the raw window llama-server or vLLM would get from an
  editor directly), then the code after it when the model has fill-in-the-middle tokens;
* which earlier request it continues (the same developer's previous one) and how many tokens
  the two prompts share: the engine finds that much in its prompt cache, if it had computed
  it (the simulator tracks how far the previous one got before it was cancelled).

The prompt cache is assumed large enough to hold one prompt per developer (llama-server's
``--cache-ram`` of 256 MiB holds ~11,000 SmolLM2 tokens; vLLM's prefix cache, whatever of the
KV cache running requests leave free); requests of one developer go to one replica, as
coderig's prefix routing sends them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from coderig.plan.roofline import Factors, StepModel
from coderig.plan.simulate import Requests, Run, simulate_requests
from coderig.traffic.typing_team import TypingParams, typing_team

__all__ = [
    "Engine",
    "TypingLoad",
    "TypingOutcome",
    "Window",
    "catalog_count_tokens",
    "catalog_engine",
    "catalog_typing_load",
    "local_engine",
    "predict_typing",
    "typing_load",
    "typing_outcome",
]

#: Markers a FIM template adds around prefix and suffix (prefix, suffix, middle).
FIM_MARKER_TOKENS = 3


@dataclass(frozen=True)
class Window:
    """Where the gateway starts an editor prompt's code: serve's ``--stable-window-lines``
    (0: the window as the editor sent it), ``--stable-window-anchor`` and
    ``--stable-window-max-drop``."""

    lines: int = 16
    anchor: str = "developer"
    max_drop: float = 0.5

    def starter(self) -> Callable[[str, int], str]:
        """``start(prefix, developer)``: the prompt's code, as the gateway would begin it."""
        from coderig.serve.editors.window import StableWindows

        windows = StableWindows(self.lines, self.max_drop, per_developer=self.anchor == "developer")
        return lambda prefix, developer: windows.start(prefix, f"developer:{developer}")


@dataclass(frozen=True)
class TypingLoad:
    requests: Requests
    developers: int
    duration: float

    @property
    def shared_share(self) -> float:
        """Of all prompt tokens, the share the developer's previous prompt already had."""
        total = float(self.requests.prompt.sum())
        return float(self.requests.cached.sum()) / total if total else 0.0

    @property
    def rate(self) -> float:
        """Requests per second the team sends (after the editor's debounce)."""
        return len(self.requests.arrival) / self.duration if self.duration > 0 else 0.0

    @property
    def mean_prompt_tokens(self) -> float:
        return float(np.mean(self.requests.prompt)) if len(self.requests.prompt) else 0.0


def typing_load(
    developers: int,
    duration: float,
    params: TypingParams,
    *,
    max_tokens: int,
    count_tokens: Callable[[str], int],
    seed: int = 0,
    corpus: str | os.PathLike | None = None,
    window: Window = Window(),
    fim: bool = True,
    bos: int = 1,
) -> TypingLoad:
    """The team's requests as an engine sees them (``count_tokens`` in the model's tokens)."""
    from coderig.bench.corpus import Corpus

    start = window.starter()
    script = typing_team(Corpus(corpus), developers, duration, params, seed)
    ordered = sorted(script.requests, key=lambda r: r.send)
    n = len(ordered)
    arrival, cancel = np.zeros(n), np.full(n, np.inf)
    prompt, cached, parent = np.zeros(n, int), np.zeros(n, int), np.full(n, -1)
    last: dict[int, tuple[int, str]] = {}  # developer -> (index, prompt text)
    for i, r in enumerate(ordered):
        prefix = start(r.prefix, r.developer)
        text = prefix + r.suffix if fim else prefix
        arrival[i] = r.send
        if r.cancel is not None:
            cancel[i] = r.cancel
        prompt[i] = count_tokens(text) + bos + (FIM_MARKER_TOKENS if fim else 0)
        if r.developer in last:
            j, before = last[r.developer]
            common = os.path.commonprefix([text, before])
            parent[i] = j
            # the BOS (and the prefix marker) are shared too; a token cut by the boundary is not
            shared = count_tokens(common) - 1 + bos + (1 if fim else 0) if common else 0
            cached[i] = max(0, min(shared, prompt[i] - 1))
        last[r.developer] = (i, text)
    output = np.full(n, max_tokens)
    requests = Requests(arrival, prompt, cached, output, cancel=cancel, parent=parent)
    return TypingLoad(requests, developers, duration)


@dataclass(frozen=True)
class TypingOutcome:
    """What the team saw: suggestions shown (complete before the next keystroke) or not."""

    requests: int
    shown: int
    cancelled: int
    shown_p50: float
    shown_p90: float
    rate: float  # requests/s the team sent

    @property
    def shown_share(self) -> float:
        return self.shown / self.requests if self.requests else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "shown_share": self.shown_share}


def typing_outcome(load: TypingLoad, run: Run) -> TypingOutcome:
    shown = run.answered
    latency = run.latency[shown]
    nan = float("nan")
    return TypingOutcome(
        requests=len(run.end),
        shown=int(shown.sum()),
        cancelled=int(run.cancelled.sum()),
        shown_p50=float(np.percentile(latency, 50)) if len(latency) else nan,
        shown_p90=float(np.percentile(latency, 90)) if len(latency) else nan,
        rate=load.rate,
    )


@dataclass(frozen=True)
class Engine:
    """What the typing simulation needs of a deployment: its step model, its limits, how its
    model counts tokens, and how the gateway renders an editor prompt for it."""

    describe: str
    step: StepModel
    replicas: int
    limits: dict
    count_tokens: Callable[[str], int]
    bos: int
    fim: bool


def local_engine(probe) -> Engine:
    """This machine as ``coderig plan probe`` measured it: its model's own tokenizer and FIM
    tokens (none for the embedded SmolLM2: the gateway then sends the prefix alone)."""
    from pathlib import Path

    from coderig.plan.local import LLAMA_BLOCK, gateway_holds, local_step_model
    from coderig.serve.fim import choose_template
    from coderig.serve.tokenizer import GGUFTokenizer

    tokenizer = GGUFTokenizer(Path(probe.model_path))
    fim = choose_template(model_name="", is_special_token=tokenizer.is_special_token)
    return Engine(
        describe=f"local ({probe.cpu}, {probe.slots} slots)",
        step=local_step_model(probe),
        replicas=1,
        limits=dict(
            max_batched_tokens=probe.batch_size,
            max_seqs=probe.slots,
            kv_capacity_tokens=probe.n_ctx * probe.slots,
            block_size=LLAMA_BLOCK,
            **gateway_holds(),
        ),
        count_tokens=lambda text: len(tokenizer.encode(text)),
        bos=int(tokenizer.add_bos),
        fim=fim is not None,
    )


def catalog_count_tokens(text: str) -> int:
    """A catalog model's tokens, estimated from characters (there is no model file here)."""
    import math

    from coderig.bench.workload import DEFAULT_CHARS_PER_TOKEN

    return math.ceil(len(text) / DEFAULT_CHARS_PER_TOKEN)


def catalog_typing_load(
    developers: int,
    duration: float,
    params: TypingParams,
    *,
    max_tokens: int,
    seed: int = 0,
    window: Window = Window(),
    corpus: str | os.PathLike | None = None,
) -> TypingLoad:
    """The team's requests as every catalog engine sees them (:func:`catalog_engine`), so one
    load serves a whole sweep of GPUs."""
    return typing_load(
        developers, duration, params, max_tokens=max_tokens, count_tokens=catalog_count_tokens,
        seed=seed, corpus=corpus, window=window, fim=True, bos=0,
    )  # fmt: skip


def catalog_engine(catalog, factors: Factors, deployment) -> Engine:
    """A catalog GPU and model under vLLM. Qwen2.5-Coder-class models have FIM tokens and add
    no BOS."""
    from coderig.plan.predict import step_model_for

    step, memory, budget, max_seqs = step_model_for(catalog, factors, deployment)
    d = deployment
    return Engine(
        describe=f"{d.replicas}x {d.gpu} ({d.dtype}, TP={d.tensor_parallel}) serving {d.model}",
        step=step,
        replicas=d.replicas,
        limits=dict(
            max_batched_tokens=budget,
            max_seqs=max_seqs,
            kv_capacity_tokens=memory.kv_tokens,
            block_size=catalog.block_size,
        ),
        count_tokens=catalog_count_tokens,
        bos=0,
        fim=True,
    )


def predict_typing(
    engine: Engine,
    developers: int,
    duration: float,
    params: TypingParams,
    *,
    max_tokens: int,
    seed: int = 0,
    window: Window = Window(),
    corpus: str | os.PathLike | None = None,
    outputs: Sequence[int] | None = None,
) -> tuple[TypingLoad, TypingOutcome]:
    """The team's script on ``engine``: what was sent, and what was shown.

    ``outputs``: each request's completion length, in the script's order, where they are
    known (a check against a ``coderig bench typing`` run of the same script and seed: how
    long each suggestion came out is up to the model's text and the editor's stop rules,
    which no step model predicts); else every request runs to ``max_tokens``.
    """
    load = typing_load(
        developers,
        duration,
        params,
        max_tokens=max_tokens,
        count_tokens=engine.count_tokens,
        seed=seed,
        corpus=corpus,
        window=window,
        fim=engine.fim,
        bos=engine.bos,
    )
    if outputs is not None:
        if len(outputs) != len(load.requests.arrival):
            raise ValueError(
                f"{len(outputs)} completion lengths for a script of "
                f"{len(load.requests.arrival)} requests"
            )
        lengths = np.maximum(np.asarray(outputs, dtype=int), 1)
        load = dataclasses.replace(
            load, requests=dataclasses.replace(load.requests, output=lengths)
        )
    run = simulate_requests(engine.step, load.requests, replicas=engine.replicas, **engine.limits)
    return load, typing_outcome(load, run)
