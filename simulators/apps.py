from django.apps import AppConfig


class SimulatorsConfig(AppConfig):
    """Installed for its commands (`forgesim`, `chatsim`) only: nothing here
    is imported until one of them, or the embedded default, runs."""

    name = "simulators"
    default_auto_field = "django.db.models.BigAutoField"
