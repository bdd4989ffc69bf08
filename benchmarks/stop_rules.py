"""Tokens and time the editor stop rules save, on a small sample of code prefixes.

Sends each prefix to ``/v1/completions`` twice, greedy, with the same ``max_tokens``: once plain
(OpenAI semantics) and once with ``"stop_rules": true`` and the file's language, and reports the
tokens generated and the latency of both. Run against a ``coderig serve``:

    python benchmarks/stop_rules.py --url http://127.0.0.1:8000 --max-tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

SAMPLE = [
    ("python", "import os\n\n\ndef list_python_files(root):\n    "),
    ("python", "def fibonacci(n):\n    if n < 2:\n        return n\n    return "),
    ("python", "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push("),
    ("python", "def read_lines(path):\n    with open(path) as f:\n        "),
    ("python", "for i in range(10):\n    if i % 2 == 0:\n        "),
    ("javascript", "function sum(values) {\n  let total = 0;\n  for (const v of values) {\n    "),
    ("javascript", "const express = require('express');\nconst app = express();\n\napp.get("),
    ("go", 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfor i := 0; i < 3; i++ {\n\t\t'),
    ("rust", "fn max(values: &[i32]) -> i32 {\n    let mut best = values[0];\n    "),
    ("c", "#include <stdio.h>\n\nint main(void) {\n    int n = 10;\n    "),
]


def complete(client: httpx.Client, url: str, prompt: str, max_tokens: int, **extra) -> tuple:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
    for _ in range(30):  # a 503 (replica restarting) says when to retry
        started = time.monotonic()
        response = client.post(f"{url}/v1/completions", json=body, timeout=300)
        if response.status_code != 503:
            break
        time.sleep(float(response.headers.get("retry-after", "1")))
    response.raise_for_status()
    body = response.json()
    return body["usage"]["completion_tokens"], time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    plain_tokens, ruled_tokens, plain_s, ruled_s = [], [], [], []
    with httpx.Client() as client:
        for language, prompt in SAMPLE:
            tokens, seconds = complete(client, args.url, prompt, args.max_tokens)
            plain_tokens.append(tokens)
            plain_s.append(seconds)
            tokens, seconds = complete(
                client, args.url, prompt, args.max_tokens, stop_rules=True, language=language
            )
            ruled_tokens.append(tokens)
            ruled_s.append(seconds)
            print(
                f"{language:<11} plain {plain_tokens[-1]:>3} tok {plain_s[-1]:5.2f}s   "
                f"rules {ruled_tokens[-1]:>3} tok {ruled_s[-1]:5.2f}s"
            )
    saved = sum(plain_tokens) - sum(ruled_tokens)
    print(
        f"\n{len(SAMPLE)} prompts, max_tokens {args.max_tokens}: plain {sum(plain_tokens)} tokens, "
        f"with stop rules {sum(ruled_tokens)} ({saved} fewer, "
        f"{saved / max(1, sum(plain_tokens)):.0%}); median latency "
        f"{statistics.median(plain_s):.2f}s -> {statistics.median(ruled_s):.2f}s"
    )


if __name__ == "__main__":
    main()
