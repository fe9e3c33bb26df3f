import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget

from imagejobs import queue
from imagejobs.actions import JobActionError
from imagejobs.http import with_notice

from .forms import MessageForm
from .models import Conversation, Message
from .services import access_conversation, again, post_message, start_conversation


@require_GET
@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    conversations = Conversation.objects.filter(owner=request.user)
    return render(
        request,
        "chat/conversation_list.html",
        {"conversations": conversations, "form": MessageForm()},
    )


@require_POST
@login_required
def conversation_start(request: HttpRequest) -> HttpResponse:
    """The first message of a new conversation; the conversation exists only
    once something was said in it."""
    form = MessageForm(request.POST)
    if not form.is_valid():
        conversations = Conversation.objects.filter(owner=request.user)
        return render(
            request,
            "chat/conversation_list.html",
            {"conversations": conversations, "form": form},
            status=400,
        )
    conversation = start_conversation(request.user)
    post_message(conversation, form.cleaned_data["text"], form.image_request)
    return redirect("chat:conversation", conversation_id=conversation.id)


@require_GET
@login_required
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    messages = conversation.messages.select_related("image_job")
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "messages": messages,
            "queue": queue.snapshot(),
            "form": MessageForm(),
        },
    )


@require_POST
@login_required
def message_create(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            response = render(
                request, "chat/conversation.html#composer-errors", {"form": form}, status=400
            )
            return reswap(retarget(response, "#composer-errors"), "outerHTML")
        messages = conversation.messages.select_related("image_job")
        return render(
            request,
            "chat/conversation.html",
            {
                "conversation": conversation,
                "messages": messages,
                "queue": queue.snapshot(),
                "form": form,
            },
            status=400,
        )
    new_messages = post_message(conversation, form.cleaned_data["text"], form.image_request)
    if not request.htmx:
        return redirect("chat:conversation", conversation_id=conversation.id)
    fresh = Message.objects.filter(pk__in=[m.pk for m in new_messages]).select_related("image_job")
    return render(
        request,
        "chat/conversation.html#message-pair",
        {
            "conversation": conversation,
            "new_messages": fresh,
            "queue": queue.snapshot(),
            "form": MessageForm(),
        },
    )


@require_POST
@login_required
def job_again(request: HttpRequest, job_id: uuid.UUID, regenerate: bool) -> HttpResponse:
    """Retry (error, canceled) or Regenerate (complete) from a card: a new
    assistant message with its own queued card."""
    try:
        answer = again(request.user, job_id, regenerate=regenerate)
    except JobActionError as exc:
        # Nothing to insert: the notice says why.
        return with_notice(reswap(HttpResponse(str(exc), status=400), "none"), str(exc))
    if not request.htmx:
        return redirect("chat:conversation", conversation_id=answer.conversation_id)
    fresh = Message.objects.filter(pk=answer.pk).select_related("image_job")
    return render(
        request,
        "chat/conversation.html#message-pair",
        {"new_messages": fresh, "queue": queue.snapshot()},
    )
