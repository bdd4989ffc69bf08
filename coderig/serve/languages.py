"""Which programming language a completion is in, and that language's rules, from data.

The rules live in ``data/languages.toml`` (ids, file extensions, comment syntax, top-level
definition patterns, detection patterns) so a team can read and extend them without code. A
request's language comes from, in order: an explicit ``language`` field (Tabby sends VS Code's
language ids), the file path's extension, then a vote of the detection patterns over the code
before the cursor (llama.vim sends neither a language nor the current file's name).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Language:
    id: str
    aliases: tuple[str, ...]
    extensions: tuple[str, ...]
    line_comment: str | None
    block_comment: tuple[str, str] | None
    top_level: tuple[re.Pattern[str], ...]
    detect: tuple[re.Pattern[str], ...]

    def comment(self, text: str) -> str:
        """``text`` as comment lines of this language (one comment per line, so the model sees
        ordinary code comments, as Tabby renders its snippets)."""
        lines = text.splitlines() or [""]
        if self.line_comment:
            return "\n".join(
                f"{self.line_comment} {line}".rstrip() if line else self.line_comment
                for line in lines
            )
        if self.block_comment:
            opening, closing = self.block_comment
            body = "\n".join(lines).replace(closing, "")  # a stray closer would end the comment
            return f"{opening}\n{body}\n{closing}"
        return "\n".join(lines)

    def starts_top_level(self, line: str) -> re.Match[str] | None:
        """A match when ``line`` (no indentation) begins a new top-level definition."""
        if not line or line[0].isspace():
            return None
        for pattern in self.top_level:
            found = pattern.match(line)
            if found:
                return found
        return None


@dataclass(frozen=True)
class LanguageTable:
    languages: tuple[Language, ...]

    def by_id(self, name: str | None) -> Language | None:
        if not name:
            return None
        key = name.strip().lower()
        for language in self.languages:
            if key == language.id or key in language.aliases:
                return language
        return None

    def by_path(self, path: str | None) -> Language | None:
        if not path:
            return None
        suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower().lstrip(".")
        if not suffix:
            return None
        for language in self.languages:
            if suffix in language.extensions:
                return language
        return None

    def detect(self, code: str, *, min_votes: int = 2) -> Language | None:
        """The language whose detection patterns match the code most often (at least twice)."""
        if not code:
            return None
        sample = code[-4000:]
        scores = []
        for language in self.languages:
            votes = sum(len(pattern.findall(sample)) for pattern in language.detect)
            scores.append((votes, language))
        # Stable sort: a tie goes to the language listed first in the data file.
        scores.sort(key=lambda pair: pair[0], reverse=True)
        best_votes, best = scores[0]
        return best if best_votes >= min_votes else None

    def resolve(
        self, *, language: str | None = None, path: str | None = None, code: str = ""
    ) -> tuple[Language | None, str]:
        """The language and how it was found: ``field``, ``path``, ``detected`` or ``unknown``."""
        found = self.by_id(language)
        if found:
            return found, "field"
        found = self.by_path(path)
        if found:
            return found, "path"
        found = self.detect(code)
        if found:
            return found, "detected"
        return None, "unknown"


def _compile(patterns: list[str], flags: int = 0) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern, flags) for pattern in patterns)


@lru_cache(maxsize=1)
def load_languages() -> LanguageTable:
    """The shipped table, parsed once."""
    raw = tomllib.loads(files("coderig.serve").joinpath("data/languages.toml").read_text())
    languages = []
    for entry in raw["language"]:
        ids = [name.lower() for name in entry["ids"]]
        block = entry.get("block_comment")
        languages.append(
            Language(
                id=ids[0],
                aliases=tuple(ids[1:]),
                extensions=tuple(ext.lower() for ext in entry.get("extensions", ())),
                line_comment=entry.get("line_comment"),
                block_comment=(block[0], block[1]) if block else None,
                top_level=_compile(entry.get("top_level", [])),
                detect=_compile(entry.get("detect", []), re.MULTILINE),
            )
        )
    return LanguageTable(tuple(languages))
