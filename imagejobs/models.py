import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .bounds import PROMPT_MAX_LENGTH
from .route_rules import check_rule


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    PROCESSING = "processing", _("Processing")
    COMPLETE = "complete", _("Complete")
    ERROR = "error", _("Error")
    CANCELED = "canceled", _("Canceled")


UNFINISHED_STATUSES = frozenset({Status.QUEUED, Status.PROCESSING})

GENERATION_FIELDS = (
    "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler_name", "seed",
)  # fmt: skip


class ModelSource(models.TextChoices):
    CHOSEN = "chosen", _("chosen")
    RULE = "rule", _("by a routing rule")
    DEFAULT = "default", _("the default")


# See ImageJob.preview_key.
PREVIEW_UNREAD = object()


class ImageJob(models.Model):
    """One picture request on its way through the GPU queue.

    Its status is written only by `imagejobs.transitions`, one conditional
    UPDATE per change, each bumping `version`. The fair-order keys
    (`fair_*`, `passed_over`) are written by `imagejobs.fair_order`'s ranking.
    """

    # Not a field: the worker's own copy of a job being drawn knows the key
    # of its latest live preview (None: none yet); a copy read from the
    # table does not (PREVIEW_UNREAD), and its card asks JobPreview.
    preview_key: int | object | None = PREVIEW_UNREAD

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.OneToOneField(
        "chat.Message", on_delete=models.CASCADE, related_name="image_job"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_jobs"
    )

    # What was asked for (Forge txt2img parameters).
    prompt = models.TextField(max_length=PROMPT_MAX_LENGTH)
    # The user's own words, when the chat model wrote the prompt from them
    # (the card shows both).
    asked_as = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True, max_length=PROMPT_MAX_LENGTH)
    width = models.PositiveSmallIntegerField(default=512)
    height = models.PositiveSmallIntegerField(default=512)
    steps = models.PositiveSmallIntegerField(default=20)
    # The checkpoint asked for (its Forge model name); empty: whichever one
    # the worker's Forge draws with.
    model = models.CharField(max_length=255, blank=True, default="")
    # How `model` was decided (`ModelSource`): the card says so.
    model_source = models.CharField(
        max_length=16, choices=ModelSource.choices, blank=True, default=""
    )
    cfg_scale = models.FloatField(default=7.0)
    sampler_name = models.CharField(max_length=64, default="Euler")
    seed = models.BigIntegerField(default=-1, help_text=_("-1 lets Forge pick one."))

    # Where it is.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Higher runs first; ties run in arrival order. Lets staff and crash
    # recovery put a job at the head of the queue.
    priority = models.IntegerField(default=0)
    # The fair order's keys (see `imagejobs.fair_order`), kept current for every
    # queued job of an owner whenever one of that owner's jobs changes, so
    # the queue reads in index order instead of ranking every row each time.
    # The owner's turn: 1 for their next job, 2 for the one after...
    fair_turn = models.PositiveIntegerField(default=1)
    # When the owner's last job started (`fair_order.NEVER` if none has).
    fair_last_started = models.DateTimeField(null=True, blank=True)
    # When the owner asked for their next job.
    fair_first_asked = models.DateTimeField(null=True, blank=True)
    # Times a worker took a job behind this one because it wanted a model
    # the worker did not have loaded, and when that first and last
    # happened: the scheduler's bound on how long a job may be passed over
    # (`imagejobs.scheduling`).
    passed_over = models.PositiveSmallIntegerField(default=0)
    first_passed_at = models.DateTimeField(null=True, blank=True)
    last_passed_at = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    # Forge calls made for this job, retries included.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Times the job was put back in line after its worker died.
    recoveries = models.PositiveSmallIntegerField(default=0)
    worker_id = models.CharField(max_length=128, blank=True)
    # Set when the user cancels while Forge draws; the worker interrupts
    # Forge and then cancels the job.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveBigIntegerField(default=1)

    # How it ended.
    error_code = models.CharField(max_length=32, blank=True)
    # Raw failure text for staff; never shown to the user.
    error_detail = models.TextField(blank=True)
    image = models.ImageField(upload_to="jobs/%Y/%m/", blank=True)
    result_seed = models.BigIntegerField(null=True, blank=True)
    result_info = models.JSONField(null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )

    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The fair order, in index order (and the queue's top priority).
            models.Index(
                fields=[
                    "status",
                    "-priority",
                    "fair_turn",
                    "fair_last_started",
                    "fair_first_asked",
                    "owner",
                    "id",
                ],
                name="imagejob_fair_order_idx",
            ),
            models.Index(fields=["owner", "status"], name="imagejob_owner_status_idx"),
            # Whether the queued jobs ask for more than one model.
            models.Index(fields=["status", "model"], name="imagejob_status_model_idx"),
            # The fair order asks each waiting user's last start; the rate
            # limit counts each user's recent requests.
            models.Index(fields=["owner", "started_at"], name="imagejob_owner_started_idx"),
            models.Index(fields=["owner", "created_at"], name="imagejob_owner_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="imagejob_progress_lte_100"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=Status.values), name="imagejob_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prompt[:40]} ({self.status})"

    # What a user (or staff) may do to the job now. Views, the API, the admin
    # and the card template all ask these; the check_* actions enforce them
    # under a row lock.

    @property
    def is_unfinished(self) -> bool:
        return self.status in UNFINISHED_STATUSES

    @property
    def can_cancel(self) -> bool:
        """Waiting, or drawing without a cancel already on its way."""
        return self.status == Status.QUEUED or (
            self.status == Status.PROCESSING and self.cancel_requested_at is None
        )

    @property
    def can_retry(self) -> bool:
        """Failed or canceled: the same request again, as a new job."""
        return self.status in (Status.ERROR, Status.CANCELED)

    @property
    def can_regenerate(self) -> bool:
        """Finished: the same prompt with a new seed, as a new job."""
        return self.status == Status.COMPLETE

    @property
    def can_move_to_head(self) -> bool:
        return self.status == Status.QUEUED

    @property
    def can_mark_error(self) -> bool:
        return self.status in UNFINISHED_STATUSES

    def generation_parameters(self) -> dict[str, object]:
        """The txt2img parameters besides the prompt, as the job asked for them."""
        return {field: getattr(self, field) for field in GENERATION_FIELDS}


class JobPreview(models.Model):
    """The latest live preview of a job being drawn (a small WebP): what a
    page opened mid-draw shows. Only the latest is kept, and it goes when
    the job leaves processing."""

    job = models.OneToOneField(
        ImageJob, primary_key=True, on_delete=models.CASCADE, related_name="preview"
    )
    image = models.BinaryField()
    # When this preview was made, in ms since the epoch: the card's image
    # URL carries it, so a browser never shows an older one from its cache.
    made_ms = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"preview of {self.job_id} at {self.made_ms}"


class JobTransition(models.Model):
    """One row per state change of a job, for staff."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(ImageJob, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    at = models.DateTimeField()
    # The failure behind this change, if any (errors.ErrorCode): counted by
    # /metrics as Forge errors by class.
    code = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    worker_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class Circuit(models.TextChoices):
    CLOSED = "closed", _("Closed")
    OPEN = "open", _("Open")
    HALF_OPEN = "half_open", _("Half open")


class WorkerState(models.Model):
    """One row per GPU worker: what it is doing and whether its Forge works.

    Written by the worker itself (heartbeat thread and circuit breaker);
    read for ETAs, for "service unavailable" cards and to tell live workers
    from dead ones.
    """

    id = models.CharField(max_length=128, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    # When that process started (clock ticks since boot, Linux): with the
    # pid it names one process, so a reused pid is not taken for it.
    process_started = models.BigIntegerField(null=True, blank=True)
    forge_url = models.CharField(max_length=500)
    current_job = models.ForeignKey(
        ImageJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    # When a sweep found this worker gone without stopping (killed, host
    # lost); cleared when a process registers under the id again.
    lost_at = models.DateTimeField(null=True, blank=True)
    circuit = models.CharField(max_length=16, choices=Circuit.choices, default=Circuit.CLOSED)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # The checkpoints its Forge has ([{title, model_name, hash}]) and the
    # one it draws with when a request names none, as last read from Forge.
    checkpoints = models.JSONField(default=list, blank=True)
    loaded_checkpoint = models.CharField(max_length=255, blank=True)
    checkpoints_read_at = models.DateTimeField(null=True, blank=True)
    # Seconds a change of checkpoint adds to a picture on this worker,
    # learned from its own pictures; null until it has switched once.
    switch_seconds = models.FloatField(null=True, blank=True)
    # Pushes this worker process could not hand to the channel layer (they
    # are best effort; a count that grows means live updates are lost).
    channel_layer_failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class ApiToken(models.Model):
    """A per-user key for scripts using the JSON API.

    Only a SHA-256 digest is stored; the key itself is shown once, when it
    is created (`manage.py create_api_token`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The key's first characters, so a user can tell their keys apart.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ModelRoute(models.Model):
    """A staff rule choosing the checkpoint for requests that name none:
    the first enabled rule (by `order`) whose words or pattern the prompt
    has decides, among the models a live worker offers."""

    order = models.PositiveIntegerField(default=0)
    words = models.CharField(
        max_length=500,
        blank=True,
        help_text=_(
            "Words or phrases separated by commas; the rule applies when the request "
            "has any of them as whole words, in any case."
        ),
    )
    pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text=_(
            "Or a regular expression in RE2's syntax (no backreferences or lookaround), "
            "searched in the request, in any case."
        ),
    )
    model = models.CharField(
        max_length=255, help_text=_("The checkpoint's model name (as the workers list it).")
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.words or self.pattern} → {self.model}"

    def clean(self) -> None:
        check_rule(self.words, self.pattern)
