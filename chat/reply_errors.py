"""Why a reply failed, and what its reader is told (in their language)."""

from enum import StrEnum

from django.utils.translation import gettext_lazy as _


class ReplyError(StrEnum):
    UNREACHABLE = "chat_unreachable"
    TIMEOUT = "chat_timeout"
    REFUSED = "chat_refused"
    BROKEN = "chat_broken"
    BAD_TOOL_CALL = "chat_bad_tool_call"
    INTERRUPTED = "chat_interrupted"
    UNKNOWN = "chat_unknown"


MESSAGES = {
    ReplyError.UNREACHABLE: _("The chat model could not be reached."),
    ReplyError.TIMEOUT: _("The chat model took too long to answer."),
    ReplyError.REFUSED: _("The chat model refused the request."),
    ReplyError.BROKEN: _("The chat model’s answer was cut off or garbled."),
    ReplyError.BAD_TOOL_CALL: _("The chat model asked for a picture in a way mami could not read."),
    ReplyError.INTERRUPTED: _("This reply stopped when the server restarted."),
    ReplyError.UNKNOWN: _("Something went wrong while writing this reply."),
}


def error_message(code: str) -> str:
    known = MESSAGES.get(ReplyError(code)) if code in ReplyError else None
    return str(known if known is not None else MESSAGES[ReplyError.UNKNOWN])
