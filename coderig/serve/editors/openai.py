"""Editor post-processing on OpenAI's ``/v1/completions``: opt-in, so OpenAI semantics hold.

Extension fields: ``"stop_rules": true`` turns the stop rules on (``"language"`` names the file's
language; sending a language alone also turns them on); ``"t_max_predict_ms"`` sets a time budget
(llama.cpp semantics). Without them a completion is exactly what OpenAI's API would return.
"""

from __future__ import annotations

from coderig.serve.languages import load_languages
from coderig.serve.postprocess import STOP_RULES, EditorRules


def openai_editor_rules(body, settings) -> EditorRules | None:
    """The rules an OpenAI completion asked for, or None (plain OpenAI semantics)."""
    wants_rules = body.stop_rules if body.stop_rules is not None else body.language is not None
    budget = body.t_max_predict_ms
    if not wants_rules and not budget:
        return None
    language, _ = load_languages().resolve(language=body.language, code=body.prompt)
    return EditorRules.for_cursor(
        body.prompt,
        body.suffix,
        language=language,
        rules=frozenset(STOP_RULES if wants_rules else ()),
        time_budget_ms=budget,
    )
