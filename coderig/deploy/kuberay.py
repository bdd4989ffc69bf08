"""Serve config files and KubeRay ``RayService`` manifests for the coderig Ray application.

Both describe the same application as ``coderig deploy ray`` runs: ``import_path:
coderig.deploy.ray_app:build_app`` with the settings as ``args``, so what was tried on a laptop
cluster is what a GPU cluster runs. Nothing here imports Ray: manifests can be generated on a
machine without it.

The RayService puts the head on a CPU pod (it runs the controller, the HTTP proxy and the
gateway ingress, which needs no GPU: ``num_cpus: 0``) and the engine replicas on a GPU worker
group that KubeRay's autoscaler grows and shrinks with the Serve replicas (``minReplicas: 0``
lets the GPU nodes go when the application scales to zero).
"""

from __future__ import annotations

import json
import math
from typing import Any

from coderig import __version__
from coderig.deploy.ray_app_config import APP_NAME, RayAppConfig

DEFAULT_RAY_VERSION = "2.60.0"


def ray_version() -> str:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:
        return DEFAULT_RAY_VERSION


def application(
    config: RayAppConfig, *, name: str = APP_NAME, pip: list[str] | None = None
) -> dict[str, Any]:
    """One entry of a Serve config's ``applications``."""
    app: dict[str, Any] = {
        "name": name,
        "route_prefix": "/",
        "import_path": "coderig.deploy.ray_app:build_app",
        "args": config.to_dict(),
    }
    if pip:
        app["runtime_env"] = {"pip": pip}
    return app


def serve_config(
    config: RayAppConfig,
    *,
    name: str = APP_NAME,
    host: str = "0.0.0.0",
    port: int = 8000,
    pip: list[str] | None = None,
) -> dict[str, Any]:
    """A Serve config file (``serve deploy coderig.yaml``)."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": host, "port": port},
        "applications": [application(config, name=name, pip=pip)],
    }


def default_pip(config: RayAppConfig) -> list[str]:
    packages = [f"coderig[ray]=={__version__}"]
    if config.engine == "vllm":
        packages.append("vllm")
    return packages


def rayservice(
    config: RayAppConfig,
    *,
    name: str = APP_NAME,
    image: str | None = None,
    pip: list[str] | None = None,
    gpu_type: str | None = None,
    worker_cpus: int = 8,
    worker_memory: str = "32Gi",
    head_cpus: int = 4,
    head_memory: str = "16Gi",
) -> dict[str, Any]:
    """A KubeRay ``RayService`` (apiVersion ``ray.io/v1``) running the coderig application."""
    version = ray_version()
    gpu = config.gpus_per_replica > 0
    image = image or f"rayproject/ray:{version}-py311{'-gpu' if gpu else ''}"
    if gpu:
        gpus_per_worker = max(1, math.ceil(config.gpus_per_replica))
        replicas_per_worker = max(1, int(gpus_per_worker // config.gpus_per_replica))
    else:
        replicas_per_worker = max(1, worker_cpus // max(1, config.threads_per_replica))
    max_workers = max(1, math.ceil(config.max_replicas / replicas_per_worker))
    serve_v2 = serve_config(config, name=name, pip=pip if pip is not None else default_pip(config))
    resources: dict[str, str] = {"cpu": str(worker_cpus), "memory": worker_memory}
    if gpu:
        resources["nvidia.com/gpu"] = str(gpus_per_worker)
    worker_pod: dict[str, Any] = {
        "containers": [
            {
                "name": "ray-worker",
                "image": image,
                "resources": {"limits": dict(resources), "requests": dict(resources)},
            }
        ],
    }
    if gpu:
        worker_pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        if gpu_type:
            worker_pod["nodeSelector"] = {"nvidia.com/gpu.product": gpu_type}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "coderig"}},
        "spec": {
            # A string holding YAML, as KubeRay expects (JSON is valid YAML).
            "serveConfigV2": dump_yaml(serve_v2),
            "rayClusterConfig": {
                "rayVersion": version,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-head",
                                    "image": image,
                                    "resources": {
                                        "limits": {"cpu": str(head_cpus), "memory": head_memory},
                                        "requests": {"cpu": str(head_cpus), "memory": head_memory},
                                    },
                                    "ports": [
                                        {"containerPort": 6379, "name": "gcs-server"},
                                        {"containerPort": 8265, "name": "dashboard"},
                                        {"containerPort": 10001, "name": "client"},
                                        {"containerPort": 8000, "name": "serve"},
                                    ],
                                }
                            ]
                        }
                    },
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu-workers" if gpu else "cpu-workers",
                        "replicas": min(max_workers, max(config.min_replicas, 0)),
                        "minReplicas": 0,
                        "maxReplicas": max_workers,
                        "rayStartParams": {},
                        "template": {"spec": worker_pod},
                    }
                ],
            },
        },
    }


def dump_yaml(data: Any) -> str:
    """YAML with PyYAML when installed (it comes with Ray); JSON, which is YAML, otherwise."""
    try:
        import yaml
    except ImportError:
        return json.dumps(data, indent=2) + "\n"

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # serveConfigV2 reads as the YAML it is
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False)
