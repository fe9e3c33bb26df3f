"""Fair use of the shared GPU: a cap on unfinished pictures per user, a rate
limit per minute, and "cancel all" in one statement. Over a limit the page
and the API say why and when to try again, and nothing is written."""

import json
import time

import pytest

from chat.models import Conversation, Message
from imagejobs.models import ImageJob, Status
from imagejobs.tokens import create_token
from tests.helpers import HTMX, PASSWORD, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def _rows() -> tuple[int, int, int]:
    return Conversation.objects.count(), Message.objects.count(), ImageJob.objects.count()


def _api_generate(client, token: str, **body: object):
    return client.post(
        "/api/image/generate",
        data=json.dumps({"prompt": "a fox", **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def tight(settings):
    settings.MAMI_MAX_UNFINISHED_PER_USER = 3
    settings.MAMI_MAX_PICTURES_PER_MINUTE = 5
    return settings


def _at_the_cap(client, user) -> Conversation:  # type: ignore[no-untyped-def]
    """`user`, logged in, with as many unfinished pictures as `tight` allows."""
    conversation = make_conversation(user)
    for n in range(3):
        request_picture(conversation, f"fox {n}")
    client.force_login(user)
    return conversation


def test_the_unfinished_cap_refuses_on_the_page_with_a_form_error(client, alice, tight):
    conversation = _at_the_cap(client, alice)
    before = _rows()
    url = f"/conversations/{conversation.id}/messages/"
    response = client.post(url, {"text": "/image one more fox"}, **HTMX)
    assert response.status_code == 400
    page = response.content.decode()
    assert "You already have 3 pictures waiting or being drawn" in page
    assert "Try again when one is finished" in page
    assert _rows() == before
    # A chat message that asks for no picture still goes through.
    assert client.post(url, {"text": "hello"}, **HTMX).status_code == 200


def test_a_refused_first_message_leaves_no_conversation(client, alice, tight):
    _at_the_cap(client, alice)
    before = _rows()
    response = client.post("/conversations/new/", {"text": "/image a new fox"})
    assert response.status_code == 400
    assert "the most one person may have at once" in response.content.decode()
    assert _rows() == before


def test_the_api_answers_429_with_retry_after_and_writes_nothing(client, alice, tight):
    token = create_token(alice, "tests")[1]
    for _ in range(3):
        assert _api_generate(client, token).status_code == 201
    before = _rows()
    response = _api_generate(client, token)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "too_many_unfinished"
    assert "Try again when one is finished" in error["message"]
    assert _rows() == before


def test_the_rate_limit_counts_requests_even_when_they_finish_at_once(client, alice, tight):
    token = create_token(alice, "tests")[1]
    for _ in range(5):
        assert _api_generate(client, token).status_code == 201
        # Finished (here: canceled) pictures don't count against the cap...
        ImageJob.objects.filter(status=Status.QUEUED).update(status=Status.CANCELED)
    before = _rows()
    response = _api_generate(client, token)
    # ...but every request counts against the rate.
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "within a minute" in response.json()["error"]["message"]
    assert _rows() == before


def test_the_rate_limit_frees_up_after_a_minute(client, alice, tight):
    token = create_token(alice, "tests")[1]
    for _ in range(5):
        _api_generate(client, token)
        ImageJob.objects.filter(status=Status.QUEUED).update(status=Status.CANCELED)
    assert _api_generate(client, token).status_code == 429
    # A minute later (moved back in time rather than waited for).
    from datetime import timedelta

    for job in ImageJob.objects.all():
        ImageJob.objects.filter(pk=job.pk).update(created_at=job.created_at - timedelta(minutes=1))
    assert _api_generate(client, token).status_code == 201


def test_retry_is_limited_like_a_new_request(client, alice, tight):
    conversation = make_conversation(alice)
    failed = request_picture(conversation, "failed fox")
    ImageJob.objects.filter(pk=failed.pk).update(status=Status.ERROR)
    for n in range(3):
        request_picture(conversation, f"fox {n}")
    client.force_login(alice)
    before = _rows()
    response = client.post(f"/conversations/jobs/{failed.id}/retry/", **HTMX)
    assert response.status_code == 400
    assert "mami:notice" in response["HX-Trigger"]
    assert _rows() == before


def test_staff_are_exempt_from_the_unfinished_cap(client, django_user_model, tight):
    staff = django_user_model.objects.create_user("staff", password=PASSWORD, is_staff=True)
    conversation = make_conversation(staff)
    for n in range(3):
        request_picture(conversation, f"fox {n}")
    client.force_login(staff)
    url = f"/conversations/{conversation.id}/messages/"
    assert client.post(url, {"text": "/image a fourth fox"}, **HTMX).status_code == 200


def test_cancel_all_waiting_in_a_conversation_is_quick_and_leaves_others_alone(
    client, alice, bob, settings
):
    settings.MAMI_MAX_UNFINISHED_PER_USER = 0
    settings.MAMI_MAX_PICTURES_PER_MINUTE = 0
    mine, other = make_conversation(alice), make_conversation(alice)
    conversation_jobs = [
        ImageJob(message=m, owner=alice, prompt="fox", created_at=m.created_at)
        for m in _answers(mine, 500)
    ]
    ImageJob.objects.bulk_create(conversation_jobs)
    kept = request_picture(other, "another fox")
    bobs = request_picture(make_conversation(bob), "owl")
    client.force_login(alice)

    started = time.monotonic()
    response = client.post(f"/conversations/{mine.id}/cancel-waiting/", **HTMX)
    elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert "500 waiting pictures canceled." in response["HX-Trigger"]
    assert (
        ImageJob.objects.filter(message__conversation=mine, status=Status.CANCELED).count() == 500
    )
    assert ImageJob.objects.get(pk=kept.pk).status == Status.QUEUED
    assert ImageJob.objects.get(pk=bobs.pk).status == Status.QUEUED
    job = ImageJob.objects.filter(message__conversation=mine).first()
    assert job.version == 2
    assert job.transitions.last().reason == "canceled by user (cancel all)"
    # Generous for a slow CI box; it is one UPDATE (a few ms here).
    assert elapsed < 5


def test_cancel_all_of_another_users_conversation_is_404(client, alice, bob):
    conversation = make_conversation(alice)
    job = request_picture(conversation, "fox")
    client.force_login(bob)
    assert client.post(f"/conversations/{conversation.id}/cancel-waiting/").status_code == 404
    assert ImageJob.objects.get(pk=job.pk).status == Status.QUEUED


def test_the_admin_cancels_every_waiting_job_of_the_selected_owners(client, alice, bob):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("staff", password=PASSWORD)
    alices = [request_picture(make_conversation(alice), f"fox {n}") for n in range(4)]
    bobs = request_picture(make_conversation(bob), "owl")
    client.force_login(staff)
    response = client.post(
        "/admin/imagejobs/imagejob/",
        {"action": "cancel_owners_waiting", "_selected_action": [str(alices[0].id)]},
        follow=True,
    )
    assert "4 waiting job(s) canceled." in response.content.decode()
    assert set(ImageJob.objects.filter(owner=alice).values_list("status", flat=True)) == {
        Status.CANCELED
    }
    assert ImageJob.objects.get(pk=bobs.pk).status == Status.QUEUED
    assert "staff (staff)" in ImageJob.objects.get(pk=alices[1].pk).transitions.last().reason


def _answers(conversation: Conversation, count: int) -> list[Message]:
    from django.utils import timezone

    now = timezone.now()
    return Message.objects.bulk_create(
        Message(conversation=conversation, role=Message.Role.ASSISTANT, text="", created_at=now)
        for _ in range(count)
    )
