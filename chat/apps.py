from typing import Any

from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from imagejobs import broadcast, sweeps
        from mami import checks as site_checks  # noqa: F401  (registers the address checks)

        from . import checks  # noqa: F401  (registers the settings' checks)
        from .presence import watched_conversations

        user_logged_out.connect(_close_session_sockets, dispatch_uid="chat.close_sockets")
        # A queue move renders only for conversations someone has open.
        broadcast.set_audience(watched_conversations)
        # A web process that died mid-reply leaves it writing; the workers'
        # sweeps find it even when no other reply is being written.
        sweeps.also_sweep("orphaned replies failed", _fail_orphaned_replies)
        sweeps.also_sweep("stale socket rows removed", _forget_stale_sockets)


def _fail_orphaned_replies() -> int:
    # Imported when first run: the chat model's client is not loaded by
    # processes that never sweep.
    from .reply_writer import fail_orphaned_replies

    return fail_orphaned_replies()


def _forget_stale_sockets() -> int:
    from .presence import forget_stale_sockets

    return forget_stale_sockets()


def _close_session_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out closes that session's sockets at once: they stop
    receiving that user's cards."""
    from .presence import end_session_sockets

    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        end_session_sockets(session.session_key)
