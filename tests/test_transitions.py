"""The job state machine: forward only, terminal states final, one writer
can't erase another's fields."""

import ast
import threading
from pathlib import Path

import pytest
from django.db import close_old_connections

from imagejobs.models import ImageJob, JobTransition, Status
from imagejobs.transitions import (
    do_cancel,
    do_claim_next,
    do_complete,
    do_fail,
    do_progress,
)
from tests.helpers import make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


def _row(job: ImageJob) -> dict[str, object]:
    job.refresh_from_db()
    return {field.name: getattr(job, field.name) for field in ImageJob._meta.fields}


def test_it_walks_queued_processing_complete_with_a_log_and_version_per_step(alice):
    job = request_picture(make_conversation(alice), "a red fox")
    assert job.status == Status.QUEUED
    assert job.version == 1

    claimed = do_claim_next("gpu-1")
    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.status == Status.PROCESSING
    assert claimed.worker_id == "gpu-1"
    assert claimed.attempts == 1
    assert claimed.started_at is not None
    assert claimed.version == 2

    assert do_progress(job.id, progress=40, eta_seconds=3.0)
    assert do_complete(job.id, image_name="jobs/x.png", seed=42, info={"seed": 42})
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.progress == 100
    assert job.result_seed == 42
    assert job.finished_at is not None
    assert job.version == 4

    log = list(job.transitions.values_list("from_status", "to_status", "worker_id"))
    assert log == [
        ("", "queued", ""),
        ("queued", "processing", "gpu-1"),
        ("processing", "complete", ""),
    ]


@pytest.mark.parametrize("terminal", ["complete", "error", "canceled"])
def test_terminal_states_are_final(alice, terminal):
    job = request_picture(make_conversation(alice), "a red fox")
    do_claim_next("gpu-1")
    if terminal == "complete":
        assert do_complete(job.id, image_name="jobs/x.png", seed=1, info={})
    elif terminal == "error":
        assert do_fail(job.id, code="forge_error", detail="boom")
    else:
        assert do_cancel(job.id)
    before = _row(job)
    log_rows = JobTransition.objects.count()

    assert not do_complete(job.id, image_name="jobs/other.png", seed=2, info={})
    assert not do_fail(job.id, code="timeout", detail="late")
    assert not do_cancel(job.id)
    assert not do_progress(job.id, progress=50, eta_seconds=1.0)
    assert do_claim_next("gpu-2") is None

    assert _row(job) == before
    assert JobTransition.objects.count() == log_rows


def test_a_job_never_moves_backwards(alice):
    job = request_picture(make_conversation(alice), "a red fox")
    # Complete is only reachable from processing: a queued job can't skip ahead.
    assert not do_complete(job.id, image_name="jobs/x.png", seed=1, info={})
    assert not do_progress(job.id, progress=10, eta_seconds=None)
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.version == 1

    do_claim_next("gpu-1")
    # A second claim can't take the processing job again.
    assert do_claim_next("gpu-2") is None
    job.refresh_from_db()
    assert job.worker_id == "gpu-1"
    assert job.attempts == 1


def test_progress_is_clamped_below_done_until_the_image_is_stored(alice):
    job = request_picture(make_conversation(alice), "a red fox")
    do_claim_next("gpu-1")
    assert do_progress(job.id, progress=250, eta_seconds=0.0)
    job.refresh_from_db()
    assert job.progress == 99
    assert job.heartbeat_at is not None


def test_cancel_racing_completion_has_one_winner_and_the_loser_writes_nothing(alice):
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"fox {n}") for n in range(20)]
    outcomes = []
    for job in jobs:
        do_claim_next("gpu-1")
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def complete(job_id=job.id, barrier=barrier, results=results):
            barrier.wait()
            results["complete"] = do_complete(
                job_id, image_name="jobs/won.png", seed=7, info={"seed": 7}
            )
            close_old_connections()

        def cancel(job_id=job.id, barrier=barrier, results=results):
            barrier.wait()
            results["cancel"] = do_cancel(job_id)
            close_old_connections()

        threads = [threading.Thread(target=complete), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["complete"] != results["cancel"], "exactly one writer wins"
        job.refresh_from_db()
        if results["complete"]:
            assert job.status == Status.COMPLETE
            assert job.image.name == "jobs/won.png"
        else:
            assert job.status == Status.CANCELED
            assert job.image.name == ""
            assert job.result_seed is None
        assert job.transitions.filter(to_status__in=["complete", "canceled"]).count() == 1
        outcomes.append(job.status)
    assert set(outcomes) <= {Status.COMPLETE, Status.CANCELED}


def test_concurrent_progress_and_completion_lose_no_field(alice):
    """A stream of progress writes racing the completion: the completion's
    fields all survive, and no progress write lands after it."""
    job = request_picture(make_conversation(alice), "a red fox")
    do_claim_next("gpu-1")
    started = threading.Event()
    accepted = []

    def report_progress():
        for percent in range(1, 99):
            if do_progress(job.id, progress=percent, eta_seconds=1.0):
                accepted.append(percent)
            started.set()
        close_old_connections()

    writer = threading.Thread(target=report_progress)
    writer.start()
    started.wait(5)
    assert do_complete(job.id, image_name="jobs/fox.png", seed=99, info={"seed": 99})
    writer.join()

    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.progress == 100
    assert job.image.name == "jobs/fox.png"
    assert job.result_seed == 99
    assert job.result_info == {"seed": 99}
    assert job.worker_id == "gpu-1"
    assert job.eta_seconds is None
    # queued(1) + claim + every accepted progress write + complete
    assert job.version == 1 + 1 + len(accepted) + 1


def test_claims_from_many_threads_never_take_the_same_job(alice):
    conversation = make_conversation(alice)
    for n in range(12):
        request_picture(conversation, f"fox {n}")
    taken: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := do_claim_next(name)) is not None:
            with lock:
                taken.append(str(job.id))
        close_old_connections()

    threads = [threading.Thread(target=worker, args=(f"gpu-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 12
    assert len(set(taken)) == 12
    assert not ImageJob.objects.filter(status=Status.QUEUED).exists()
    assert all(job.attempts == 1 for job in ImageJob.objects.all())


WRITING_CALLS = {"update", "create", "update_or_create", "get_or_create", "bulk_update"}


def test_nothing_but_the_transitions_module_writes_a_status():
    """One place per transition: no app module outside the transitions
    package assigns `.status` or passes `status=` to a writing ORM call."""
    offenders = []
    for app in ("chat", "imagejobs", "mami"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts or "transitions" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                targets = []
                if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in WRITING_CALLS
                    and any(keyword.arg == "status" for keyword in node.keywords)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
