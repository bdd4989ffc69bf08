"""The KubeRay RayService manifest and Serve config that ``coderig deploy ray`` writes."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from coderig.cli import main
from coderig.deploy.kuberay import rayservice, serve_config
from coderig.deploy.ray_app_config import RayAppConfig


def gpu_config() -> RayAppConfig:
    return RayAppConfig(
        model="Qwen/Qwen2.5-Coder-7B",
        engine="vllm",
        gpus_per_replica=1.0,
        min_replicas=0,
        max_replicas=4,
        target_ongoing_requests=32,
        downscale_delay_s=900,
    )


def test_rayservice_is_a_ray_io_v1_service_running_the_coderig_app():
    manifest = rayservice(gpu_config())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    serve_v2 = yaml.safe_load(manifest["spec"]["serveConfigV2"])  # a YAML string, as KubeRay wants
    (app,) = serve_v2["applications"]
    assert app["import_path"] == "coderig.deploy.ray_app:build_app"
    assert app["route_prefix"] == "/"
    assert app["args"]["model"] == "Qwen/Qwen2.5-Coder-7B" and app["args"]["engine"] == "vllm"
    assert app["args"]["min_replicas"] == 0  # scale to zero
    assert "vllm" in app["runtime_env"]["pip"]
    assert RayAppConfig.from_dict(app["args"]) == gpu_config()  # round-trips into the builder


def test_gpu_workers_autoscale_from_zero_and_the_head_has_no_gpu():
    cluster = rayservice(gpu_config(), gpu_type="NVIDIA-L4")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 10001, 8000} <= ports
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] == 0 and workers["maxReplicas"] == 4
    pod = workers["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["containers"][0]["image"].endswith("-gpu")


def test_cpu_replicas_get_cpu_workers_without_gpu_requests():
    config = RayAppConfig(threads_per_replica=4, max_replicas=4)
    (workers,) = rayservice(config)["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits
    assert workers["maxReplicas"] == 2  # 8-CPU workers hold two 4-thread replicas


def test_autoscaling_settings_reach_the_deployment():
    scaling = gpu_config().autoscaling_config()
    assert scaling["min_replicas"] == 0 and scaling["initial_replicas"] == 1
    assert scaling["max_replicas"] == 4 and scaling["target_ongoing_requests"] == 32
    assert scaling["downscale_delay_s"] == 900
    assert gpu_config().replica_actor_options() == {"num_cpus": 1, "num_gpus": 1.0}


def test_cli_writes_the_manifest_and_a_serve_config(tmp_path):
    manifest = tmp_path / "coderig-rayservice.yaml"
    config = tmp_path / "serve.yaml"
    result = CliRunner().invoke(
        main,
        [
            "deploy",
            "ray",
            "--engine",
            "vllm",
            "--model",
            "Qwen/Qwen2.5-Coder-7B",
            "--max-replicas",
            "8",
            "--idle-shutdown",
            "30m",
            "--k8s-manifest",
            str(manifest),
            "--serve-config",
            str(config),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    loaded = yaml.safe_load(manifest.read_text())
    app = yaml.safe_load(loaded["spec"]["serveConfigV2"])["applications"][0]
    assert app["args"]["max_replicas"] == 8 and app["args"]["downscale_delay_s"] == 1800
    assert app["args"]["gpus_per_replica"] == 1.0
    assert yaml.safe_load(config.read_text())["applications"][0]["args"] == app["args"]


def test_serve_config_listens_where_asked():
    config = serve_config(RayAppConfig(), port=9000)
    assert config["http_options"] == {"host": "0.0.0.0", "port": 9000}


def test_bad_replica_bounds_are_a_usage_error():
    result = CliRunner().invoke(
        main, ["deploy", "ray", "--min-replicas", "3", "--max-replicas", "2", "--serve-config", "-"]
    )
    assert result.exit_code == 2 and "--min-replicas" in result.output


def test_an_unreachable_cluster_fails_in_seconds():
    result = CliRunner().invoke(main, ["deploy", "ray", "--address", "127.0.0.1:1"])
    assert result.exit_code == 1 and "no Ray cluster answers at 127.0.0.1:1" in result.output
