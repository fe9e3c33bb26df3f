"""A routing rule's text (`ModelRoute.words`, `.pattern`): whether it is
well-formed, and whether it matches a prompt. Field validation needs no
workers, so it lives apart from the routing itself (`model_routes`)."""

import re
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .bounds import PROMPT_MAX_LENGTH


def words_of(rule_words: str) -> list[str]:
    return [word.strip() for word in rule_words.split(",") if word.strip()]


@lru_cache(maxsize=256)
def _compiled(words: str, pattern: str) -> re.Pattern[str] | None:
    parts = [r"\b" + re.escape(word) + r"\b" for word in words_of(words)]
    if pattern:
        parts.append(f"(?:{pattern})")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def check_rule(words: str, pattern: str) -> None:
    """Raise ValidationError unless the rule has something to match and
    its pattern is a valid regular expression."""
    if not words_of(words) and not pattern.strip():
        raise ValidationError(_("Give the rule some words or a pattern to match."))
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValidationError(
                _("The pattern is not a valid regular expression: %(error)s") % {"error": exc}
            ) from None


def matches(words: str, pattern: str, prompt: str) -> bool:
    found = _compiled(words, pattern)
    # A prompt is at most this long; nothing longer is searched.
    return found is not None and found.search(prompt[:PROMPT_MAX_LENGTH]) is not None
