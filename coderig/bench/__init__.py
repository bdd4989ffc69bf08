"""Open-loop load testing of OpenAI-compatible endpoints, vegeta-style, with LLM metrics."""
