"""/metrics in Prometheus format and /healthz, as operators scrape them."""

import pytest
from channels.db import database_sync_to_async as db
from prometheus_client.parser import text_string_to_metric_families

from imagejobs import workers
from imagejobs.worker import Worker
from tests.helpers import make_conversation, open_socket, request_picture, sim_control

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-s3cret"


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.MAMI_METRICS_TOKEN = TOKEN


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {TOKEN}")
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics_count_jobs_durations_errors_and_circuits(client, alice, forge):
    conversation = make_conversation(alice)
    for n in range(2):
        request_picture(conversation, f"fox {n}", steps=3)
    request_picture(conversation, "refused fox", steps=3)
    request_picture(conversation, "waiting fox")
    sim_control(forge, next=["http500", "http422"])
    worker = Worker(forge.url, worker_id="gpu-metrics")
    workers.register("gpu-metrics", forge.url)
    for _ in range(3):
        worker.step()

    metrics = scrape(client)
    jobs = metrics["mami_jobs"]
    # The first job meets both faults (500, retried, then 422): it fails.
    assert jobs[(("status", "complete"),)] == 2
    assert jobs[(("status", "error"),)] == 1
    assert jobs[(("status", "queued"),)] == 1
    assert metrics["mami_queue_depth"][()] == 1
    assert metrics["mami_job_run_seconds_count"][()] == 2
    assert metrics["mami_job_wait_seconds_count"][()] == 3
    assert metrics["mami_job_wait_seconds_bucket"][(("le", "+Inf"),)] == 3
    errors = metrics["mami_forge_errors_total"]
    assert errors[(("code", "forge_error"),)] == 1  # the 500, retried
    assert errors[(("code", "invalid_request"),)] == 1  # the 422, final
    assert metrics["mami_worker_circuit_open"][(("worker", "gpu-metrics"),)] == 0
    assert metrics["mami_live_workers"][()] == 1


@pytest.mark.asyncio
async def test_open_sockets_and_fragments_are_counted(client, alice):
    conversation = await db(make_conversation)(alice)
    await db(request_picture)(conversation, "fox")
    before = await db(scrape)(client)
    socket = await open_socket(client, alice, conversation.id)
    await socket.receive_from()
    during = await db(scrape)(client)
    assert during["mami_open_websockets"][()] == before["mami_open_websockets"][()] + 1
    assert during["mami_fragments_sent_total"][()] >= before["mami_fragments_sent_total"][()] + 1
    await socket.disconnect()
    after = await db(scrape)(client)
    assert after["mami_open_websockets"][()] == before["mami_open_websockets"][()]


def test_metrics_require_the_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(client)


def test_without_a_token_metrics_are_off_in_production_and_say_how(client, settings):
    settings.MAMI_METRICS_TOKEN = ""
    settings.DEBUG = False
    response = client.get("/metrics")
    assert response.status_code == 403
    assert "set MAMI_METRICS_TOKEN" in response.content.decode()
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200, "open in the embedded default"


def test_healthz_shows_the_public_only_up_or_down(client, alice, forge):
    workers.register("gpu-health", forge.url)
    assert client.get("/healthz").json() == {"status": "ok"}
    client.force_login(alice)
    assert client.get("/healthz").json() == {"status": "ok"}, "a user is the public too"


def test_healthz_reports_database_layer_and_worker_heartbeats(client, forge):
    degraded = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert degraded.status_code == 200
    assert degraded.json() == {
        "status": "degraded",
        "database": "ok",
        "channel_layer": "ok",
        "workers": [],
        "newest_heartbeat_age_seconds": None,
    }
    workers.register("gpu-health", forge.url)
    healthy = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert healthy["status"] == "ok"
    assert healthy["workers"][0]["id"] == "gpu-health"
    assert healthy["newest_heartbeat_age_seconds"] < 5


def test_healthz_is_503_when_the_database_is_gone(client, settings, tmp_path):
    from django.db import connection

    connection.close()
    settings_dict = connection.settings_dict
    original = settings_dict["NAME"]
    settings_dict["NAME"] = str(tmp_path / "missing" / "nope.sqlite3")
    try:
        response = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    finally:
        connection.close()
        settings_dict["NAME"] = original
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert response.json()["database"].startswith("error")
