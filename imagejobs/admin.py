"""Django admin for the queue: staff watch and steer jobs here. Every action
goes through a `check_*` action (users' cards update live); no field is
ever edited by hand."""

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone, translation
from django.utils.html import format_html
from django.utils.text import Truncator

from mami.requests import SignedInRequest

from . import checkpoints, fair_order, positions
from .actions import (
    JobActionError,
    check_cancel,
    check_cancel_all_waiting,
    check_mark_error,
    check_move_to_head,
)
from .errors import user_message
from .models import ApiToken, ImageJob, JobTransition, ModelRoute, Status, WorkerState
from .overview import queue_overview


class JobTransitionInline(admin.TabularInline):
    model = JobTransition
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "code", "reason", "worker_id")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _seconds(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    return f"{delta.total_seconds():.1f} s"


def _place(snapshot: positions.QueueSnapshot, job: ImageJob) -> str:
    place = snapshot.position(job.id)
    return f"#{place}" if place else "—"


class ImageJobAdmin(admin.ModelAdmin):
    """Registered by `chat.admin`, which adds Retry: a retry is a new
    assistant message, and imagejobs never imports chat."""

    list_display = (
        "short_prompt",
        "status",
        "model",
        "owner",
        "conversation",
        "position",
        "progress",
        "attempts",
        "worker_id",
        "wait",
        "run",
        "thumbnail",
        "created_at",
    )
    list_filter = ("status", ("owner", admin.RelatedOnlyFieldListFilter), "worker_id", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("prompt", "=id", "owner__username", "owner__email")
    list_select_related = ("owner", "message")
    ordering = ("-created_at",)
    inlines = [JobTransitionInline]
    actions = ["cancel_jobs", "cancel_owners_waiting", "move_to_head", "mark_error"]
    fieldsets = (
        (None, {"fields": ("id", "owner", "message", "status", "position", "progress")}),
        (
            "Request",
            {
                "fields": (
                    "prompt",
                    "model",
                    "model_source",
                    "negative_prompt",
                    "width",
                    "height",
                    "steps",
                    "cfg_scale",
                    "sampler_name",
                    "seed",
                )
            },
        ),
        (
            "Processing",
            {
                "fields": (
                    "worker_id",
                    "attempts",
                    "recoveries",
                    "priority",
                    "passed_over",
                    "first_passed_at",
                    "last_passed_at",
                    "version",
                    "created_at",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                    "cancel_requested_at",
                    "retry_of",
                )
            },
        ),
        (
            "Result",
            {
                "fields": (
                    "thumbnail",
                    "result_seed",
                    "result_info",
                    "error_code",
                    "error_text",
                    "error_detail",
                )
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Every field is written only through imagejobs.transitions.
        return [f.name for f in ImageJob._meta.fields] + ["position", "thumbnail", "error_text"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """The columns, with a position column bound to one snapshot taken
        for this request: every row's place is from one moment, and no
        state is kept on this ModelAdmin, which all requests share."""
        snapshot = positions.snapshot()

        @admin.display(description="position")
        def position(job: ImageJob) -> str:
            return _place(snapshot, job)

        return [
            position if name == "position" else name for name in super().get_list_display(request)
        ]

    def get_urls(self) -> list[Any]:
        overview = path(
            "queue/",
            self.admin_site.admin_view(self.queue_overview_view),
            name="imagejobs_queue_overview",
        )
        return [overview, *super().get_urls()]

    def queue_overview_view(self, request: HttpRequest) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue overview",
            "overview": queue_overview(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/imagejobs/queue_overview.html", context)

    # -- columns ----------------------------------------------------------

    @admin.display(description="prompt")
    def short_prompt(self, job: ImageJob) -> str:
        return Truncator(job.prompt).chars(60)

    @admin.display(description="conversation")
    def conversation(self, job: ImageJob) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:chat_conversation_change", args=[job.message.conversation_id]),
            str(job.message.conversation_id)[:8],
        )

    @admin.display(description="position")
    def position(self, job: ImageJob) -> str:
        """On the change page: the place in line now."""
        return _place(positions.snapshot(), job)

    @admin.display(description="wait")
    def wait(self, job: ImageJob) -> str:
        end = job.started_at or (timezone.now() if job.status == Status.QUEUED else job.finished_at)
        return _seconds(end - job.created_at if end else None)

    @admin.display(description="run")
    def run(self, job: ImageJob) -> str:
        if job.started_at is None:
            return "—"
        end = job.finished_at or timezone.now()
        return _seconds(end - job.started_at)

    @admin.display(description="error, as users read it (in English)")
    def error_text(self, job: ImageJob) -> str:
        if not job.error_code:
            return "—"
        with translation.override("en"):
            return user_message(job.error_code)

    @admin.display(description="image")
    def thumbnail(self, job: ImageJob) -> str:
        if not job.image:
            return "—"
        url = reverse("imagejobs:image", args=[job.id]) + f"?v={job.version}"
        return format_html('<a href="{0}"><img src="{0}" alt="" height="48"></a>', url)

    # -- actions (each one a check_* action, job by job) -------------------

    def _apply(
        self,
        request: HttpRequest,
        job_ids: Iterable[uuid.UUID],
        action: Callable[[uuid.UUID], object],
        what: str,
    ) -> None:
        """Run `action` on each job; report how many it applied to and how
        many it skipped because their state doesn't allow it."""
        done = skipped = 0
        for job_id in job_ids:
            try:
                action(job_id)
                done += 1
            except JobActionError:
                skipped += 1
        self.message_user(request, f"{done} job(s) {what}.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} job(s) skipped: their state doesn't allow it.",
                messages.WARNING,
            )

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: SignedInRequest, jobs: QuerySet[ImageJob]) -> None:
        by = f"staff ({request.user})"
        self._apply(
            request,
            jobs.values_list("id", flat=True),
            lambda job_id: check_cancel(request.user, job_id, by=by, as_staff=True),
            "canceled (processing ones once Forge stops)",
        )

    @admin.action(description="Cancel every waiting job of the selected jobs' owners")
    def cancel_owners_waiting(self, request: SignedInRequest, jobs: QuerySet[ImageJob]) -> None:
        owners = jobs.values("owner_id")
        canceled = check_cancel_all_waiting(
            request.user,
            ImageJob.objects.filter(owner_id__in=owners),
            by=f"staff ({request.user})",
            as_staff=True,
        )
        self.message_user(request, f"{canceled} waiting job(s) canceled.", messages.SUCCESS)

    @admin.action(description="Move selected jobs to the head of the queue")
    def move_to_head(self, request: SignedInRequest, jobs: QuerySet[ImageJob]) -> None:
        # The last one moved ends up first: move in reverse queue order, so
        # the selection keeps its order at the head. Others are skipped.
        selected = set(jobs.values_list("id", flat=True))
        in_line = [job_id for job_id in fair_order.queued_ids() if job_id in selected]
        rest = [job_id for job_id in selected if job_id not in set(in_line)]
        self._apply(
            request,
            [*reversed(in_line), *rest],
            lambda job_id: check_move_to_head(request.user, job_id),
            "moved to the head of the queue",
        )

    @admin.action(description="Mark selected jobs as failed")
    def mark_error(self, request: SignedInRequest, jobs: QuerySet[ImageJob]) -> None:
        self._apply(
            request,
            jobs.values_list("id", flat=True),
            lambda job_id: check_mark_error(request.user, job_id),
            "marked as failed",
        )


@admin.register(WorkerState)
class WorkerStateAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "hostname",
        "forge_url",
        "current_job",
        "loaded_checkpoint",
        "switch_seconds",
        "last_seen",
        "circuit",
        "stopped_at",
        "lost_at",
    )
    list_filter = ("circuit",)
    readonly_fields = [field.name for field in WorkerState._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created with `manage.py create_api_token` (the key is shown
    once); here staff see and revoke them."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "user__username", "prefix")
    fields = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("name", "user", "prefix", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, tokens: QuerySet[ApiToken]) -> None:
        count = tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    """Which checkpoint a request that names none goes to: the first enabled
    rule in order that matches and whose model a live worker offers."""

    list_display = ("order", "words", "pattern", "model", "enabled", "offered")
    list_display_links = ("words", "pattern")
    list_editable = ("order", "enabled")
    fields = ("order", "words", "pattern", "model", "enabled")

    @admin.display(description="Offered now", boolean=True)
    def offered(self, rule: ModelRoute) -> bool:
        # A read per row: there are a handful of rules.
        return checkpoints.resolve(rule.model) is not None

    def save_model(self, request: HttpRequest, obj: ModelRoute, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if checkpoints.resolve(obj.model) is None:
            self.message_user(
                request,
                f"No live worker offers “{obj.model}” now: the rule is skipped until one does "
                f"(offered: {', '.join(checkpoints.choosable()) or 'none'}).",
                messages.WARNING,
            )
