"""The chat-model simulator speaks what the official `openai` client
expects: streamed replies, tool calls, and the failures of real servers."""

import json

import httpx
import openai
import pytest

from simulators.chat_model import ChatModelSimulator, english_prompt

DRAW = {
    "type": "function",
    "function": {
        "name": "draw_picture",
        "parameters": {
            "type": "object",
            "properties": {"prompt": {"type": "string"}},
            "required": ["prompt"],
        },
    },
}


@pytest.fixture
def sim():
    server = ChatModelSimulator(tokens_per_second=1000).start()
    yield server
    server.stop()


def _stream(sim: ChatModelSimulator, text: str, **extra):
    client = openai.OpenAI(base_url=sim.url, api_key="test", max_retries=0, timeout=5)
    return client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": text}], stream=True, **extra
    )


def test_a_reply_streams_word_by_word_in_the_users_language(sim):
    pieces = [c.choices[0].delta.content for c in _stream(sim, "hello there") if c.choices]
    text = "".join(p for p in pieces if p)
    assert text.startswith("Happy to help. You wrote: “hello there”.")
    assert len([p for p in pieces if p]) > 10, "one chunk per word"
    turkish = "".join(c.choices[0].delta.content or "" for c in _stream(sim, "merhaba, nasılsın?"))
    assert turkish.startswith("Memnuniyetle yardım ederim.")
    asked = sim.describe()["requests"][0]
    assert asked["messages"] == [{"role": "user", "content": "hello there"}]


@pytest.mark.parametrize(
    ("said", "prompt"),
    [
        ("bana gün batımında bir deniz feneri çizer misin?", "a lighthouse at sunset"),
        ("can you make me a picture of my cat as a pirate", "my cat as a pirate"),
        ("kedi çiz", "cat"),
    ],
)
def test_a_request_to_draw_is_a_tool_call_with_an_english_prompt(sim, said, prompt):
    assert english_prompt(said) == prompt
    arguments = ""
    name = ""
    finish = None
    for chunk in _stream(sim, said, tools=[DRAW]):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            name = call.function.name or name
            arguments += call.function.arguments or ""
    assert (name, json.loads(arguments), finish) == (
        "draw_picture",
        {"prompt": prompt},
        "tool_calls",
    )


def test_failures_of_real_servers(sim):
    httpx.post(f"{sim.url.removesuffix('/v1')}/_sim", json={"fault": "http500"})
    with pytest.raises(openai.InternalServerError):
        list(_stream(sim, "hello"))
    httpx.post(f"{sim.url.removesuffix('/v1')}/_sim", json={"fault": "unauthorized"})
    with pytest.raises(openai.AuthenticationError):
        list(_stream(sim, "hello"))
    httpx.post(f"{sim.url.removesuffix('/v1')}/_sim", json={"fault": "cut", "fault_after": 3})
    got = [c.choices[0].delta.content for c in _stream(sim, "hello") if c.choices]
    assert "".join(p or "" for p in got) == "Happy to help.", "three words, then nothing"
    httpx.post(f"{sim.url.removesuffix('/v1')}/_sim", json={"fault": "malformed", "fault_after": 1})
    with pytest.raises(json.JSONDecodeError):
        list(_stream(sim, "hello"))
    answer = httpx.post(f"{sim.url.removesuffix('/v1')}/_sim", json={"fault": "nonsense"})
    assert answer.status_code == 400
