from django.contrib import admin
from django.utils.text import Truncator

from .models import ImageJob, JobTransition, WorkerState


class JobTransitionInline(admin.TabularInline):
    model = JobTransition
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "reason", "worker_id")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(ImageJob)
class ImageJobAdmin(admin.ModelAdmin):
    list_display = (
        "short_prompt",
        "status",
        "owner",
        "progress",
        "attempts",
        "worker_id",
        "created_at",
    )
    list_filter = ("status", "worker_id", "created_at")
    search_fields = ("prompt", "id", "owner__username")
    list_select_related = ("owner",)
    inlines = [JobTransitionInline]
    # Every field is written only through imagejobs.transitions.
    readonly_fields = [field.name for field in ImageJob._meta.fields]

    @admin.display(description="prompt")
    def short_prompt(self, job: ImageJob) -> str:
        return Truncator(job.prompt).chars(60)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(WorkerState)
class WorkerStateAdmin(admin.ModelAdmin):
    list_display = ("id", "hostname", "forge_url", "current_job", "last_seen", "circuit")
    list_filter = ("circuit",)
    readonly_fields = [field.name for field in WorkerState._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
