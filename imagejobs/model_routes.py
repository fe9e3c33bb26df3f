"""Staff's routing rules: which checkpoint a request that names none goes
to ("anime …" to an anime checkpoint), as the system mami replaced did.

A rule matches when the prompt has one of its words or phrases as whole
words (any case), or when its regular expression is found in the prompt
(any case). The first enabled rule in order whose model a live worker
offers decides.
"""

import re
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from . import checkpoints
from .models import ModelRoute

# A pattern is searched in at most this much text: a prompt's length.
_MOST = 1000


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


def matches(rule: ModelRoute, prompt: str) -> bool:
    found = _compiled(rule.words, rule.pattern)
    return found is not None and found.search(prompt[:_MOST]) is not None


def route(prompt: str, entries: checkpoints.Offered | None = None) -> str | None:
    """The model the first matching rule gives `prompt`, among the models a
    live worker offers; None if no rule decides."""
    rules = [rule for rule in ModelRoute.objects.filter(enabled=True) if matches(rule, prompt)]
    if not rules:
        return None
    offered = checkpoints.offered() if entries is None else entries
    for rule in rules:
        found = checkpoints.resolve(rule.model, offered)
        if found:
            return found
    return None
