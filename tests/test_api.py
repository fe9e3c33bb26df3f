"""The JSON API: every endpoint, the documented errors, and that bad input
writes nothing."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat.models import Conversation
from imagejobs import workers
from imagejobs.models import Circuit, ImageJob, Status
from imagejobs.tokens import create_token
from imagejobs.transitions import do_claim_next, do_fail
from imagejobs.worker import Worker
from tests.helpers import counts, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(alice) -> str:
    return create_token(alice, "tests")[1]


def call(client: Client, method: str, path: str, token: str | None = None, body=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = json.dumps(body) if body is not None and not isinstance(body, str) else body
    return getattr(client, method)(
        f"/api/image{path}", data=data, content_type="application/json", **headers, **extra
    )


def assert_error(response, status: int, code: str, text: str = "") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert text in body["error"]["message"]


def test_generate_answers_with_ids_status_and_position_at_once(client, token, alice):
    first = call(client, "post", "/generate", token, {"prompt": "a red fox"})
    assert first.status_code == 201
    job = first.json()
    assert job["status"] == "queued"
    assert job["position"] == 1
    stored = ImageJob.objects.get(pk=job["id"])
    assert str(stored.message_id) == job["message_id"]
    assert stored.owner == alice
    assert job["parameters"]["width"] == 512

    second = call(
        client,
        "post",
        "/generate",
        token,
        {
            "prompt": "  an owl  ",
            "conversation_id": job["conversation_id"],
            "parameters": {
                "width": 768,
                "height": 512,
                "steps": 30,
                "seed": 42,
                "sampler_name": "DPM++ 2M",
                "negative_prompt": "blurry",
            },
        },
    )
    assert second.status_code == 201
    body = second.json()
    assert body["position"] == 2
    assert body["conversation_id"] == job["conversation_id"]
    assert body["prompt"] == "an owl"
    owl = ImageJob.objects.get(pk=body["id"])
    assert (owl.width, owl.steps, owl.seed, owl.sampler_name) == (768, 30, 42, "DPM++ 2M")
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_status_lists_the_queue_and_only_the_callers_unfinished_jobs(client, token, alice, bob):
    mine = request_picture(make_conversation(alice), "mine")
    done = request_picture(make_conversation(alice), "done")
    theirs = request_picture(make_conversation(bob), "theirs")
    do_claim_next("gpu-1")  # takes "mine", the head
    do_fail(mine.id, code="forge_error")
    response = call(client, "get", "/status", token)
    assert response.status_code == 200
    body = response.json()
    assert body["queue"]["queued"] == 2
    assert [job["id"] for job in body["jobs"]] == [str(done.id)]
    # Alice just had a turn on the GPU, so bob's first picture goes first.
    assert body["jobs"][0]["position"] == 2
    assert str(theirs.id) not in response.content.decode()


def test_job_status_follows_the_job_to_its_picture(client, token, alice, forge):
    job = request_picture(make_conversation(alice), "a red fox", steps=3)
    assert call(client, "get", f"/job/{job.id}/status", token).json()["status"] == "queued"
    Worker(forge.url).step()
    body = call(client, "get", f"/job/{job.id}/status", token).json()
    assert body["status"] == "complete"
    assert body["progress"] == 100
    assert body["result_seed"] is not None
    image = client.get(body["image_url"], HTTP_AUTHORIZATION=f"Bearer {token}")
    assert image.status_code == 200
    assert b"".join(image.streaming_content).startswith(b"\x89PNG")


def test_a_failed_job_reports_its_readable_message(client, token, alice):
    job = request_picture(make_conversation(alice), "a red fox")
    do_claim_next("gpu-1")
    do_fail(job.id, code="forge_timeout", detail="raw secret detail")
    body = call(client, "get", f"/job/{job.id}/status", token).json()
    assert body["error"] == {
        "code": "forge_timeout",
        "message": "The Forge API timed out (180s). Please try again.",
    }
    assert "raw secret detail" not in json.dumps(body)


def test_cancel_a_queued_job_and_then_not_again(client, token, alice):
    job = request_picture(make_conversation(alice), "a red fox")
    response = call(client, "delete", f"/job/{job.id}/cancel", token)
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    again = call(client, "delete", f"/job/{job.id}/cancel", token)
    assert_error(again, 400, "not_allowed_now", "already finished")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "fox", "colour": "red"}, "colour"),
        ({"prompt": "fox", "parameters": {"style": "oil"}}, "parameters.style"),
        ({"prompt": "fox", "parameters": {"width": 4096}}, "parameters.width"),
        ({"prompt": "fox", "parameters": {"width": 63}}, "parameters.width"),
        ({"prompt": "fox", "parameters": {"height": 513}}, "parameters.height"),
        ({"prompt": "fox", "parameters": {"steps": 0}}, "parameters.steps"),
        ({"prompt": "fox", "parameters": {"steps": 151}}, "parameters.steps"),
        ({"prompt": "fox", "parameters": {"steps": "many"}}, "parameters.steps"),
        ({"prompt": "fox", "parameters": {"seed": -2}}, "parameters.seed"),
        ({"prompt": "fox", "parameters": {"seed": False}}, "parameters.seed"),
        ({"prompt": "fox", "parameters": {"steps": "20"}}, "parameters.steps"),
        ({"prompt": "fox", "parameters": {"cfg_scale": True}}, "parameters.cfg_scale"),
        ({"prompt": "fox\u0000"}, "prompt"),
        ({"prompt": "fox \ud800"}, "prompt"),
        ({"prompt": "fox", "parameters": {"sampler_name": "Nope"}}, "parameters.sampler_name"),
        ({"prompt": "fox", "conversation_id": "not-a-uuid"}, "conversation_id"),
    ],
)
def test_bad_generate_input_is_a_400_that_names_the_field_and_writes_nothing(
    client, token, alice, body, field
):
    before = counts()
    response = call(client, "post", "/generate", token, body)
    assert_error(response, 400, "invalid_request")
    assert field in [detail["field"] for detail in response.json()["error"]["details"]]
    assert counts() == before


def test_malformed_json_is_a_400(client, token):
    response = call(client, "post", "/generate", token, "{not json")
    assert_error(response, 400, "invalid_request")
    assert counts() == (0, 0, 0)


def test_someone_elses_conversation_is_404_and_writes_nothing(client, token, bob):
    theirs = make_conversation(bob)
    before = counts()
    response = call(
        client, "post", "/generate", token, {"prompt": "fox", "conversation_id": str(theirs.id)}
    )
    assert_error(response, 404, "not_found")
    assert counts() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/job/{id}/status"), ("delete", "/job/{id}/cancel"), ("get", "/job/{id}/image")],
)
def test_another_users_job_is_404_and_untouched(client, token, bob, method, path):
    theirs = request_picture(make_conversation(bob), "bob's fox")
    response = call(client, method, path.format(id=theirs.id), token)
    assert_error(response, 404, "not_found")
    assert ImageJob.objects.get(pk=theirs.pk).status == Status.QUEUED


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/job/{id}/status"), ("delete", "/job/{id}/cancel")]
)
def test_unknown_and_malformed_job_ids(client, token, method, path):
    assert_error(call(client, method, path.format(id=uuid.uuid4()), token), 404, "not_found")
    malformed = call(client, method, path.format(id="12345"), token)
    assert_error(malformed, 400, "invalid_request", "job_id")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/generate", {"prompt": "fox"}),
        ("get", "/status", None),
        ("get", f"/job/{uuid.uuid4()}/status", None),
        ("delete", f"/job/{uuid.uuid4()}/cancel", None),
    ],
)
def test_no_token_and_a_wrong_token_are_401_and_write_nothing(client, method, path, body):
    assert_error(call(client, method, path, None, body), 401, "not_authenticated", "API token")
    assert_error(
        call(client, method, path, "mami_wrong", body), 401, "not_authenticated", "not valid"
    )
    assert counts() == (0, 0, 0)


def test_a_revoked_token_stops_working(client, alice):
    from django.utils import timezone

    row, key = create_token(alice, "old script")
    assert call(client, "get", "/status", key).status_code == 200
    row.revoked_at = timezone.now()
    row.save()
    assert_error(call(client, "get", "/status", key), 401, "not_authenticated")


def test_the_session_works_with_csrf_and_refuses_without(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get("/api/image/status").status_code == 200
    refused = browser.post(
        "/api/image/generate", data={"prompt": "fox"}, content_type="application/json"
    )
    assert_error(refused, 403, "forbidden", "CSRF")
    assert counts() == (0, 0, 0)
    browser.get("/conversations/")  # sets the csrftoken cookie
    accepted = browser.post(
        "/api/image/generate",
        data={"prompt": "fox"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )
    assert accepted.status_code == 201


def test_the_openapi_document_describes_every_endpoint(client):
    from openapi_spec_validator import validate

    document = client.get("/api/openapi.json").json()
    validate(document)  # raises on any violation of the OpenAPI specification
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert set(paths) == {
        "/api/image/generate",
        "/api/image/models",
        "/api/image/status",
        "/api/image/job/{job_id}/status",
        "/api/image/job/{job_id}/cancel",
        "/api/image/job/{job_id}/image",
    }
    generate = paths["/api/image/generate"]["post"]
    assert {"201", "400", "401", "404"} <= set(generate["responses"])
    assert client.get("/api/docs").status_code == 200


def test_while_the_image_service_is_down_no_eta_is_promised(client, token, alice):
    job = request_picture(make_conversation(alice), "a fox")
    workers.register("gpu-1", "http://127.0.0.1:7860")
    until = timezone.now() + timedelta(seconds=30)
    workers.save_circuit("gpu-1", Circuit.OPEN, 5, until)
    body = call(client, "get", f"/job/{job.id}/status", token).json()
    assert body["position"] == 1
    assert body["eta_seconds"] is None
    assert body["service_unavailable_until"] is not None

    workers.save_circuit("gpu-1", Circuit.CLOSED, 0, None)
    body = call(client, "get", f"/job/{job.id}/status", token).json()
    assert body["eta_seconds"] > 0
    assert body["service_unavailable_until"] is None


def test_status_counts_the_live_workers_whether_their_forge_answers_or_not(client, token):
    assert call(client, "get", "/status", token).json()["queue"]["live_workers"] == 0
    until = timezone.now() + timedelta(seconds=30)
    for n in range(3):
        workers.register(f"gpu-{n}", f"http://127.0.0.1:{7860 + n}")
    for n in range(2):
        workers.save_circuit(f"gpu-{n}", Circuit.OPEN, 5, until)
    assert call(client, "get", "/status", token).json()["queue"]["live_workers"] == 3
    workers.save_circuit("gpu-2", Circuit.OPEN, 5, until)
    queue = call(client, "get", "/status", token).json()["queue"]
    assert queue["live_workers"] == 3
    assert queue["service_unavailable_until"] is not None


def test_the_api_answers_in_english_whatever_the_callers_language(client, token, alice):
    job = request_picture(make_conversation(alice), "a fox")
    call(client, "delete", f"/job/{job.id}/cancel", token)
    again = call(client, "delete", f"/job/{job.id}/cancel", token, HTTP_ACCEPT_LANGUAGE="tr")
    assert_error(again, 400, "not_allowed_now", "This picture is already finished")
    missing = call(client, "get", f"/job/{uuid.uuid4()}/status", token, HTTP_ACCEPT_LANGUAGE="tr")
    assert_error(missing, 404, "not_found", "No such image job.")
