from django.apps import AppConfig


class ImageJobsConfig(AppConfig):
    name = "imagejobs"
    verbose_name = "Image jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
