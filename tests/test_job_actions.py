"""Cancel, Retry and Regenerate, as the card's buttons send them."""

import threading
import time

import pytest

from chat.models import Message
from imagejobs.models import ImageJob, Status
from imagejobs.transitions import do_cancel, do_claim_next, do_fail
from imagejobs.worker import Worker
from tests.helpers import HTMX, closing, make_conversation, request_picture, sim_control, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_queued_job_is_canceled_at_once(client, alice):
    job = request_picture(make_conversation(alice), "a red fox")
    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{job.id}/cancel/", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-status="canceled"' in html
    assert ">Retry<" in html
    job.refresh_from_db()
    assert job.status == Status.CANCELED


def test_a_processing_job_is_interrupted_at_forge_and_then_canceled(client, alice, forge):
    forge.seconds_per_step = 0.05
    job = request_picture(make_conversation(alice), "a long fox", steps=400)
    worker = Worker(forge.url, worker_id="gpu-test")
    runner = threading.Thread(target=closing(worker.step))
    runner.start()
    wait_for(lambda: ImageJob.objects.filter(pk=job.pk, progress__gt=0).exists())

    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{job.id}/cancel/", **HTMX)
    assert response.status_code == 200
    assert "Canceling…" in response.content.decode()
    runner.join(timeout=10)
    job.refresh_from_db()
    assert job.status == Status.CANCELED
    assert not job.image
    # Forge counts the interrupted run once it has answered for it, which
    # may be after the worker has moved on.
    wait_for(lambda: sim_control(forge)["stats"]["interrupted"] == 1)
    assert list(job.transitions.values_list("reason", flat=True))[-2:] == [
        "cancel requested",
        "canceled by user",
    ]


def test_cancel_racing_completion_through_the_worker_ends_in_one_state(client, alice, forge):
    """The cancel request lands as Forge finishes: either the picture is kept
    (complete) or it is canceled, and the other writer changes nothing."""
    client.force_login(alice)
    conversation = make_conversation(alice)
    outcomes = set()
    for n in range(6):
        job = request_picture(conversation, f"racing fox {n}", steps=5)
        worker = Worker(forge.url, worker_id="gpu-test")
        runner = threading.Thread(target=closing(worker.step))
        runner.start()
        wait_for(lambda job=job: ImageJob.objects.get(pk=job.pk).status != Status.QUEUED)
        time.sleep(0.01 * n)
        client.post(f"/conversations/jobs/{job.id}/cancel/", **HTMX)
        runner.join(timeout=10)
        job.refresh_from_db()
        assert job.status in (Status.COMPLETE, Status.CANCELED)
        terminal = job.transitions.filter(to_status__in=["complete", "canceled", "error"])
        assert terminal.count() == 1
        if job.status == Status.CANCELED:
            assert not job.image
        else:
            assert job.image
        outcomes.add(job.status)
    assert outcomes  # at least one ran; which wins depends on timing


def test_cancel_of_a_finished_job_says_why_and_changes_nothing(client, alice):
    job = request_picture(make_conversation(alice), "a red fox")
    do_cancel(job.id)
    version = ImageJob.objects.get(pk=job.pk).version
    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{job.id}/cancel/", **HTMX)
    assert response.status_code == 400
    assert "already finished" in response["HX-Trigger"]
    assert ImageJob.objects.get(pk=job.pk).version == version


def test_retry_makes_a_new_linked_job_with_the_same_parameters(client, alice):
    conversation = make_conversation(alice)
    old = request_picture(conversation, "a red fox", steps=12, seed=77, width=640)
    request_picture(conversation, "someone ahead")  # the retry goes behind it
    do_claim_next("gpu-1")
    do_fail(old.id, code="forge_error", detail="boom")
    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{old.id}/retry/", **HTMX)
    assert response.status_code == 200
    new = ImageJob.objects.get(retry_of=old)
    assert (new.prompt, new.steps, new.seed, new.width) == ("a red fox", 12, 77, 640)
    assert new.status == Status.QUEUED
    assert new.message.conversation_id == conversation.id
    assert new.message.role == Message.Role.ASSISTANT
    html = response.content.decode()
    assert f'id="job-{new.id}"' in html
    assert "#2 in line" in html


def test_regenerate_makes_a_new_job_with_a_new_seed(client, alice, forge):
    conversation = make_conversation(alice)
    old = request_picture(conversation, "a red fox", steps=3)
    Worker(forge.url).step()
    old.refresh_from_db()
    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{old.id}/regenerate/", **HTMX)
    assert response.status_code == 200
    new = ImageJob.objects.get(retry_of=old)
    assert new.prompt == old.prompt
    assert new.seed == -1
    Worker(forge.url).step()
    new.refresh_from_db()
    assert new.status == Status.COMPLETE
    assert new.result_seed != old.result_seed


@pytest.mark.parametrize(
    ("action", "state", "error"),
    [
        ("retry", "queued", "Only a failed or canceled picture can be retried."),
        ("retry", "complete", "Only a failed or canceled picture can be retried."),
        ("regenerate", "error", "Only a finished picture can be regenerated."),
    ],
)
def test_actions_that_dont_fit_the_state_are_400_and_write_nothing(
    client, alice, action, state, error
):
    job = request_picture(make_conversation(alice), "a red fox")
    if state != "queued":
        do_claim_next("gpu-1")
    if state == "complete":
        from imagejobs.transitions import do_complete

        do_complete(job.id, image_name="x.png", seed=1, info={})
    elif state == "error":
        do_fail(job.id, code="forge_error")
    counts = (ImageJob.objects.count(), Message.objects.count())
    client.force_login(alice)
    response = client.post(f"/conversations/jobs/{job.id}/{action}/", **HTMX)
    assert response.status_code == 400
    assert response["HX-Reswap"] == "none"
    assert error in response.content.decode()
    assert (ImageJob.objects.count(), Message.objects.count()) == counts


@pytest.mark.parametrize(
    "url", ["/conversations/jobs/{id}/cancel/", "/conversations/jobs/{id}/retry/"]
)
def test_another_users_job_is_404_and_untouched(client, alice, bob, url):
    job = request_picture(make_conversation(alice), "alice's fox")
    do_cancel(job.id)
    client.force_login(bob)
    assert client.post(url.format(id=job.id), **HTMX).status_code == 404
    assert ImageJob.objects.count() == 1


def test_actions_need_post(client, alice):
    job = request_picture(make_conversation(alice), "a red fox")
    client.force_login(alice)
    assert client.get(f"/conversations/jobs/{job.id}/cancel/").status_code == 405
    assert ImageJob.objects.get(pk=job.pk).status == Status.QUEUED
