"""Drive Tabby's own editor-side client, ``tabby-agent`` (npm), from the tests.

``tabby-agent`` is the Node program inside Tabby's VS Code, JetBrains and Vim extensions. It
speaks two protocols on stdio, and the tests use both:

* ``--lsp --stdio``: a language server (JSON-RPC with Content-Length framing). Its 1.5.0 release
  reads the server endpoint and token from ``~/.tabby-client/agent/config.toml`` (the LSP
  ``initialize`` carries only client info) and answers ``textDocument/completion``.
* JSON lines (no flag): ``[id, {"func": name, "args": [...]}]`` -> ``[id, result]``, the
  protocol of Tabby's Vim plugin. ``initialize`` takes the config (endpoint, token), and
  ``postEvent`` is how an editor reports that a completion was shown or accepted.

The agent runs with ``HOME`` in a temporary directory, so its config, data and logs stay there,
and with anonymous usage tracking disabled, so it sends nothing anywhere but the test's server.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from queue import Empty, Queue

import pytest

TABBY_DIR = Path(__file__).resolve().parent.parent / "tabby"
AGENT_CLI = TABBY_DIR / "node_modules" / "tabby-agent" / "dist" / "cli.js"
INSTALL_HINT = "npm ci --prefix tests/tabby"


def agent_cli() -> Path:
    """The installed agent; fails in CI (where .ci/run installs it), skips elsewhere."""
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not AGENT_CLI.exists():
        problem = f"tabby-agent is not installed ({INSTALL_HINT})"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}: .ci/run must install the Node test packages")
        pytest.skip(problem)
    return AGENT_CLI


def agent_env(home: Path, config_toml: str | None = None) -> dict[str, str]:
    agent_dir = home / ".tabby-client" / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    if config_toml is not None:
        (agent_dir / "config.toml").write_text(config_toml)
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "NODE_NO_WARNINGS": "1"}


def config_toml(endpoint: str, token: str) -> str:
    return (
        f'[server]\nendpoint = "{endpoint}"\ntoken = "{token}"\n\n'
        '[logs]\nlevel = "debug"\n\n[anonymousUsageTracking]\ndisable = true\n'
    )


class _Process:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=cwd,
        )  # fmt: skip
        self.messages: Queue = Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def _read_stdout(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def diagnostics(self) -> str:
        return "".join(self.stderr)[-4000:]


class LspClient(_Process):
    """A minimal LSP client for ``tabby-agent --lsp --stdio``."""

    def __init__(self, cli: Path, home: Path) -> None:
        super().__init__(["node", str(cli), "--lsp", "--stdio"], agent_env(home), home)
        self.ids = itertools.count(1)
        self.notifications: list[dict] = []

    def _read_stdout(self) -> None:
        stream = self.process.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    return
                line = line.decode().strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict, timeout: float = 120.0) -> dict:
        request_id = next(self.ids)
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            try:
                message = self.messages.get(timeout=timeout)
            except Empty:
                raise TimeoutError(f"no answer to {method}:\n{self.diagnostics()}") from None
            if message.get("id") == request_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message.get("result")
            if "method" in message and "id" in message:  # a request from the server
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "method" in message:
                self.notifications.append(message)


class JsonLinesClient(_Process):
    """The agent's JSON-lines protocol (Tabby's Vim plugin)."""

    def __init__(self, cli: Path, home: Path) -> None:
        super().__init__(["node", str(cli)], agent_env(home), home)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            line = line.strip()
            if line:
                self.messages.put(json.loads(line))

    def call(self, func: str, *args, timeout: float = 120.0):
        request_id = next(self.ids)
        line = json.dumps([request_id, {"func": func, "args": list(args)}]) + "\n"
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()
        while True:
            try:
                answer_id, data = self.messages.get(timeout=timeout)
            except Empty:
                raise TimeoutError(f"no answer to {func}:\n{self.diagnostics()}") from None
            if answer_id == 0:
                self.events.append(data)
            elif answer_id == request_id:
                return data
