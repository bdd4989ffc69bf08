"""Adding and removing LoRA adapters at run time with vLLM's own API on the gateway
(``POST /v1/load_lora_adapter``, ``POST /v1/unload_lora_adapter``): admin routes that load only
from ``--lora-dir`` (Hugging Face ids when allowed) and forward the call to every ready replica.
See docs/architecture.md, section 5.10 (LoRA adapters at run time).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from coderig.serve.auth import require_admin
from coderig.serve.errors import OpenAIError
from coderig.serve.pool import ReplicaState

router = APIRouter(dependencies=[Depends(require_admin)], tags=["admin"])

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class LoadLoraAdapter(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    lora_name: str
    lora_path: str


class UnloadLoraAdapter(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    lora_name: str


def allowed_adapter_source(
    lora_path: str, lora_dir: Path | None, *, allow_hub: bool = False
) -> str:
    """What the engine is told to load, or a ValueError saying why ``lora_path`` is refused."""
    hub_id = _HUB_ID.match(lora_path) is not None
    if lora_dir is not None:
        root = Path(os.path.realpath(lora_dir))
        candidate = Path(lora_path).expanduser()
        # realpath follows every symlink and `..`, so what is checked is what would be read
        resolved = Path(os.path.realpath(root / candidate))
        inside = resolved.is_relative_to(root)
        if resolved.exists() and inside:
            return str(resolved)
        if resolved.exists() or (not inside and not (allow_hub and hub_id)):
            raise ValueError(
                f"lora_path {lora_path!r} is outside the adapter directory (--lora-dir); "
                "only adapters inside it can be loaded"
            )
    if allow_hub and hub_id:
        return lora_path
    if lora_dir is None:
        raise ValueError(
            "this server loads no adapters at run time: start it with --lora-dir DIR (adapters "
            "inside DIR), or --allow-hub-adapters for Hugging Face ids"
        )
    hint = " (Hugging Face ids need --allow-hub-adapters)" if hub_id else ""
    raise ValueError(f"no adapter at {lora_path!r} in the adapter directory{hint}")


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
    async with httpx.AsyncClient(timeout=120, headers=gateway.pool.upstream_headers) as client:
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
    settings = gateway.settings
    try:
        source = allowed_adapter_source(
            body.lora_path, settings.lora_dir, allow_hub=settings.allow_hub_adapters
        )
    except ValueError as exc:
        raise OpenAIError(400, str(exc), param="lora_path", code="adapter_not_allowed") from exc
    forwarded = {"lora_name": body.lora_name, "lora_path": source}
    await _forward(gateway, "/v1/load_lora_adapter", forwarded)
    gateway.adapters[body.lora_name] = source
    engine.adapters[body.lora_name] = source  # replicas started later load it too
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
