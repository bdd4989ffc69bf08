"""coderig: host your own code-completion LLM, load-test it, size the hardware it needs."""

__version__ = "0.1.0"
