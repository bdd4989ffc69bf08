"""Tabby's own client, tabby-agent 1.5.0 (npm), against a real `coderig serve` with API keys.

The agent is the Node program inside Tabby's editor extensions. Over LSP it gets a completion
from the embedded model; over its JSON-lines protocol (Tabby's Vim plugin) it reports a completion
as shown and accepted, and coderig counts the acceptance for the key and language.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import start_server
from tests.support.tabby_agent import JsonLinesClient, LspClient, agent_cli, config_toml

pytestmark = pytest.mark.e2e

KEY = "sk-alice-0123456789"
CODE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "


@pytest.fixture(scope="module")
def cli():
    return agent_cli()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tabby-agent")
    keys = tmp / "keys.txt"
    keys.write_text(f"alice:{KEY}\n")
    running = start_server(tmp, "--api-keys", str(keys), "--threads-per-replica", "2")
    yield running
    running.stop()


def metric(server, name: str, **labels) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            series, _, value = line.rpartition(" ")
            got = series[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == wanted:
                return float(value)
    return 0.0


def test_tabby_agent_lsp_gets_a_completion_from_the_embedded_model(cli, keyed_server, tmp_path):
    (tmp_path / ".tabby-client" / "agent").mkdir(parents=True)
    (tmp_path / ".tabby-client" / "agent" / "config.toml").write_text(
        config_toml(keyed_server.url, KEY)
    )
    before = metric(keyed_server, "coderig_editor_completions_total", api="tabby", key="alice",
                    language="python")  # fmt: skip
    client = LspClient(cli, tmp_path)
    try:
        init = client.request(
            "initialize",
            {"processId": None, "clientInfo": {"name": "coderig-tests"}, "capabilities": {}},
        )
        assert init["serverInfo"]["name"] == "tabby-agent"
        client.notify("initialized", {})
        uri = (tmp_path / "fib.py").as_uri()
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": CODE}},
        )
        last = CODE.split("\n")
        result = client.request(
            "textDocument/completion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": len(last) - 1, "character": len(last[-1])},
            },
        )
    finally:
        client.close()
    items = result["items"]
    assert items, f"no completion items:\n{client.diagnostics()}"
    assert items[0]["textEdit"]["newText"].strip()
    assert items[0]["data"]["completionId"].startswith("cmpl-")
    after = metric(keyed_server, "coderig_editor_completions_total", api="tabby", key="alice",
                   language="python")  # fmt: skip
    assert after == before + 1


def test_an_accepted_completion_is_counted_as_a_select_for_its_key_and_language(
    cli, keyed_server, tmp_path
):
    client = JsonLinesClient(cli, tmp_path)
    try:
        config = {
            "server": {"endpoint": keyed_server.url, "token": KEY},
            "anonymousUsageTracking": {"disable": True},
        }
        assert client.call("initialize", {"config": config}) is True
        assert client.call("getStatus") == "ready"
        health = client.call("getServerHealthState")
        assert health["model"] == "smollm2-135m-instruct" and health["device"] == "cpu"
        completion = client.call(
            "provideCompletions",
            {
                "filepath": str(tmp_path / "fib.py"),
                "language": "python",
                "text": CODE,
                "position": len(CODE),
                "clipboard": "",
                "manually": True,
            },
        )
        assert completion["choices"] and completion["choices"][0]["text"].strip()
        event = {"completion_id": completion["id"], "choice_index": 0}
        assert client.call("postEvent", {"type": "view", **event}) is True
        assert client.call("postEvent", {"type": "select", "elapsed": 900, **event}) is True
    finally:
        client.close()
    labels = {"key": "alice", "language": "python"}
    assert metric(keyed_server, "coderig_completion_events_total", event="select", **labels) >= 1
    rate = metric(keyed_server, "coderig_completion_acceptance_rate", **labels)
    assert 0 < rate <= 1


def test_a_wrong_key_leaves_the_agent_unauthorized(cli, keyed_server, tmp_path):
    client = JsonLinesClient(cli, tmp_path)
    try:
        config = {
            "server": {"endpoint": keyed_server.url, "token": "sk-wrong-000000000"},
            "anonymousUsageTracking": {"disable": True},
        }
        client.call("initialize", {"config": config})
        assert client.call("getStatus") == "unauthorized"
    finally:
        client.close()


def test_editor_routes_need_the_key_and_refuse_in_their_own_shape(keyed_server):
    url = keyed_server.url
    assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 401
    infill = httpx.post(f"{url}/infill", json={"input_prefix": "x"}, timeout=10)
    assert infill.status_code == 401
    assert infill.json()["error"]["type"] == "authentication_error"
    tags = httpx.get(f"{url}/api/tags", timeout=10)
    assert tags.status_code == 401 and isinstance(tags.json()["error"], str)
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{url}/api/tags", headers=auth, timeout=10).status_code == 200
    assert httpx.get(f"{url}/v1/health", headers=auth, timeout=10).status_code == 200


def test_a_tabby_completion_body_needs_the_key_too(keyed_server):
    body = {"language": "python", "segments": {"prefix": "x = "}, "max_tokens": 2}
    url = f"{keyed_server.url}/v1/completions"
    assert httpx.post(url, json=body, timeout=60).status_code == 401
    wrong = {"Authorization": "Bearer sk-wrong-000000000"}
    assert httpx.post(url, json=body, headers=wrong, timeout=60).status_code == 401
    right = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(url, json=body, headers=right, timeout=60).status_code == 200
