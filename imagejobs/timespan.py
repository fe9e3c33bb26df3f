"""Rough, human time spans: '8 seconds', '3 minutes', '1 h 20 min'."""

from django.utils.translation import gettext, ngettext


def duration_parts(seconds: float) -> tuple[str, int, int]:
    """What `duration` will say, without the words: equal parts read the
    same in every language (a cache key for rendered text)."""
    whole = max(round(seconds), 1)
    if whole < 60:
        return ("s", whole, 0)
    minutes = round(whole / 60)
    if minutes < 60:
        return ("m", minutes, 0)
    hours, minutes = divmod(minutes, 60)
    return ("h", hours, minutes)


def duration(seconds: float | None) -> str:
    """The span in the active language."""
    if seconds is None:
        return ""
    unit, value, rest = duration_parts(seconds)
    if unit == "s":
        return ngettext("%(n)d second", "%(n)d seconds", value) % {"n": value}
    if unit == "m":
        return ngettext("%(n)d minute", "%(n)d minutes", value) % {"n": value}
    return gettext("%(h)d h %(m)d min") % {"h": value, "m": rest}
