import uuid
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    reswap,
    retarget,
)

from imagejobs import checkpoints, positions
from imagejobs.access import access_job
from imagejobs.actions import JobActionError, check_cancel, check_cancel_all_waiting
from imagejobs.cards import render_card
from imagejobs.limits import LimitReached
from imagejobs.models import ImageJob, Status
from mami.notices import refused, with_notice
from mami.requests import SignedInRequest

from .access import access_conversation
from .actions import (
    ReplyActionError,
    TitleError,
    check_regenerate,
    check_retry,
    check_retry_reply,
    check_same_seed,
    check_stop_reply,
    check_variations,
    delete_conversation,
    post_message,
    rename_conversation,
    start_conversation,
)
from .forms import MessageForm
from .history import latest_messages, messages_before, messages_since
from .models import Conversation, Message
from .pictures import picker_choice


def _model_picker() -> dict[str, object]:
    """The composer's model choices for a new conversation: automatic
    chosen."""
    return {"models": checkpoints.choosable(), "model_selected": ""}


def _chosen(form: MessageForm) -> dict[str, object]:
    """The model picked (composer or `/image --model`): a name, "" for
    automatic, None if the request said nothing (`choose_model`)."""
    return {"model": form.chosen_model}


# Conversations the sidebar lists; the full list has the rest.
SIDEBAR_LENGTH = 30


def _conversation_page(
    request: SignedInRequest,
    conversation: Conversation,
    form: MessageForm,
    status: int = 200,
    rename_error: str = "",
) -> HttpResponse:
    at = request.GET.get("at")
    window = messages_since(conversation, at) if at else latest_messages(conversation)
    offered = checkpoints.offered()  # the live workers' models, read once
    sidebar = Conversation.objects.filter(owner=request.user).only("id", "title", "updated_at")
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "window": window,
            "queue": positions.snapshot(),
            "form": form,
            "sidebar": sidebar[:SIDEBAR_LENGTH],
            "rename_error": rename_error,
            "models": checkpoints.choosable(offered),
            "model_selected": picker_choice(conversation, offered),
        },
        status=status,
    )


def _new_messages(
    request: SignedInRequest, messages: list[Message], *, titled: Conversation | None = None
) -> HttpResponse:
    """The `message-pair` partial: what htmx appends to the conversation;
    with `titled`, the conversation these messages just gave its title, whose
    name the page then shows wherever it showed "New conversation"."""
    fresh = list(
        Message.objects.filter(pk__in=[m.pk for m in messages]).select_related("image_job", "reply")
    )
    jobs = [m.image_job for m in fresh if hasattr(m, "image_job")]
    return render(
        request,
        "chat/conversation.html#message-pair",
        {
            "new_messages": fresh,
            "queue": positions.snapshot(only=jobs),
            "titled": titled,
        },
    )


def _search(user: User, query: str) -> QuerySet[Conversation]:
    """The user's conversations, newest first; with `query`, those whose
    title or any message contains it."""
    conversations = Conversation.objects.filter(owner=user)
    if query:
        conversations = conversations.filter(
            Q(title__icontains=query)
            | Exists(Message.objects.filter(conversation=OuterRef("pk"), text__icontains=query))
        )
    return conversations


@require_GET
@login_required
def conversation_list(request: SignedInRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    return render(
        request,
        "chat/conversation_list.html",
        {
            "conversations": _search(request.user, query),
            "form": MessageForm(),
            "query": query,
            **_model_picker(),
        },
    )


@require_POST
@login_required
def conversation_rename(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    try:
        rename_conversation(conversation, request.POST.get("title", ""))
    except TitleError as exc:
        conversation.refresh_from_db()
        return _conversation_page(request, conversation, MessageForm(), 400, str(exc))
    return redirect("chat:conversation", conversation_id=conversation.id)


@require_POST
@login_required
def conversation_delete(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    delete_conversation(conversation)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("chat:conversation-list"))
    return redirect("chat:conversation-list")


GALLERY_PAGE = 24


@require_GET
@login_required
def gallery(request: SignedInRequest) -> HttpResponse:
    """Every finished picture of the user, newest first, a page at a time;
    `?q=` keeps those whose prompt contains it."""
    query = request.GET.get("q", "").strip()[:200]
    pictures = (
        ImageJob.objects.filter(owner=request.user, status=Status.COMPLETE)
        .select_related("message")
        .order_by("-finished_at", "-id")
    )
    if query:
        pictures = pictures.filter(prompt__icontains=query)
    page = Paginator(pictures, GALLERY_PAGE).get_page(request.GET.get("page"))
    return render(request, "chat/gallery.html", {"page": page, "query": query})


@require_POST
@login_required
def conversation_start(request: SignedInRequest) -> HttpResponse:
    """The first message of a new conversation; the conversation exists only
    once something was said in it."""
    form = MessageForm(request.POST)
    if form.is_valid():
        try:
            # One transaction: a refused request leaves no empty conversation.
            with transaction.atomic():
                conversation = start_conversation(request.user)
                post_message(
                    conversation,
                    form.cleaned_data["text"],
                    form.image_request,
                    _chosen(form),
                )
        except LimitReached as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("chat:conversation", conversation_id=conversation.id)
    conversations = Conversation.objects.filter(owner=request.user)
    return render(
        request,
        "chat/conversation_list.html",
        {"conversations": conversations, "form": form, **_model_picker()},
        status=400,
    )


@require_GET
@login_required
def conversation_detail(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    return _conversation_page(request, conversation, MessageForm())


@require_GET
@login_required
def conversation_older(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The messages before `?before=<message id>`, with their cards as they
    are now, for htmx to put above the ones the page shows."""
    conversation = access_conversation(request.user, conversation_id)
    try:
        before = uuid.UUID(request.GET.get("before", ""))
    except ValueError:
        return HttpResponse("`before` must be the id of a message.", status=400)
    message = get_object_or_404(Message, pk=before, conversation=conversation)
    window = messages_before(conversation, message)
    return render(
        request,
        "chat/conversation.html#older-messages",
        {"conversation": conversation, "window": window, "queue": positions.snapshot()},
    )


@require_POST
@login_required
def message_create(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    form = MessageForm(request.POST)
    new_messages = None
    untitled = not conversation.title
    if form.is_valid():
        try:
            new_messages = post_message(
                conversation, form.cleaned_data["text"], form.image_request, _chosen(form)
            )
        except LimitReached as exc:
            form.add_error(None, exc.message)
    if new_messages is None:
        if request.htmx:
            response = render(
                request, "chat/conversation.html#composer-errors", {"form": form}, status=400
            )
            return reswap(retarget(response, "#composer-errors"), "outerHTML")
        return _conversation_page(request, conversation, form, status=400)
    if not request.htmx:
        return redirect("chat:conversation", conversation_id=conversation.id)
    titled = conversation if untitled and conversation.title else None
    return _new_messages(request, new_messages, titled=titled)


@require_POST
@login_required
def conversation_cancel_all(request: SignedInRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Cancel every picture still waiting in this conversation (the cards
    change over the socket); pictures being drawn go on."""
    conversation = access_conversation(request.user, conversation_id)
    jobs = ImageJob.objects.filter(message__conversation=conversation)
    canceled = check_cancel_all_waiting(request.user, jobs)
    if not request.htmx:
        return redirect("chat:conversation", conversation_id=conversation.id)
    notice = ngettext(
        "%(count)d waiting picture canceled.", "%(count)d waiting pictures canceled.", canceled
    ) % {"count": canceled}
    return with_notice(reswap(HttpResponse(status=204), "none"), notice)


@require_POST
@login_required
def job_cancel(request: SignedInRequest, job_id: uuid.UUID) -> HttpResponse:
    """Cancel from the card; the answer is the card as it is now."""
    try:
        job = check_cancel(request.user, job_id)
    except JobActionError as exc:
        job = access_job(request.user, job_id)
        return with_notice(
            HttpResponse(render_card(job, positions.snapshot()), status=400), str(exc)
        )
    return HttpResponse(render_card(job, positions.snapshot()))


def _queued_again(request: SignedInRequest, make: Callable[[], list[Message]]) -> HttpResponse:
    """New cards from a card's button (Retry, Regenerate, Same seed,
    Variations) or a reply's Retry: appended to the conversation, or a
    notice saying why not."""
    try:
        answers = make()
    except (JobActionError, LimitReached, ReplyActionError) as exc:
        # Nothing to insert: the notice says why.
        return refused(str(exc), 400)
    if not request.htmx:
        return redirect("chat:conversation", conversation_id=answers[0].conversation_id)
    return _new_messages(request, answers)


@require_POST
@login_required
def job_again(request: SignedInRequest, job_id: uuid.UUID, regenerate: bool) -> HttpResponse:
    """Retry (error, canceled) or Regenerate (complete) from a card: a new
    assistant message with its own queued card."""
    action = check_regenerate if regenerate else check_retry
    return _queued_again(request, lambda: [action(request.user, job_id)])


@require_POST
@login_required
def job_same_seed(request: SignedInRequest, job_id: uuid.UUID) -> HttpResponse:
    """A finished picture again with its seed fixed: a new card."""
    return _queued_again(request, lambda: [check_same_seed(request.user, job_id)])


@require_POST
@login_required
def job_variations(request: SignedInRequest, job_id: uuid.UUID) -> HttpResponse:
    """`count` new seeds for a finished picture: a card each."""
    try:
        count = int(request.POST.get("count", ""))
    except ValueError:
        count = 0  # refused below, with the same message as 0 or 9
    return _queued_again(request, lambda: check_variations(request.user, job_id, count))


@require_POST
@login_required
def reply_stop(request: SignedInRequest, message_id: uuid.UUID) -> HttpResponse:
    """Stop the chat model's reply; it keeps what was written. The answer
    is the reply as it is now (the writer's own push follows)."""
    try:
        message = check_stop_reply(request.user, message_id)
    except ReplyActionError as exc:
        return refused(str(exc), 400)
    return render(
        request,
        "chat/conversation.html#message",
        {"message": message, "queue": positions.QueueSnapshot()},
    )


@require_POST
@login_required
def reply_retry(request: SignedInRequest, message_id: uuid.UUID) -> HttpResponse:
    """A new reply to the same message, appended to the conversation."""
    return _queued_again(request, lambda: [check_retry_reply(request.user, message_id)])
