from django.apps import AppConfig


class ImageJobsConfig(AppConfig):
    name = "imagejobs"
    verbose_name = "Image jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from . import checks  # noqa: F401  (registers the system checks)
        from .fair_order import rerank_after_delete
        from .models import ImageJob

        post_delete.connect(
            rerank_after_delete, sender=ImageJob, dispatch_uid="rerank-after-delete"
        )
