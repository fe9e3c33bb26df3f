"""Bad input gets a clear answer and writes nothing: oversized or non-JSON
API bodies, unknown API paths, empty-looking or unreadable messages, and
crafted messages that would make the intent rules slow."""

import json
import time

import pytest

from chat.intents import parse_image_request
from chat.models import Conversation, Message
from imagejobs.models import ImageJob
from imagejobs.tokens import create_token
from tests.helpers import HTMX, make_conversation

pytestmark = pytest.mark.django_db


def _rows() -> tuple[int, int, int]:
    return Conversation.objects.count(), Message.objects.count(), ImageJob.objects.count()


@pytest.fixture
def token(alice) -> str:
    return create_token(alice, "tests")[1]


def _assert_api_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_an_api_body_over_the_limit_is_413_in_the_json_shape(client, token):
    body = json.dumps({"prompt": "a fox", "parameters": {"negative_prompt": "x" * 2_000_000}})
    response = client.post(
        "/api/image/generate",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    _assert_api_error(response, 413, "too_large")
    assert "1048576 bytes" in response.json()["error"]["message"]
    assert _rows() == (0, 0, 0)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_an_api_body_that_is_not_json_is_415(client, token, content_type):
    response = client.generic(
        "POST",
        "/api/image/generate",
        data=b'{"prompt": "a fox"}',
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    _assert_api_error(response, 415, "unsupported_media_type")
    assert _rows() == (0, 0, 0)


@pytest.mark.parametrize("path", ["/api/nothing", "/api/image/jobs/", "/api/image/job/x/y/z"])
def test_an_unknown_api_path_is_a_json_404(client, token, path):
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_api_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "text", ["   ", "\u200b\u200b", "\ufeff \u2060 \u200d", "\n\u00ad\t"], ids=repr
)
def test_a_message_that_shows_nothing_is_refused_as_empty(client, alice, text):
    conversation = make_conversation(alice)
    client.force_login(alice)
    before = _rows()
    response = client.post(f"/conversations/{conversation.id}/messages/", {"text": text}, **HTMX)
    assert response.status_code == 400
    assert "Write a message first." in response.content.decode()
    assert _rows() == before


@pytest.mark.parametrize(
    "raw", [b"text=%2Fimage+a+fox+%FF%FE", b"text=%ED%A0%80+a+lone+surrogate"], ids=repr
)
def test_unreadable_bytes_are_refused_not_replaced(client, alice, raw):
    conversation = make_conversation(alice)
    client.force_login(alice)
    before = _rows()
    response = client.generic(
        "POST",
        f"/conversations/{conversation.id}/messages/",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        **HTMX,
    )
    assert response.status_code == 400
    assert "could not be read (not valid UTF-8)" in response.content.decode()
    assert _rows() == before


CRAFTED = {
    "a long run of spaces": "a" + " " * 3998 + "x",
    "spaces before a Turkish noun": "kedi" + " " * 3990 + "resmi",
    "dots and spaces": "a" + ". " * 1998 + "x",
    "tabs and spaces": "a" + " \t" * 1999 + "b",
    "a command full of marks": "/image a" + " ." * 1995 + "x",
    "repeated Turkish nouns": "kedi " + "resmi " * 600 + "x",
    "repeated polite words": "please can you " * 266,
}


@pytest.mark.parametrize("text", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_4000_character_message_is_classified_in_under_10_ms(text):
    text = text[:4000]
    best = float("inf")
    for _ in range(3):  # the best of three, so a busy machine doesn't decide
        started = time.perf_counter()
        parse_image_request(text)
        best = min(best, time.perf_counter() - started)
    assert best < 0.010, f"{best * 1000:.1f} ms"


# NUL: PostgreSQL's text type cannot hold it. An unpaired surrogate: not
# UTF-8 at all (JSON's escapes can make one).
UNSTORABLE = ["x\x00y", "x\ud800y"]


@pytest.mark.django_db(transaction=True)
def test_unstorable_text_in_a_page_is_a_readable_400_that_changes_nothing(client, alice):
    # A browser's form encoding cannot carry an unpaired surrogate; NUL it can.
    text = "x\x00y"
    conversation = make_conversation(alice)
    client.force_login(alice)
    base = f"/conversations/{conversation.id}"
    before = _rows()
    for method, url, data, extra in (
        ("post", f"{base}/rename/", {"title": text}, HTMX),
        ("post", f"{base}/messages/", {"text": f"/image {text}"}, HTMX),
        ("post", f"{base}/messages/", {"text": text}, {}),
        ("get", "/conversations/", {"q": text}, {}),
        ("get", "/conversations/gallery/", {"q": text}, {}),
        ("get", "/admin/imagejobs/imagejob/", {"q": text}, {}),
    ):
        if "admin" in url:
            alice.is_staff = alice.is_superuser = True
            alice.save()
        answer = getattr(client, method)(url, data, **extra)
        assert answer.status_code == 400, (url, answer.status_code)
        page = answer.content.decode()
        assert "contains a character that cannot be stored" in page, (url, page)
        if extra:
            # htmx keeps the form as typed and shows the reason as a notice.
            assert answer["HX-Reswap"] == "none"
            assert "cannot be stored" in answer["HX-Trigger"]
    conversation.refresh_from_db()
    assert conversation.title == "test"
    assert _rows() == before


@pytest.mark.django_db(transaction=True)
def test_the_refusal_speaks_the_users_language(client, alice):
    client.force_login(alice)
    answer = client.get("/conversations/", {"q": "x\x00"}, HTTP_ACCEPT_LANGUAGE="tr")
    assert answer.status_code == 400
    assert "saklanamayan bir karakter" in answer.content.decode()


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.django_db(transaction=True)
def test_unstorable_text_in_the_api_is_a_json_400_that_changes_nothing(client, token, text):
    for body in (
        {"prompt": text},
        {"prompt": "a fox", "parameters": {"negative_prompt": text}},
    ):
        answer = client.post(
            "/api/image/generate",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        _assert_api_error(answer, 400, "invalid_request")
        assert "cannot be stored" in answer.json()["error"]["message"]
    answer = client.get("/api/image/status", {"q": "x\x00y"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_api_error(answer, 400, "invalid_request")
    assert _rows() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_json_nested_past_reason_is_still_a_clear_answer(client, token):
    deep = "[" * 5000 + "]" * 5000
    answer = client.post(
        "/api/image/generate",
        data='{"prompt": "a fox", "parameters": ' + deep + "}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code in (400, 422), answer.content
    assert answer.json()["error"]["message"]
    assert _rows() == (0, 0, 0)
