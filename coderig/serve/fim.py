"""Fill-in-the-middle: pick the model family's template and render prefix + suffix with it.

Templates are data (``data/fim_templates.toml``). A family is chosen from the model's own
vocabulary when possible — its markers must each be a single special token there, or the
rendered prompt would be silently wrong — then from the model's name, then from a flag.
A model with no FIM tokens (the embedded SmolLM2) gets ``None``: the gateway then completes
from the prefix alone and says so in the ``X-Coderig-FIM`` response header.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

# How a FIM request was handled, in the X-Coderig-FIM header.
FIM_HEADER = "X-Coderig-FIM"
FIM_PREFIX_ONLY = "prefix-only"


@dataclass(frozen=True)
class FimTemplate:
    id: str
    description: str
    template: str
    markers: tuple[str, ...]
    detect: tuple[str, ...]
    stop: tuple[str, ...]
    names: tuple[str, ...]

    def render(self, prefix: str, suffix: str) -> str:
        """The prompt for a completion between ``prefix`` and ``suffix``."""
        # str.replace, not str.format: code is full of braces.
        return self.template.replace("{prefix}", prefix).replace("{suffix}", suffix)

    def matches_name(self, model_name: str) -> bool:
        return any(re.search(pattern, model_name, re.IGNORECASE) for pattern in self.names)


def load_templates() -> dict[str, FimTemplate]:
    """Every family in the shipped data file, in detection order."""
    raw = tomllib.loads(files("coderig.serve").joinpath("data/fim_templates.toml").read_text())
    templates = {}
    for entry in raw["family"]:
        templates[entry["id"]] = FimTemplate(
            id=entry["id"],
            description=entry["description"],
            template=entry["template"],
            markers=tuple(entry["markers"]),
            detect=tuple(entry.get("detect", ())),
            stop=tuple(entry.get("stop", ())),
            names=tuple(entry.get("names", ())),
        )
    return templates


# A function telling whether a string is one special token in the model's vocabulary.
IsSpecialToken = Callable[[str], bool]


class FimConfigError(ValueError):
    """A forced family whose markers the model does not have."""


def choose_template(
    *,
    model_name: str,
    is_special_token: IsSpecialToken | None,
    override: str | None = None,
) -> FimTemplate | None:
    """The FIM template for this model, or ``None`` when it has no FIM tokens.

    ``override`` is ``--fim-template``: a family id, or ``none`` to switch FIM off.
    """
    templates = load_templates()
    if override:
        if override == "none":
            return None
        if override not in templates:
            raise FimConfigError(
                f"unknown FIM template {override!r}; choose one of: {', '.join(templates)}, none"
            )
        chosen = templates[override]
        if is_special_token is not None and not _has_all(chosen.markers, is_special_token):
            raise FimConfigError(
                f"--fim-template {override}: the model's vocabulary lacks its markers "
                f"{', '.join(chosen.markers)} as special tokens"
            )
        return chosen

    if is_special_token is not None:
        for template in templates.values():
            if _has_all(template.markers, is_special_token) and _has_all(
                template.detect, is_special_token
            ):
                return template
        return None

    for template in templates.values():
        if template.matches_name(model_name):
            return template
    return None


def _has_all(tokens: tuple[str, ...], is_special_token: IsSpecialToken) -> bool:
    return all(is_special_token(token) for token in tokens)
