"""Staff's routing rules: which checkpoint a request that names none goes
to ("anime …" to an anime checkpoint), as the system mami replaced did.

A rule matches when the prompt has one of its words or phrases as whole
words (any case), or when its regular expression is found in the prompt
(any case). The first enabled rule in order whose model a live worker
offers decides.
"""

from . import checkpoints
from .models import ModelRoute
from .route_rules import matches


def route(prompt: str, entries: checkpoints.Offered | None = None) -> str | None:
    """The model the first matching rule gives `prompt`, among the models a
    live worker offers; None if no rule decides."""
    rules = [
        rule
        for rule in ModelRoute.objects.filter(enabled=True)
        if matches(rule.words, rule.pattern, prompt)
    ]
    if not rules:
        return None
    offered = checkpoints.offered() if entries is None else entries
    for rule in rules:
        found = checkpoints.resolve(rule.model, offered)
        if found:
            return found
    return None
