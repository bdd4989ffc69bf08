"""The llama.cpp engine without running it: where the binary comes from (option, environment,
cache, PATH), what the build cache is keyed on, the command line a replica gets, and how the
gateway's payload is adapted for llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderig.engines import llamacpp_build
from coderig.engines.llamacpp import LlamaServerDialect, LlamaServerEngine
from coderig.engines.llamacpp_build import (
    CPU_LEVELS,
    PORTABLE_FLAGS,
    LlamaServerNotFound,
    build_dir,
    build_flags,
    cpu_flags,
    cpu_level,
    find_llama_server,
)


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'version: 1 (abc)'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No cached build, no llama-server on PATH, no environment override."""
    monkeypatch.setenv("CODERIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.delenv("CODERIG_LLAMA_SERVER", raising=False)
    monkeypatch.delenv("CODERIG_LLAMA_CMAKE_ARGS", raising=False)
    return tmp_path


def test_builds_are_portable_and_extra_cmake_flags_come_last(monkeypatch):
    monkeypatch.setenv("CODERIG_LLAMA_CMAKE_ARGS", "-DGGML_AVX2=ON -DGGML_NATIVE=ON")
    flags = build_flags("avx")
    assert set(PORTABLE_FLAGS) <= set(flags)
    assert "-DLLAMA_OPENSSL=OFF" in flags and "-DLLAMA_BUILD_UI=OFF" in flags
    # cmake keeps the last value of a repeated -D: the user's flags win.
    assert flags[-2:] == ["-DGGML_AVX2=ON", "-DGGML_NATIVE=ON"]


CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx {flags}
"""


@pytest.mark.parametrize(
    ("vendor", "flags", "level"),
    [
        ("GenuineIntel", "", "avx"),  # a Sandy Bridge, or an EPYC VM that hides AVX2
        ("AuthenticAMD", "fma f16c avx2 bmi2", "avx2"),  # EPYC Zen 2-3
        ("GenuineIntel", "fma f16c avx2 bmi2 avx512f avx512bw avx512vl avx512_vnni", "avx2"),
        ("GenuineIntel", "fma f16c avx2", "avx"),  # no BMI2: not quite x86-64-v3
    ],
)
def test_the_build_targets_the_highest_level_this_cpu_has(tmp_path, vendor, flags, level):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(vendor=vendor, flags=flags))
    assert cpu_level(cpu_flags(cpuinfo)) == level
    # every level is a build of its own: a CPU never finds another level's binary
    assert len({build_dir("0.3.36", build_flags(name)) for name in CPU_LEVELS}) == len(CPU_LEVELS)


def test_a_cpu_that_reports_no_flags_gets_the_oldest_level(tmp_path):
    assert cpu_level(cpu_flags(tmp_path / "missing")) == "avx"  # not Linux, or not x86


def test_the_build_cache_is_keyed_by_version_and_flags(isolated):
    portable = build_dir("0.3.36", ["-DGGML_AVX2=OFF"])
    assert portable == build_dir("0.3.36", ["-DGGML_AVX2=OFF"])
    assert portable != build_dir("0.3.36", ["-DGGML_AVX2=ON"])
    assert portable != build_dir("0.3.37", ["-DGGML_AVX2=OFF"])
    assert portable.parent == isolated / "cache" / "llama-server"
    assert portable.name.startswith("0.3.36-")


def test_nothing_found_means_none_so_the_caller_builds(isolated):
    assert find_llama_server() is None


def test_a_llama_server_on_path_is_used(isolated, monkeypatch):
    on_path = executable(isolated / "bin" / "llama-server")
    monkeypatch.setenv("PATH", str(on_path.parent))
    found = find_llama_server()
    assert found is not None and found.source == "PATH" and found.path == on_path
    assert found.version() == "1 (abc)"


def test_a_cached_build_wins_over_path(isolated, monkeypatch):
    monkeypatch.setenv("PATH", str(executable(isolated / "bin" / "llama-server").parent))
    cached = executable(build_dir() / "llama-server")
    found = find_llama_server()
    assert found is not None and found.source == "cache" and found.path == cached


def test_the_option_wins_over_the_environment_which_wins_over_the_cache(isolated, monkeypatch):
    executable(build_dir() / "llama-server")
    from_env = executable(isolated / "env" / "llama-server")
    monkeypatch.setenv("CODERIG_LLAMA_SERVER", str(from_env))
    assert find_llama_server().source == "environment"
    mine = executable(isolated / "mine" / "llama-server")
    found = find_llama_server(mine)
    assert found.source == "option" and found.path == mine


def test_a_path_that_is_not_an_executable_is_a_clear_error(isolated):
    not_executable = isolated / "llama-server"
    not_executable.write_text("")
    with pytest.raises(LlamaServerNotFound, match="--llama-server .*not an executable"):
        find_llama_server(not_executable)
    with pytest.raises(LlamaServerNotFound, match="not an executable"):
        find_llama_server(isolated / "missing")


def test_without_llama_cpp_python_the_error_says_what_to_do(monkeypatch):
    def missing(name):
        raise llamacpp_build.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(llamacpp_build.metadata, "version", missing)
    with pytest.raises(LlamaServerNotFound, match="--llama-server PATH"):
        llamacpp_build.llama_cpp_version()


def argv_value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_a_replica_gets_slots_sharing_one_kv_pool_each_capped_at_the_context(tmp_path):
    engine = LlamaServerEngine(
        tmp_path / "llama-server", tmp_path / "m.gguf", threads=2, n_ctx=2048, slots=4
    )
    argv = engine.launch(index=0, port=8123).argv
    assert argv[0] == str(tmp_path / "llama-server")
    assert argv_value(argv, "--parallel") == "4"
    assert argv_value(argv, "--ctx-size") == str(4 * 2048)
    assert argv_value(argv, "--kv-unified-per-slot") == "2048"
    assert argv_value(argv, "--host") == "127.0.0.1"  # engines answer only the gateway
    assert argv_value(argv, "--threads") == "2" and argv_value(argv, "--port") == "8123"
    assert "--metrics" in argv and "--slots" in argv  # folded into the gateway's, and routing
    assert "--lora" not in argv


def test_adapters_are_loaded_unapplied_and_extra_arguments_come_last(tmp_path):
    engine = LlamaServerEngine(
        tmp_path / "llama-server",
        tmp_path / "m.gguf",
        threads=1,
        adapters={"py": tmp_path / "py.gguf", "go": tmp_path / "go.gguf"},
        extra_args=["--spec-type", "ngram-simple"],
    )
    argv = engine.launch(index=1, port=9000).argv
    loras = [argv[i + 1] for i, a in enumerate(argv) if a == "--lora"]
    assert loras == [str(tmp_path / "py.gguf"), str(tmp_path / "go.gguf")]
    assert "--lora-init-without-apply" in argv
    assert argv[-2:] == ["--spec-type", "ngram-simple"]
    assert engine.dialect.adapters == ["py", "go"]


def test_the_dialect_asks_for_usage_and_turns_exact_length_into_ignore_eos():
    adapted = LlamaServerDialect().adapt({"prompt": "x", "max_tokens": 8, "min_tokens": 8}, None)
    assert adapted["stream_options"] == {"include_usage": True}
    assert adapted["ignore_eos"] is True and "min_tokens" not in adapted
    shorter = LlamaServerDialect().adapt({"prompt": "x", "max_tokens": 8, "min_tokens": 2}, None)
    assert "ignore_eos" not in shorter and "min_tokens" not in shorter


def test_the_dialect_sets_every_adapter_scale_so_the_base_model_gets_none():
    dialect = LlamaServerDialect(adapters=["py", "go"])
    assert dialect.adapt({"prompt": "x"}, "go")["lora"] == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 1.0},
    ]
    assert [a["scale"] for a in dialect.adapt({"prompt": "x"}, "base")["lora"]] == [0.0, 0.0]
    assert "lora" not in LlamaServerDialect().adapt({"prompt": "x"}, "base")


def test_every_engine_states_its_capabilities(tmp_path):
    from coderig.engines.base import Engine
    from coderig.engines.external import ExternalEngine
    from coderig.engines.vllm import VllmEngine

    engines = [
        LlamaServerEngine(tmp_path / "llama-server", tmp_path / "m.gguf", threads=1),
        VllmEngine(model="Qwen/Qwen2.5-Coder-1.5B", served_model_name="qwen"),
        ExternalEngine(model="upstream-model"),
    ]
    capabilities = list(Engine.__annotations__)
    for engine in engines:
        for capability in capabilities:
            assert hasattr(engine, capability), (type(engine).__name__, capability)
    assert [e.slot_routing for e in engines] == [True, False, False]
