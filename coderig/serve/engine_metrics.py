"""The engines' own Prometheus metrics, folded into the gateway's ``/metrics``.

llama-server (``--metrics``) and vLLM export what only the engine knows: prompt tokens computed
versus reused from the KV cache, decode calls, requests deferred, speculative acceptance. Their
ports are private, so the gateway reads each ready replica's ``/metrics`` when it is scraped
itself (concurrently, with a short timeout) and re-exports every sample with a ``replica``
label. A replica that does not answer in time keeps its last samples; one that stopped is
dropped, so a restarted engine's counters are never summed with its predecessor's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from coderig.serve.pool import ReplicaPool, ReplicaState


class EngineMetrics(Collector):
    def __init__(self, pool: ReplicaPool, timeout: float = 1.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self._families: dict[str, list[Metric]] = {}  # replica name -> its last families
        self._client = httpx.AsyncClient(timeout=timeout, headers=pool.upstream_headers)

    async def refresh(self) -> None:
        """Read every ready replica's ``/metrics`` (call before rendering the gateway's)."""
        ready = [
            r
            for r in self.pool.replicas
            if r.state == ReplicaState.READY and r.url.startswith("http")
        ]
        self._families = {
            name: families
            for name, families in self._families.items()
            if name in {r.name for r in ready}
        }
        texts = await asyncio.gather(
            *(self._client.get(f"{r.url}/metrics") for r in ready), return_exceptions=True
        )
        for replica, response in zip(ready, texts, strict=True):
            if isinstance(response, httpx.Response) and response.status_code == 200:
                self._families[replica.name] = list(text_string_to_metric_families(response.text))

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for replica, families in sorted(self._families.items()):
            for family in families:
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {**sample.labels, "replica": replica}
                    out.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield from merged.values()

    async def aclose(self) -> None:
        await self._client.aclose()
