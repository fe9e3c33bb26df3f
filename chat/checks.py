"""Start-up checks of the chat-model settings: a wrong one is said once,
when the server starts, not with every reply that then fails."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register


@register()
def chat_model_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    url = settings.CHAT_MODEL_URL
    if not url or url == "sim":
        return []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [
            Error(
                f"CHAT_MODEL_URL is {url!r}: it must be an http(s) URL of an "
                "OpenAI-compatible server (e.g. http://localhost:11434/v1), or 'sim'.",
                id="mami.E010",
            )
        ]
    if not settings.CHAT_MODEL:
        return [
            Error(
                "CHAT_MODEL_URL is set but CHAT_MODEL is empty: name the model the "
                "server should answer with (e.g. llama3.1 for Ollama).",
                id="mami.E011",
            )
        ]
    return []
