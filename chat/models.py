import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    TITLE_MAX_LENGTH = 120
    title = models.CharField(max_length=TITLE_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or str(_("New conversation"))


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("User")
        ASSISTANT = "assistant", _("Assistant")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"


class Reply(models.Model):
    """An assistant message the chat model writes (`chat.reply_writer`):
    its text grows in `Message.text` while `state` is writing. Written only
    through `chat.reply_states`."""

    class State(models.TextChoices):
        WRITING = "writing", _("Writing")
        DONE = "done", _("Done")
        STOPPED = "stopped", _("Stopped")
        FAILED = "failed", _("Failed")

    message = models.OneToOneField(
        Message, primary_key=True, on_delete=models.CASCADE, related_name="reply"
    )
    # The user's message it answers (a retry answers the same one).
    answering = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WRITING)
    # Why it failed (`chat.reply_errors.ReplyError`); the readable message is
    # derived from it in the reader's language.
    error_code = models.CharField(max_length=32, blank=True)
    # Raw failure text for staff; never shown to the user.
    error_detail = models.TextField(blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # The checkpoint the user picked when asking: a picture the model
    # draws for this reply uses it ("": Automatic, `pictures.choose_model`).
    model = models.CharField(max_length=255, blank=True)
    # The language the user asked in: what mami itself adds to the reply
    # ("Drawing …", a limit reached) is written in it.
    language = models.CharField(max_length=16, blank=True)
    # Bumped by every save: pages never swap in an older text.
    version = models.PositiveIntegerField(default=1)
    # Last saved (the writer's heartbeat: a reply whose writer died stops
    # being saved, and a sweep fails it).
    saved_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["state", "saved_at"], name="reply_state_saved_idx")]

    def __str__(self) -> str:
        return f"reply {self.message_id} ({self.state})"

    @property
    def is_writing(self) -> bool:
        return self.state == self.State.WRITING

    @property
    def can_stop(self) -> bool:
        """Stop is offered while it is written, until a Stop is asked."""
        return self.is_writing and self.stop_requested_at is None

    @property
    def can_retry(self) -> bool:
        """A new reply to the same message, after a failure or a stop."""
        return self.state in (self.State.FAILED, self.State.STOPPED)

    @property
    def error_text(self) -> str:
        from .reply_errors import error_message

        return error_message(self.error_code)


class OpenSocket(models.Model):
    """One open conversation socket (a browser tab), whichever web process
    holds it: counted for the per-user socket limit. A row whose `seen_at`
    is older than MAMI_SOCKET_STALE_SECONDS belongs to a process that died
    and no longer counts."""

    channel_name = models.CharField(max_length=200, primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="open_sockets"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="open_sockets"
    )
    language = models.CharField(max_length=16)
    opened_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "seen_at"], name="opensocket_user_seen_idx")]

    def __str__(self) -> str:
        return self.channel_name
