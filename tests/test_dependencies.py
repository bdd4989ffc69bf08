"""Everything coderig imports at run time is installed by ``pip install coderig``.

A venv that once held the test extras hides a missing runtime dependency (uvicorn's httptools
protocol came in through ``ray[serve]`` for months). So instead of trusting the venv, import
every module of the base install in a fresh interpreter, map each third-party module it loaded
to its distribution, and check that distribution is reachable from the base dependencies
declared in pyproject.toml (following each package's own requirements, with their extras).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# Modules that need an optional extra (named in pyproject) and say so when it is missing.
NEEDS_EXTRA = {"coderig.deploy.ray_app": "ray"}

IMPORT_ALL = """
import importlib, importlib.abc, json, pkgutil, sys
skip, blocked = (set(json.loads(arg)) for arg in sys.argv[1:3])

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)

sys.meta_path.insert(0, Blocker())
import coderig
for info in pkgutil.walk_packages(coderig.__path__, "coderig."):
    if info.name not in skip and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
tops = {name.split(".")[0] for name in sys.modules}
print(json.dumps(sorted(t for t in tops if t not in sys.stdlib_module_names)))
"""


def base_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def dependency_closure(roots: list[Requirement]) -> set[str]:
    """Distributions ``pip install`` of ``roots`` installs (markers evaluated, extras followed)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        names.add(canonicalize_name(name))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # optional on this platform; nothing it would bring is imported either
        for line in requires:
            req = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return names


def import_everything(blocked: set[str]) -> subprocess.CompletedProcess:
    """Import every coderig module in a fresh interpreter where ``blocked`` cannot be imported."""
    args = [json.dumps(sorted(NEEDS_EXTRA)), json.dumps(sorted(blocked))]
    return subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_every_module_imported_at_run_time_is_a_declared_dependency() -> None:
    installed = dependency_closure(base_requirements())
    # Everything in this venv that `pip install coderig` would not bring, made unimportable:
    # when coderig imports whole without them (the usual case), one interpreter has answered.
    done = import_everything(undeclared_modules(installed))
    if done.returncode == 0:
        return
    missing = missing_dependencies(installed)
    assert not missing, f"imported at run time, not installed by `pip install coderig`: {missing}"
    raise AssertionError(done.stderr[-3000:])


def undeclared_modules(installed: set[str]) -> set[str]:
    """Top-level modules of this venv that only distributions outside ``installed`` provide."""
    undeclared = set()
    for module, dists in metadata.packages_distributions().items():
        if module == "coderig" or not module.isidentifier() or module.startswith("_"):
            continue
        if (
            module not in sys.stdlib_module_names
            and not {canonicalize_name(d) for d in dists} & installed
        ):
            undeclared.add(module)
    return undeclared


def missing_dependencies(installed: set[str]) -> dict[str, list[str]]:
    """The undeclared modules coderig cannot import without, each with its distributions."""
    done = import_everything(set())
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    by_module = metadata.packages_distributions()
    undeclared = {}
    for module in set(loaded) & undeclared_modules(installed):
        undeclared[module] = sorted({canonicalize_name(d) for d in by_module[module]})
    # A library may import what happens to be installed (orjson, watchfiles...) and do without
    # it: only a module whose absence breaks an import is a missing dependency.
    return {m: d for m, d in undeclared.items() if import_everything({m}).returncode != 0}


def test_libraries_whose_internals_we_subclass_are_pinned_to_a_tested_range() -> None:
    # coderig.serve.protocol subclasses uvicorn's HttpToolsProtocol (private API).
    pinned = {r.name: r.specifier for r in base_requirements()}
    spec = pinned["uvicorn"]
    assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), spec
    assert spec.contains(metadata.version("uvicorn")), "installed uvicorn is outside the pin"
