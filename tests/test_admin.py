"""Staff run the queue from Django admin; every action reaches the user's
card through the socket, like any other transition."""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async as db
from django.urls import reverse
from django.utils import translation

from imagejobs import positions
from imagejobs.errors import user_message
from imagejobs.models import ImageJob, Status
from imagejobs.transitions import do_cancel, do_claim_next, do_fail
from tests.helpers import PASSWORD, make_conversation, open_socket, request_picture

CHANGELIST = "/admin/imagejobs/imagejob/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("staff", password=PASSWORD)


async def _card(socket, job_id, showing: str = "") -> str:
    """The next card of `job_id` pushed to `socket` that shows `showing`.
    Earlier pushes may still be on their way (the claim's, on the lane):
    a page shows them as they come, so a test waits for the one it means."""
    pattern = re.compile(rf'<article id="job-{job_id}".*?</article>', re.S)
    seen: list[str] = []
    try:
        async with asyncio.timeout(10):
            while True:
                match = pattern.search(await socket.receive_from(timeout=10))
                if match and showing in match[0]:
                    return match[0]
                seen.append(match[0][:120] if match else "another fragment")
    except TimeoutError:
        raise AssertionError(f"no card showing {showing!r} within 10 s; pushed: {seen}") from None


async def _act(staff_client, action: str, *jobs: ImageJob):
    return await db(staff_client.post)(
        CHANGELIST, {"action": action, "_selected_action": [str(j.id) for j in jobs]}
    )


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "state", "expect"),
    [
        ("cancel_jobs", "queued", 'data-status="canceled"'),
        ("cancel_jobs", "processing", "Canceling…"),
        ("mark_error", "queued", "An administrator stopped this picture."),
        ("mark_error", "processing", "An administrator stopped this picture."),
        ("move_to_head", "queued", "#1 in line"),
    ],
)
async def test_each_admin_action_updates_the_users_card_live(
    client, alice, staff, action, state, expect
):
    from django.test import Client

    conversation = await db(make_conversation)(alice)
    ahead = await db(request_picture)(conversation, "ahead")
    job = await db(request_picture)(conversation, "target")
    if state == "processing":
        await db(lambda: ImageJob.objects.filter(pk=ahead.pk).update(priority=-1))()
        assert (await db(do_claim_next)("gpu-1")).id == job.id
    socket = await open_socket(client, alice, conversation.id)
    await _card(socket, job.id)

    staff_client = Client()
    await db(staff_client.force_login)(staff)
    response = await _act(staff_client, action, job)
    assert response.status_code == 302
    await _card(socket, job.id, showing=expect)  # pushed, or the test fails
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_retry_from_admin_puts_a_new_card_in_the_users_conversation(client, alice, staff):
    from django.test import Client

    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "failed fox")
    await db(do_claim_next)("gpu-1")
    await db(do_fail)(job.id, code="forge_error")
    socket = await open_socket(client, alice, conversation.id)
    staff_client = Client()
    await db(staff_client.force_login)(staff)
    await _act(staff_client, "retry_jobs", job)
    new = await db(lambda: ImageJob.objects.select_related("message").get(retry_of=job))()
    assert new.message.conversation_id == conversation.id
    await _card(socket, new.id, showing="#1 in line")  # pushed, or the test fails
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
def test_actions_skip_jobs_whose_state_does_not_allow_them(client, alice, staff):
    job = request_picture(make_conversation(alice), "fox")
    do_claim_next("gpu-1")
    do_fail(job.id, code="forge_error")
    client.force_login(staff)
    response = client.post(
        CHANGELIST, {"action": "cancel_jobs", "_selected_action": [str(job.id)]}, follow=True
    )
    assert "1 job(s) skipped" in response.content.decode()
    assert ImageJob.objects.get(pk=job.pk).status == Status.ERROR


@pytest.mark.django_db(transaction=True)
def test_the_changelist_shows_positions_durations_and_the_raw_error_only_here(client, alice, staff):
    conversation = make_conversation(alice)
    failed = request_picture(conversation, "failed fox")
    do_claim_next("gpu-1")
    do_fail(failed.id, code="forge_error", detail="Traceback: CUDA boom")
    waiting = request_picture(conversation, "waiting fox")
    client.force_login(staff)
    listing = client.get(CHANGELIST).content.decode()
    assert "waiting fox" in listing
    assert "#1" in listing
    detail = client.get(reverse("admin:imagejobs_imagejob_change", args=[failed.id]))
    page = detail.content.decode()
    assert "Traceback: CUDA boom" in page
    with translation.override("en"):
        assert user_message("forge_error") in page, "what the user reads, in English"
    assert "failed: forge_error" in page  # the transition log inline
    assert positions.snapshot().position(waiting.id) == 1
    # The user never sees the raw error.
    client.force_login(alice)
    assert "CUDA boom" not in client.get(f"/conversations/{conversation.id}/").content.decode()
    searched = client.get(CHANGELIST + "?q=waiting")
    assert searched.status_code == 302  # not staff: sent to the admin login


@pytest.mark.django_db(transaction=True)
def test_the_queue_overview_shows_counts_workers_and_averages(client, alice, staff, forge):
    from imagejobs.worker import Worker

    conversation = make_conversation(alice)
    request_picture(conversation, "done fox", steps=2)
    Worker(forge.url, worker_id="gpu-overview").step()
    request_picture(conversation, "waiting fox")
    from imagejobs import workers

    workers.register("gpu-overview", forge.url)
    client.force_login(staff)
    page = client.get(reverse("admin:imagejobs_queue_overview")).content.decode()
    assert "Jobs waiting now:</strong> 1" in page
    assert "gpu-overview" in page
    assert "job)" in page  # the average over the last hour counts one job


@pytest.mark.django_db(transaction=True)
def test_non_staff_users_get_no_admin(client, alice):
    request_picture(make_conversation(alice), "fox")
    client.force_login(alice)
    for url in (CHANGELIST, reverse("admin:imagejobs_queue_overview")):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    post = client.post(CHANGELIST, {"action": "mark_error", "_selected_action": []})
    assert post.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_the_change_page_shows_the_position_now_not_the_last_listings(client, alice, staff):
    conversation = make_conversation(alice)
    ahead = request_picture(conversation, "ahead fox")
    job = request_picture(conversation, "second fox")
    client.force_login(staff)
    assert '<td class="field-position">#2</td>' in client.get(CHANGELIST).content.decode()

    do_cancel(ahead.id)
    page = client.get(reverse("admin:imagejobs_imagejob_change", args=[job.id])).content.decode()
    position = re.search(r'field-position">.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert position is not None
    assert position[1] == "#1"
    assert '<td class="field-position">#1</td>' in client.get(CHANGELIST).content.decode()


def test_the_admin_keeps_no_request_state_on_its_shared_instance(rf, staff, db):
    """A ModelAdmin is one object for every request and thread: it must not
    carry one request's queue snapshot into another."""
    from django.contrib import admin

    model_admin = admin.site.get_model_admin(ImageJob)
    request = rf.get(CHANGELIST)
    request.user = staff
    before = set(vars(model_admin))
    model_admin.get_list_display(request)
    model_admin.changelist_view(request)
    assert set(vars(model_admin)) == before
