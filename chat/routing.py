from django.urls import path, re_path

from .consumers import ConversationConsumer, NoSuchSocket

websocket_urlpatterns = [
    path("ws/conversations/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),
]
