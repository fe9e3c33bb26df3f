"""A routing rule's text (`ModelRoute.words`, `.pattern`): whether it is
well-formed, and whether it matches a prompt. Field validation needs no
workers, so it lives apart from the routing itself (`model_routes`).

A staff member's pattern runs on every user's prompt, so it runs on RE2,
whose matching time grows linearly with the prompt whatever the pattern:
`(a+)+$` cannot stall the site as it would on Python's backtracking `re`.
What RE2 cannot promise that for (backreferences, lookaround) it refuses,
and the rule is refused when saved, with RE2's reason. The words are
escaped literals, which Python's `re` matches in linear time too, and it
knows Unicode word boundaries ("çiçek"), which RE2's ASCII `\\b` does not.
"""

import re
from functools import lru_cache

import re2
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .bounds import PROMPT_MAX_LENGTH

# RE2's memory for one compiled pattern: plenty for any pattern a person
# types; a pattern that needs more (`(a{999}){999}`) is refused.
PATTERN_MEMORY = 4 << 20


def words_of(rule_words: str) -> list[str]:
    return [word.strip() for word in rule_words.split(",") if word.strip()]


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = PATTERN_MEMORY
    options.log_errors = False
    return options


def _compile_pattern(pattern: str) -> "re2._Regexp":
    """Raises re2.error with the reason if RE2 cannot compile it."""
    return re2.compile(pattern, _options())


@lru_cache(maxsize=256)
def _compiled(words: str, pattern: str) -> tuple[re.Pattern[str] | None, "re2._Regexp | None"]:
    parts = [r"\b" + re.escape(word) + r"\b" for word in words_of(words)]
    by_words = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    return by_words, _compile_pattern(pattern) if pattern else None


def check_rule(words: str, pattern: str) -> None:
    """Raise ValidationError unless the rule has something to match and
    its pattern is one RE2 runs (in linear time)."""
    if not words_of(words) and not pattern.strip():
        raise ValidationError(_("Give the rule some words or a pattern to match."))
    if pattern:
        try:
            _compile_pattern(pattern)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            raise ValidationError(
                _(
                    "The pattern cannot be used: %(error)s. Patterns run on RE2, which "
                    "has no backreferences or lookaround, so that no prompt can make "
                    "matching slow."
                )
                % {"error": reason}
            ) from None


def matches(words: str, pattern: str, prompt: str) -> bool:
    by_words, by_pattern = _compiled(words, pattern)
    # A prompt is at most this long; nothing longer is searched.
    prompt = prompt[:PROMPT_MAX_LENGTH]
    if by_words is not None and by_words.search(prompt) is not None:
        return True
    return by_pattern is not None and by_pattern.search(prompt) is not None
