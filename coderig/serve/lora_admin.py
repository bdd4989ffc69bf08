"""Adding and removing LoRA adapters at run time, with vLLM's own API on the gateway:
``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` and
``POST /v1/unload_lora_adapter {"lora_name"}``.

The gateway forwards the call to every ready replica (vLLM replicas are started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` when ``--lora`` is given; an external vLLM must be started
with it), and on success serves the new name: ``/v1/models`` lists it, requests naming it are
routed, and vLLM replicas that restart later get it on their command line. llama.cpp applies an
adapter when a replica loads the model, so there the answer is a 501 saying to use ``--lora``.
Both routes need an API key when keys are configured.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from coderig.serve.auth import require_key
from coderig.serve.errors import OpenAIError
from coderig.serve.pool import ReplicaState

router = APIRouter(dependencies=[Depends(require_key)], tags=["lora"])


class LoadLoraAdapter(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    lora_name: str
    lora_path: str


class UnloadLoraAdapter(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    lora_name: str


def _runtime_engine(gateway):
    engine = gateway.pool.engine
    if not engine.runtime_lora:
        raise OpenAIError(
            501,
            f"the {engine.name} engine loads LoRA adapters when a replica starts: restart with "
            "--lora NAME=PATH (runtime loading needs vLLM started with --lora)",
            code="runtime_lora_unsupported",
        )
    return engine


async def _forward(gateway, path: str, body: dict) -> None:
    replicas = [r for r in gateway.pool.replicas if r.state == ReplicaState.READY]
    if not replicas:
        raise OpenAIError(503, "no replica is ready", code="no_replica_available")
    async with httpx.AsyncClient(timeout=120) as client:
        results = await asyncio.gather(
            *(client.post(f"{r.url}{path}", json=body) for r in replicas), return_exceptions=True
        )
    failures = []
    for replica, result in zip(replicas, results, strict=True):
        if isinstance(result, BaseException):
            failures.append(f"{replica.name}: {result.__class__.__name__}")
        elif result.status_code != 200:
            failures.append(f"{replica.name}: {result.status_code} {result.text[:300]}")
    if failures:
        raise OpenAIError(502, "the engine refused: " + "; ".join(failures), code="engine_error")


@router.post("/v1/load_lora_adapter")
async def load_lora_adapter(body: LoadLoraAdapter, request: Request) -> dict:
    gateway = request.app.state.gateway
    engine = _runtime_engine(gateway)
    if body.lora_name == gateway.model_name:
        raise OpenAIError(400, "an adapter cannot take the base model's name", param="lora_name")
    await _forward(gateway, "/v1/load_lora_adapter", body.model_dump())
    gateway.adapters[body.lora_name] = body.lora_path
    engine.adapters[body.lora_name] = body.lora_path  # replicas started later load it too
    return {"status": "loaded", "lora_name": body.lora_name}


@router.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(body: UnloadLoraAdapter, request: Request) -> dict:
    gateway = request.app.state.gateway
    engine = _runtime_engine(gateway)
    if body.lora_name not in gateway.adapters:
        raise OpenAIError(404, f"no adapter named `{body.lora_name}`", code="model_not_found")
    await _forward(gateway, "/v1/unload_lora_adapter", body.model_dump())
    gateway.adapters.pop(body.lora_name, None)
    engine.adapters.pop(body.lora_name, None)
    return {"status": "unloaded", "lora_name": body.lora_name}
