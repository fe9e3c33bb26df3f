"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import asyncio
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mami.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from imagejobs import embedded  # noqa: E402
from mami.origin import SameOriginValidator  # noqa: E402
from mami.request_threads import RequestThreads  # noqa: E402


class EmbeddedStartup:
    """Hands the server's event loop to the broadcaster and starts the
    in-process worker on the first connection (Daphne has no lifespan
    events to do it earlier)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop = loop
            embedded.start(loop)
        await self.app(scope, receive, send)


application = EmbeddedStartup(
    ProtocolTypeRouter(
        {
            "http": RequestThreads(django_asgi_app, settings.MAMI_REQUEST_THREADS),
            # A socket's reads (session, user, its cards) on the same kind
            # of threads: a thousand sockets reopening at once no longer
            # queue for channels' one database thread.
            "websocket": RequestThreads(
                SameOriginValidator(
                    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
                ),
                settings.MAMI_REQUEST_THREADS,
            ),
        }
    )
)
