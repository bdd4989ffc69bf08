"""Schema fuzzing: schemathesis generates valid and invalid requests from the gateway's own
OpenAPI document; no 5xx, every response matches the document, the server stays up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 15  # CI budget; benchmarks/reliability.py runs a larger one
# Every check schemathesis has, named one by one: `--checks all` also turns on a 10 s response
# time limit, and tests check behaviour, not wall-clock time on a shared machine.
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "positive_data_acceptance", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "use_after_free", "ensure_resource_availability",
    "ignored_auth", "object_level_authorization",
)  # fmt: skip


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis") or shutil.which("st")
    if found:
        return [found]
    return [sys.executable, "-m", "schemathesis.cli"]


def test_openapi_document_describes_errors_and_streams(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    completions = schema["paths"]["/v1/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= set(completions)
    assert "422" not in completions
    assert "text/event-stream" in completions["200"]["content"]
    request = schema["components"]["schemas"]["CompletionRequest"]
    assert request["properties"]["max_tokens"]["maximum"] == 2048  # --max-tokens-limit
    assert request["properties"]["n"]["maximum"] == 1


def test_schemathesis_finds_no_failure(tmp_path: Path):
    server = start_server(tmp_path, "--max-tokens-limit", "8", "--no-access-log")
    try:
        result = subprocess.run(
            [
                *schemathesis_command(), "run", f"{server.url}/openapi.json",
                "--checks", ",".join(CHECKS), "-n", str(EXAMPLES_PER_OPERATION), "--seed", "7",
                "--workers", "1", "--no-color", "--generation-database", "none",
                "--request-timeout", "60", "--output-sanitize", "false",
                "--report", "junit", "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "generated" in result.stdout
        assert httpx.get(f"{server.url}/ready").status_code == 200
        assert server.process.poll() is None
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'status="500"' not in metrics and 'status="502"' not in metrics
    finally:
        server.stop()
