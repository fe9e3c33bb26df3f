"""The optional chat model: which server, what it is told, what it may do.

Any OpenAI-compatible server (Ollama, llama.cpp's server, vLLM...) through
the official `openai` client; `CHAT_MODEL_URL=sim` runs the built-in
simulator in this process. Without `CHAT_MODEL_URL`, mami answers with its
rules alone.
"""

import threading
from typing import Any

import openai
from django.conf import settings

from imagejobs.bounds import SIDE_MAX, SIDE_MIN

from .models import Message, Reply

SYSTEM_PROMPT = (
    "You are mami, the assistant of a chat where people ask for pictures that a shared "
    "GPU draws. Answer briefly and kindly, in the language the user writes in. When the "
    "user asks for a picture, call draw_picture with a detailed prompt in English (the "
    "image model understands English best), whatever language they wrote in; do not "
    "describe the picture in words instead. You cannot see pictures."
)

DRAW_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "draw_picture",
        "description": "Queue a picture on the GPU. The user sees its place in line, its "
        "progress and the finished picture.",
        "parameters": {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "What to draw, in English."},
                "negative_prompt": {"type": "string", "description": "What to avoid."},
                "width": {"type": "integer", "minimum": SIDE_MIN, "maximum": SIDE_MAX},
                "height": {"type": "integer", "minimum": SIDE_MIN, "maximum": SIDE_MAX},
            },
            "required": ["prompt"],
        },
    },
}

# Roughly: a token is four characters of English (more of Turkish, which
# only makes the estimate careful).
CHARACTERS_PER_TOKEN = 4

_simulator_lock = threading.Lock()
_simulator_url = ""


def configured() -> bool:
    return bool(settings.CHAT_MODEL_URL)


def base_url() -> str:
    """The server's base URL; the simulator is started on first use."""
    global _simulator_url
    if settings.CHAT_MODEL_URL != "sim":
        return settings.CHAT_MODEL_URL
    with _simulator_lock:
        if not _simulator_url:
            # A development double: imported only when it is to run.
            from simulators.chat_model import ChatModelSimulator

            sim = ChatModelSimulator(tokens_per_second=settings.CHAT_SIMULATOR_TOKENS_PER_SECOND)
            _simulator_url = sim.start().url
        return _simulator_url


# The model the built-in simulator (`CHAT_MODEL_URL=sim`) says it is.
SIMULATED_MODEL = "mami-chat-sim"


def model_name() -> str:
    return settings.CHAT_MODEL or SIMULATED_MODEL


def client() -> openai.OpenAI:
    # Local servers want no key, but the client insists on one.
    return openai.OpenAI(
        base_url=base_url(),
        api_key=settings.CHAT_MODEL_API_KEY or "not-needed",
        timeout=openai.Timeout(settings.CHAT_MODEL_TIMEOUT, connect=5.0),
        # A failed reply is shown with a Retry; the user decides.
        max_retries=0,
    )


def context(reply: Reply) -> list[dict[str, str]]:
    """What the model is shown: the system prompt, then the conversation's
    latest messages up to the one the reply answers, as many as fit in
    CHAT_MODEL_CONTEXT_TOKENS (always the last one)."""
    budget = settings.CHAT_MODEL_CONTEXT_TOKENS * CHARACTERS_PER_TOKEN
    earlier = (
        Message.objects.filter(
            conversation_id=reply.answering.conversation_id,
            created_at__lte=reply.answering.created_at,
        )
        .exclude(reply__state__in=[Reply.State.FAILED, Reply.State.WRITING])
        .select_related("image_job")
        .order_by("-created_at", "-id")
    )
    picked: list[dict[str, str]] = []
    for message in earlier.iterator(chunk_size=50):
        text = _as_said(message)
        if not text:
            continue
        if picked and len(text) > budget:
            break
        budget -= len(text)
        picked.append({"role": message.role, "content": text})
    return [{"role": "system", "content": SYSTEM_PROMPT}, *reversed(picked)]


def _as_said(message: Message) -> str:
    job = getattr(message, "image_job", None)
    if job is not None:
        return f"(drew a picture: {job.prompt})"
    return message.text
