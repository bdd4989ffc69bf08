"""A stand-in for vLLM's LoRA admin API where no GPU can run vLLM: ``GET /v1/models`` and
``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` with vLLM's bodies and answers,
requiring ``Authorization: Bearer $VLLM_API_KEY`` when that is set, as ``vllm serve`` does.

Run as ``python fake_vllm.py --port N``. ``GET /seen`` (no key needed) lists the load/unload
bodies received, so a test can check what the gateway forwarded.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web

SEEN: list[dict] = []
ADAPTERS: dict[str, str] = {}


@web.middleware
async def require_key(request: web.Request, handler):
    key = os.environ.get("VLLM_API_KEY")
    if (
        key
        and request.path.startswith("/v1")
        and (request.headers.get("Authorization") != f"Bearer {key}")
    ):
        return web.json_response({"error": "Unauthorized"}, status=401)
    return await handler(request)


async def models(_: web.Request) -> web.Response:
    data = [{"id": "base", "object": "model"}]
    data += [{"id": name, "object": "model", "parent": "base"} for name in ADAPTERS]
    return web.json_response({"object": "list", "data": data})


async def load(request: web.Request) -> web.Response:
    body = await request.json()
    SEEN.append({"load": body})
    ADAPTERS[body["lora_name"]] = body["lora_path"]
    return web.Response(text=f"Success: LoRA adapter '{body['lora_name']}' added successfully.")


async def unload(request: web.Request) -> web.Response:
    body = await request.json()
    SEEN.append({"unload": body})
    if ADAPTERS.pop(body["lora_name"], None) is None:
        return web.json_response({"error": "not found"}, status=404)
    return web.Response(text="Success")


async def seen(_: web.Request) -> web.Response:
    return web.json_response(SEEN)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(middlewares=[require_key])
    app.add_routes(
        [
            web.get("/v1/models", models),
            web.post("/v1/load_lora_adapter", load),
            web.post("/v1/unload_lora_adapter", unload),
            web.get("/seen", seen),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
