"""Requests are counted once, by route label and final status, by one middleware."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from coderig.serve.metrics import GatewayMetrics
from coderig.serve.request_metrics import RequestCounter, label_request, report_status


def app_and_metrics() -> tuple[FastAPI, GatewayMetrics]:
    metrics = GatewayMetrics()
    app = FastAPI()
    app.add_middleware(RequestCounter, metrics=metrics)

    @app.post("/v1/completions")
    async def completions(request: Request):
        if request.headers.get("x-as") == "tabby":
            label_request(request, "tabby")
        if request.headers.get("x-in-band"):
            report_status(request, 503)  # a stream whose headers went out as 200, then failed
        return PlainTextResponse("ok")

    @app.get("/health")
    async def health():
        return "ok"

    @app.get("/api/tags")
    async def ollama_tags():
        raise RuntimeError("boom")

    return app, metrics


def count(metrics: GatewayMetrics, route: str, status: str) -> float:
    return (
        metrics.registry.get_sample_value(
            "coderig_requests_total", {"route": route, "status": status}
        )
        or 0.0
    )


def test_each_api_request_is_counted_once_under_its_route_label():
    app, metrics = app_and_metrics()
    client = TestClient(app)
    client.post("/v1/completions")
    client.post("/v1/completions", headers={"x-as": "tabby"})
    client.post("/v1/completions", headers={"x-in-band": "1"})
    assert count(metrics, "completions", "200") == 1
    assert count(metrics, "tabby", "200") == 1
    assert count(metrics, "completions", "503") == 1


def test_probes_and_unknown_paths_are_not_counted():
    app, metrics = app_and_metrics()
    client = TestClient(app)
    client.get("/health")
    client.get("/no/such/path")
    counted = [s for m in metrics.registry.collect() if m.name == "coderig_requests"
               for s in m.samples if s.name == "coderig_requests_total"]  # fmt: skip
    assert counted == []


def test_a_route_that_raises_is_counted_as_500_under_its_own_name():
    app, metrics = app_and_metrics()
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/api/tags").status_code == 500
    assert count(metrics, "ollama_tags", "500") == 1
