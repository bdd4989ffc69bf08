"""Helpers for the ``coderig bench`` tests: a fake LLM server with known, injected timings."""
