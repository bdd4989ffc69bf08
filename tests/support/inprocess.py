"""The real gateway app, assembled and run in this process, in front of a fake upstream.

``coderig serve --engine external --upstream URL`` without the process: the same
``ServeSettings`` -> ``build_gateway`` -> ``create_app`` path the command takes, with a
Starlette ``TestClient`` (an ``httpx.Client`` over the ASGI app, no socket) as the client. The
app's lifespan starts the replica pool, whose health checks reach the fake upstream
(``tests/bench_helpers/llm_server.py``: OpenAI-compatible, answers ``tok`` x 5) over loopback,
and stops it when the client closes.

The tokenizer is the embedded model's GGUF vocabulary and the served name the embedded model's,
so token counts, context limits and the FIM choice (none: prefix-only) are those of the e2e
``server`` fixture; only the generated text is the fake's. Tests of shapes, errors and auth run
here in milliseconds; what needs a real engine (outputs, faults, cancellation) stays e2e.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
from fastapi.testclient import TestClient

from coderig.models import embedded_model_path
from coderig.serve.app import create_app
from coderig.serve.assembly import build_gateway
from coderig.serve.settings import ServeSettings
from tests.bench_helpers.fixtures import running_server

MODEL = "smollm2-135m-instruct"  # what the e2e server calls the embedded model


# Base URL of a fake OpenAI-compatible server, in a process of its own.
fake_upstream = running_server


def in_process_settings(upstream: str, log_dir: Path, **overrides) -> ServeSettings:
    """The settings ``coderig serve --engine external --upstream URL --tokenizer <embedded>``
    would make, plus ``overrides`` (field or flag names, as ``ServeSettings`` takes them)."""
    options = {
        "engine": "external",
        "upstreams": [upstream],
        "tokenizer": str(embedded_model_path()),
        "served_model_name": MODEL,
        "log_dir": log_dir,
        "max_queue_wait": None,  # as the e2e server: no shedding on a loaded machine
        **overrides,
    }
    return ServeSettings(**options)


@contextmanager
def serve_in_process(settings: ServeSettings) -> Iterator[TestClient]:
    """A client of the assembled app; the app's lifespan runs the replica pool meanwhile.

    Server errors come back as 500 responses, as a real server sends them, not as exceptions.
    """
    gateway = build_gateway(settings)
    app = create_app(gateway, manage_lifecycle=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def openai_client(client: TestClient, api_key: str = "unused") -> openai.OpenAI:
    """The official SDK, sending through the in-process client."""
    return openai.OpenAI(
        base_url=f"{client.base_url}/v1", api_key=api_key, http_client=client, max_retries=0
    )
