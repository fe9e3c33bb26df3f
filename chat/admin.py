import uuid

from django.contrib import admin
from django.db.models import QuerySet

from imagejobs.admin import ImageJobAdmin
from imagejobs.models import ImageJob
from mami.requests import SignedInRequest

from .actions import check_regenerate, check_retry
from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "text")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "updated_at")
    search_fields = ("title", "id", "owner__username")
    list_select_related = ("owner",)
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("__str__", "role", "conversation", "created_at")
    list_filter = ("role",)
    search_fields = ("text", "id")
    list_select_related = ("conversation",)


@admin.register(ImageJob)
class JobAdmin(ImageJobAdmin):
    """The queue's admin, plus Retry: a retried picture is a new assistant
    message in its conversation, which is chat's to write."""

    actions = [*ImageJobAdmin.actions, "retry_jobs"]

    @admin.action(description="Retry selected jobs (a new job, same parameters)")
    def retry_jobs(self, request: SignedInRequest, jobs: QuerySet[ImageJob]) -> None:
        def again(job_id: uuid.UUID) -> None:
            # A finished picture can't be retried; staff then get another take.
            job = ImageJob.objects.only("status").get(pk=job_id)
            action = check_regenerate if job.can_regenerate else check_retry
            action(request.user, job_id, as_staff=True)

        self._apply(request, jobs.values_list("id", flat=True), again, "queued again")
