from typing import Any

from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from .drawing import JOB_HEARTBEAT_SECONDS


def uses_in_memory_layer() -> bool:
    backend = import_string(str(settings.CHANNEL_LAYERS["default"]["BACKEND"]))
    return issubclass(backend, InMemoryChannelLayer)


@register()
def check_stuck_limit(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The stuck guard fails a job whose heartbeat is older than its limit:
    a limit within the heartbeat's period would fail jobs being drawn."""
    beat = max(JOB_HEARTBEAT_SECONDS, settings.MAMI_PROGRESS_WRITE_INTERVAL)
    if 2 * beat >= settings.MAMI_STUCK_AFTER_SECONDS:
        return [
            Error(
                f"MAMI_STUCK_AFTER_SECONDS ({settings.MAMI_STUCK_AFTER_SECONDS:g}) must be more "
                f"than twice a drawing job's heartbeat ({beat:g}s): jobs being drawn would be "
                "failed as stuck.",
                id="imagejobs.E001",
            )
        ]
    return []


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
