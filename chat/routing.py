from django.urls import path, re_path

from .consumers import ConversationConsumer, NoSuchSocket

# Channels' consumers are ASGI apps; the stubs of Django's path() know views.
websocket_urlpatterns = [
    path("ws/conversations/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),  # type: ignore[arg-type]
    re_path(r"", NoSuchSocket.as_asgi()),  # type: ignore[arg-type]
]
