"""A chat-model stand-in for tests, benchmarks and the embedded default
with `CHAT_MODEL_URL=sim`: a real HTTP server speaking the OpenAI-compatible
subset mami uses (`POST /v1/chat/completions`, streamed as server-sent
events or not, with tool calls; `GET /v1/models`), as Ollama, llama.cpp's
server and vLLM do, with knobs to make it fail the ways they do.

What it answers (deterministic, so tests can say what to expect):

- a request to draw, when the request offers the `draw_picture` tool: a
  call of it, with the picture described in English (a small Turkish
  lexicon stands in for a model's understanding);
- anything else: a short reply, in Turkish if the message reads Turkish,
  streamed word by word at `tokens_per_second`.

Knobs (`POST /_sim`, JSON): `tokens_per_second`, `fault` (one of FAULTS,
for every request until cleared), `fault_after` (tokens sent before a
`cut` or `hang`), `reply` (the text of the next replies instead).
`GET /_sim` tells the knobs and what was asked (`requests`).
"""

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .server import SimHandler, SimServer

MODEL = "mami-chat-sim"

FAULTS = frozenset(
    {
        "http500",  # the server fails: 500 with an OpenAI-style error body
        "unauthorized",  # a wrong API key: 401
        "malformed",  # a stream line that is not JSON
        "cut",  # the stream stops after `fault_after` tokens, no [DONE]
        "hang",  # after `fault_after` tokens, nothing more (until stopped)
        "bad_tool_args",  # a draw_picture call whose arguments are not JSON
    }
)

_DRAW_WORDS = re.compile(
    r"\b(draw|paint|sketch|picture|image|illustrat\w*|çiz\w*|resm\w*|resim\w*|boya\w*)\b",
    re.IGNORECASE,
)
# Not IGNORECASE: it would let "İ" match a plain "i".
_TURKISH = re.compile(r"[çğıöşüÇĞİÖŞÜ]|\b(bir|bana|ve|mi|mı|misin|musun|lütfen|merhaba)\b")
# Request words that are not part of what to draw.
_NOT_THE_PICTURE = re.compile(
    r"\b(can|could|would|will)\s+you\s+|\bplease\b|\bmake\s+me\b|\b(draw|paint|sketch)\b(\s+me)?"
    r"|\b(a\s+)?(picture|image|drawing)\s+of\b|\bbana\b|\blütfen\b|\b(çiz\w*|resm\w*|yap\w*)\b"
    r"|\b(misin|mısın|musun|müsün)\b|[?!.]",
    re.IGNORECASE,
)
# What a model would understand; longest phrases first.
_TURKISH_WORDS = {
    "gün batımında": "at sunset",
    "gün batımı": "sunset",
    "deniz feneri": "lighthouse",
    "kedimi": "my cat",
    "kedi": "cat",
    "köpek": "dog",
    "korsan olarak": "as a pirate",
    "korsan": "pirate",
    "kırmızı": "red",
    "mavi": "blue",
    "tilki": "fox",
    "karda": "in the snow",
    "kar": "snow",
    "dağ": "mountain",
    "orman": "forest",
    "deniz": "sea",
    "ev": "house",
    "bir": "a",
}


_TRAILING = re.compile(r"\b(?:at sunset|in the snow|as a pirate)\b")


def wants_picture(text: str) -> bool:
    return bool(_DRAW_WORDS.search(text))


def reads_turkish(text: str) -> bool:
    return bool(_TURKISH.search(text))


def english_prompt(text: str) -> str:
    """What to draw, in English, from a request in English or Turkish."""
    words = " ".join(_NOT_THE_PICTURE.sub(" ", text).split())
    lowered = words.lower()
    for turkish, english in sorted(_TURKISH_WORDS.items(), key=lambda item: -len(item[0])):
        lowered = re.sub(rf"\b{re.escape(turkish)}\b", english, lowered)
    # Turkish puts "at sunset" before what it describes; English after.
    trailing = _TRAILING.findall(lowered)
    lowered = _TRAILING.sub(" ", lowered)
    return " ".join([*lowered.split(), *trailing]) or "a picture"


def reply_to(text: str) -> str:
    quoted = " ".join(text.split())[:200]
    if reads_turkish(text):
        return (
            f"Memnuniyetle yardım ederim. Şöyle yazdınız: “{quoted}”. Ben mami'nin deneme "
            "sohbet modeliyim: cevaplarım kısa, ama gerçek bir model gibi sözcük sözcük gelir."
        )
    return (
        f"Happy to help. You wrote: “{quoted}”. I am mami's practice chat model: my answers "
        "are short, but they arrive word by word, as a real model's do."
    )


def tokens(text: str) -> list[str]:
    """Words with the space before each, as a model's tokens roughly are."""
    return re.findall(r"\s*\S+", text)


@dataclass
class ChatSimStats:
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The last streamed reply: when each of its words left (epoch seconds),
    # with the length of the text so far (for latency benchmarks).
    sent: list[tuple[float, int]] = field(default_factory=list)


def _chunk(completion_id: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


class ChatModelHandler(SimHandler):
    sim: ClassVar["ChatModelSimulator"]

    def _error(self, status: int, message: str, kind: str) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "code": None}})

    def get(self, route: str) -> None:
        if route == "/v1/models":
            model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "mami"}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def post(self, route: str) -> None:
        sim = self.sim
        try:
            body = json.loads(self.raw_body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            self._error(400, "the body is not JSON", "invalid_request_error")
            return
        if route != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "messages must be a list", "invalid_request_error")
            return
        if sim.fault == "unauthorized":
            self._error(401, "Incorrect API key provided.", "invalid_api_key")
            return
        if sim.fault == "http500":
            self._error(500, "The model crashed (simulated).", "server_error")
            return
        kind, content = sim.answer(body)
        if body.get("stream"):
            self._stream(kind, content)
        else:
            self._whole(kind, content)

    def _whole(self, kind: str, content: Any) -> None:
        if kind == "tool":
            message = {"role": "assistant", "content": None, "tool_calls": [_call(content)]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": "".join(content)}
            finish = "stop"
        self.send_json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            },
        )

    def _stream(self, kind: str, content: Any) -> None:
        sim = self.sim
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        completion = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        try:
            self.wfile.write(_chunk(completion, {"role": "assistant", "content": ""}))
            if kind == "tool":
                call = _call(content)
                arguments = call["function"].pop("arguments")
                call["function"]["arguments"] = ""
                self.wfile.write(_chunk(completion, {"tool_calls": [{"index": 0, **call}]}))
                for piece in (
                    arguments[: len(arguments) // 2],
                    arguments[len(arguments) // 2 :],
                ):
                    fragment = {"index": 0, "function": {"arguments": piece}}
                    self.wfile.write(_chunk(completion, {"tool_calls": [fragment]}))
                self.wfile.write(_chunk(completion, {}, "tool_calls"))
            else:
                sim.stats.sent = []
                length = 0
                for sent, token in enumerate(content):
                    if sent == sim.fault_after and sim.fault in {"cut", "hang", "malformed"}:
                        if sim.fault == "malformed":
                            self.wfile.write(b"data: {not json\n\n")
                        elif sim.fault == "hang":
                            self.wfile.flush()
                            sim.hang()
                        return
                    if not sim.pause():
                        return
                    self.wfile.write(_chunk(completion, {"content": token}))
                    self.wfile.flush()
                    length += len(token)
                    sim.stats.sent.append((time.time(), length))
                self.wfile.write(_chunk(completion, {}, "stop"))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (Stop)


class ChatModelSimulator(SimServer):
    """The server; `url` is the base URL a client is given (…/v1)."""

    name = "chatsim"
    handler = ChatModelHandler
    url_path = "/v1"

    def __init__(
        self, *, tokens_per_second: float = 200.0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.tokens_per_second = self._initial_speed = tokens_per_second
        self.fault = ""
        self.fault_after = 0
        self.reply = ""
        self.stats = ChatSimStats()

    def reset(self) -> None:
        with self._lock:
            self.tokens_per_second = self._initial_speed
            self.fault = ""
            self.fault_after = 0
            self.reply = ""
            self.stats = ChatSimStats()

    def refusal(self, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}

    def set_knobs(self, body: dict[str, Any]) -> None:
        if "tokens_per_second" in body:
            self.tokens_per_second = max(float(body["tokens_per_second"]), 0.1)
        if "fault" in body:
            fault = str(body["fault"] or "")
            if fault and fault not in FAULTS:
                raise ValueError(f"fault must be one of {sorted(FAULTS)} or empty")
            self.fault = fault
        if "fault_after" in body:
            self.fault_after = max(int(body["fault_after"]), 0)
        if "reply" in body:
            self.reply = str(body["reply"] or "")

    def reset_stats(self) -> None:
        self.stats = ChatSimStats()

    def report(self) -> dict[str, Any]:
        knobs = ("tokens_per_second", "fault", "fault_after", "reply")
        asked = {"requests": list(self.stats.requests), "sent": list(self.stats.sent)}
        return {**{knob: getattr(self, knob) for knob in knobs}, **asked}

    # -- answering ---------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> tuple[str, Any]:
        """What a completion request gets: ("text", words) or ("tool",
        arguments as sent)."""
        with self._lock:
            self.stats.requests.append(body)
            fixed = self.reply
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        said = last.get("content") if isinstance(last.get("content"), str) else ""
        offered = {
            tool.get("function", {}).get("name")
            for tool in body.get("tools") or []
            if isinstance(tool, dict)
        }
        if last.get("role") == "tool":
            return "text", tokens("The picture is on its way: it is in the queue below.")
        said = str(said or "")
        if "draw_picture" in offered and wants_picture(said) and not fixed:
            if self.fault == "bad_tool_args":
                return "tool", '{"prompt": "a cat", '
            return "tool", json.dumps({"prompt": english_prompt(said)})
        return "text", tokens(fixed or reply_to(said))

    def pause(self) -> bool:
        """Wait one token's time; False once the server stops."""
        return not self._stopping.wait(1.0 / self.tokens_per_second)

    def hang(self) -> None:
        self._stopping.wait()


def _call(arguments: str) -> dict[str, Any]:
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": "draw_picture", "arguments": arguments},
    }
