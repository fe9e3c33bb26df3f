from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def uses_in_memory_layer() -> bool:
    return settings.CHANNEL_LAYERS["default"]["BACKEND"] == IN_MEMORY_LAYER


@register()
def check_topology(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if uses_in_memory_layer() and not settings.MAMI_EMBEDDED_WORKER:
        return [
            Warning(
                "The in-memory channel layer is used but the worker does not run in the "
                "web process: workers in other processes can't push live updates.",
                hint="Set REDIS_URL, or MAMI_EMBEDDED_WORKER=1 for the one-process setup.",
                id="imagejobs.W001",
            )
        ]
    return []
