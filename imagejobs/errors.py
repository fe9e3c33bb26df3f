"""Failure codes and the words a user sees for each.

Raw exception text never reaches users: it goes to the log and to the job's
staff-only `error_detail`.
"""

from enum import StrEnum

from django.conf import settings
from django.utils.translation import gettext


class ErrorCode(StrEnum):
    FORGE_UNREACHABLE = "forge_unreachable"
    FORGE_TIMEOUT = "forge_timeout"
    FORGE_OUT_OF_MEMORY = "forge_out_of_memory"
    FORGE_ERROR = "forge_error"
    INVALID_REQUEST = "invalid_request"
    STUCK = "stuck"
    WORKER_LOST = "worker_lost"
    STOPPED_BY_STAFF = "stopped_by_staff"
    WRONG_MODEL = "wrong_model"
    # While processing: the picture is drawn but storage refused it (full,
    # read-only); it is tried again. As a failure: it never could be.
    STORAGE_RETRYING = "storage_retrying"
    STORAGE_FAILED = "storage_failed"
    UNKNOWN = "unknown"


def user_message(code: str) -> str:
    """The readable message for a failure code, in the active language."""
    if code == ErrorCode.FORGE_UNREACHABLE:
        return gettext("Could not connect to the Forge API. Please tell your system administrator.")
    if code == ErrorCode.FORGE_TIMEOUT:
        return gettext("The Forge API timed out (%(seconds)ss). Please try again.") % {
            "seconds": f"{settings.FORGE_TIMEOUT:g}"
        }
    # FORGE_ERROR (a 5xx or a malformed answer) is "anything else" to a user.
    if code == ErrorCode.FORGE_OUT_OF_MEMORY:
        return gettext(
            "The GPU ran out of memory for this picture. Try a smaller size or try again."
        )
    if code == ErrorCode.INVALID_REQUEST:
        return gettext(
            "The image service refused the parameters of this request. Change them and try again."
        )
    if code == ErrorCode.STUCK:
        return gettext("The operation timed out (Stuck Job Guard). Please try again.")
    if code == ErrorCode.STOPPED_BY_STAFF:
        return gettext("An administrator stopped this picture. Please try again later.")
    if code == ErrorCode.WRONG_MODEL:
        return gettext(
            "The image service drew this picture with another model than the one asked for. "
            "Try again, or choose another model."
        )
    if code == ErrorCode.STORAGE_RETRYING:
        return gettext("The server could not store the picture. It will be tried again.")
    if code == ErrorCode.STORAGE_FAILED:
        return gettext(
            "The server could not store the picture (its disk is full or read-only). "
            "Please tell your system administrator, then try again."
        )
    if code == ErrorCode.WORKER_LOST:
        return gettext("The image worker stopped while drawing this picture. Please try again.")
    return gettext("An unknown error occurred. Please try again.")
