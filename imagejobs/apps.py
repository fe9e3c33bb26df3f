from django.apps import AppConfig


class ImageJobsConfig(AppConfig):
    name = "imagejobs"
    verbose_name = "Image jobs"
    default_auto_field = "django.db.models.BigAutoField"
