"""Capacity planning: peak load, hardware fit, latency model, cost."""
