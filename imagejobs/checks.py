from typing import Any

from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.core.checks import CheckMessage, Warning, register
from django.utils.module_loading import import_string


def uses_in_memory_layer() -> bool:
    backend = import_string(str(settings.CHANNEL_LAYERS["default"]["BACKEND"]))
    return issubclass(backend, InMemoryChannelLayer)


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
