"""Read ``coderig bench`` results files and turn them into measured runs.

The bench writes JSON lines: one header line (``url``, ``rate``, ``duration``, ``arrival``,
``requests``, ``stream``, the workload's ``prompt_tokens``/``max_tokens``, and ``tags`` such
as ``gpu=h100-sxm model=qwen2.5-coder-7b replicas=1``), then one line per request
(``scheduled``, ``sent``, ``first_token``, ``end`` in seconds from the attack start or null,
``status`` with 0 for a transport error, ``error``, ``prompt_tokens``, ``completion_tokens``).
This reader is written to that contract on its own, so the planner does not depend on the
bench's module: the header is the line with ``tags``/``rate``/``version`` and no ``status``.
Latency is ``end - sent`` (as a vegeta-style tester measures it), TTFT ``first_token - sent``.

Prefix caching: a run that repeated one request body (the bench header says ``"workload":
"body"``, as ``coderig bench attack --body req.json`` or vegeta's ``-body`` do) is marked
``identical_prompts``: vLLM prefills its prompt once and serves every later request's prompt
from the prefix cache, which makes it much faster than distinct prompts would be. Generated
workloads are distinct prompts (hit rate 0). Tags ``prefix_cache_hit=0.6`` or
``identical_prompts=true`` (or the calibrate command's flags) say otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from coderig.plan.calibrate import Run
from coderig.units import parse_duration

__all__ = ["read_bench_file", "run_from_bench", "load_measured_runs"]


def read_bench_file(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, results) of a bench JSON-lines file; blank or broken lines are skipped."""
    header: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if "status" not in record and ({"tags", "rate", "version"} & set(record)):
                header = {**header, **record}
            elif "status" in record or "end" in record:
                results.append(record)
    if not header:
        raise ValueError(f"{path}: no header line (with rate/tags) found; is it a bench file?")
    return header, results


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _workload_field(header: Mapping[str, Any], key: str) -> Any:
    workload = header.get("workload")
    if isinstance(workload, Mapping) and key in workload:
        return workload[key]
    return header.get(key)


def run_from_bench(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Run:
    """One measured run: configuration from tags (CLI ``overrides`` fill missing ones)."""
    header, results = read_bench_file(path)
    tags = header.get("tags") or {}
    if not isinstance(tags, Mapping):
        tags = {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

    def tag(name: str, default: Any = None) -> Any:
        for key in (name, name.replace("_", "-")):
            if key in tags and tags[key] not in (None, ""):
                return tags[key]
        return overrides.get(name, default)

    gpu, model = tag("gpu"), tag("model")
    if not gpu or not model:
        raise ValueError(
            f"{path}: say which GPU and model were measured: tag the bench run "
            "(--tag gpu=h100-sxm --tag model=qwen2.5-coder-7b) or pass --gpu/--model"
        )
    latencies, ttfts, prompts, completions = [], [], [], []
    for result in results:
        status = result.get("status")
        end, sent = _num(result.get("end")), _num(result.get("sent"))
        if sent is None:
            sent = _num(result.get("scheduled"))
        if not isinstance(status, int | float) or not 200 <= status < 300:
            continue
        if end is None or sent is None or result.get("error"):
            continue
        latencies.append(end - sent)
        first = _num(result.get("first_token"))
        if first is not None:
            ttfts.append(first - sent)
        if _num(result.get("prompt_tokens")):
            prompts.append(float(result["prompt_tokens"]))
        if _num(result.get("completion_tokens")):
            completions.append(float(result["completion_tokens"]))
    if not latencies:
        raise ValueError(f"{path}: no successful requests to calibrate on")
    rate = _num(header.get("rate")) or _num(overrides.get("rate"))
    duration = header.get("duration", overrides.get("duration"))
    if not rate or duration is None:
        raise ValueError(f"{path}: header lacks rate/duration")
    duration_s = parse_duration(duration) if isinstance(duration, str) else float(duration)
    prompt = np.mean(prompts) if prompts else _num(_workload_field(header, "prompt_tokens"))
    output = np.mean(completions) if completions else _num(_workload_field(header, "max_tokens"))
    if not prompt or not output:
        raise ValueError(f"{path}: cannot tell prompt/output token counts")
    measured = {
        "latency_p50": float(np.percentile(latencies, 50)),
        "latency_p90": float(np.percentile(latencies, 90)),
        "latency_p99": float(np.percentile(latencies, 99)),
    }
    identical = _truthy(tag("identical_prompts", header.get("workload") == "body"))
    hit = _num(tag("prefix_cache_hit", 0.0))
    if hit is None or not 0.0 <= hit <= 1.0:
        raise ValueError(f"{path}: prefix_cache_hit must be a number in [0, 1]")
    if ttfts and header.get("stream", True):
        measured.update(
            ttft_p50=float(np.percentile(ttfts, 50)),
            ttft_p90=float(np.percentile(ttfts, 90)),
            ttft_p99=float(np.percentile(ttfts, 99)),
        )
    return Run(
        id=Path(path).name,
        gpu=str(gpu).lower(),
        model=str(model).lower(),
        dtype=str(tag("dtype", "bf16")).lower(),
        tensor_parallel=int(tag("tensor_parallel", tag("tp", 1))),
        replicas=int(tag("replicas", 1)),
        rate=float(rate),
        duration=duration_s,
        arrival=str(header.get("arrival") or overrides.get("arrival") or "constant"),
        prompt_tokens=int(round(prompt)),
        output_tokens=int(round(output)),
        measured=measured,
        source=f"coderig bench results {path} ({len(latencies)} ok of {len(results)})",
        prefix_cache_hit=float(hit),
        identical_prompts=identical,
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def load_measured_runs(paths: list[str], overrides: Mapping[str, Any] | None = None) -> list[Run]:
    return [run_from_bench(path, overrides) for path in paths]
