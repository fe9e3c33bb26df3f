"""The GPU worker: takes queued jobs one at a time and runs them on Forge,
surviving whatever Forge and the machine do."""

import logging
import queue
import socket
import threading
import time
import traceback
import uuid
from datetime import timedelta
from enum import Enum
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection
from django.utils import timezone, translation

from . import aftercommit, broadcast, previews, registry, scheduling, sweeps, wakeup
from .circuit import CircuitBreaker
from .errors import ErrorCode, user_message
from .forge import ForgeClient, ForgeError, Txt2ImgResult, image_extension
from .models import ImageJob, Status
from .queue import queued_jobs
from .transitions import (
    do_cancel,
    do_claim_next,
    do_complete,
    do_fail,
    do_progress,
    do_requeue,
    do_retry_attempt,
    record_started,
)

logger = logging.getLogger(__name__)

# A heartbeat is written at least this often while Forge answers, even when
# progress stands still (model loading shows 1% for minutes).
HEARTBEAT_SECONDS = 5.0


def default_worker_id(forge_url: str) -> str:
    """Stable across restarts: one worker per GPU, one GPU per Forge."""
    forge = urlsplit(forge_url)
    return f"{socket.gethostname()}/{forge.hostname}:{forge.port or 80}"


def txt2img_payload(job: ImageJob) -> dict[str, object]:
    payload: dict[str, object] = {
        "prompt": job.prompt,
        **job.generation_parameters(),
        "batch_size": 1,
        "n_iter": 1,
        "send_images": True,
        "save_images": False,
    }
    overrides = previews.forge_settings(job.steps)
    if job.model:
        # Per request, never through POST /options (that would change the
        # model for every user of this Forge). Not put back afterwards: the
        # weights stay loaded for the next picture that wants them.
        overrides["sd_model_checkpoint"] = job.model
        payload["override_settings_restore_afterwards"] = False
    if overrides:
        payload["override_settings"] = overrides
    return payload


# Forge scans its checkpoints at start; a worker reads them at its own
# start and this often after (a Forge restarted with new files).
CHECKPOINTS_EVERY_SECONDS = 60.0
# How much each picture moves the learned draw and switch times.
LEARNING = 0.3
# The next job is claimed while the GPU still draws, once Forge says the
# picture has this little left, so that no claim stands between two
# pictures. Short, because a job's card says it is drawing from its claim.
CLAIM_AHEAD_SECONDS = 0.5
# A job claimed ahead goes back to the head of the queue if the picture
# before it outlasts this (a Forge stuck after its last step), long before
# the stuck guard would take a job that never started for a stuck one.
CLAIM_AHEAD_HOLD_SECONDS = 30.0


class Verdict(Enum):
    CONTINUE = "continue"
    CANCEL = "cancel"
    GONE = "gone"


class Abandoned(Exception):
    """The job left this worker's hands while Forge drew it."""


class Worker:
    """Processes the queue serially against one Forge server.

    `step()` does one unit of work and says whether there was any, so tests
    drive it directly and `run()` only loops, sweeps and waits.

    In `run()` the worker is pipelined, so the GPU never waits for
    bookkeeping: a finished picture is stored and completed by the
    finisher thread while the next one is drawn, and what follows a commit
    (re-ranking, pushing cards) runs on the after-commit lane. A `step()`
    called on its own has finished all its work when it returns.
    """

    def __init__(
        self,
        forge_url: str,
        *,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.worker_id = worker_id or default_worker_id(forge_url)
        self.forge = ForgeClient(forge_url, timeout=settings.FORGE_TIMEOUT)
        self.stop = stop or threading.Event()
        self.poll_interval = settings.FORGE_PROGRESS_INTERVAL
        self._checkpoints_read = 0.0
        # What its Forge has loaded ("": not known) and has (None: not
        # known), for the scheduler; kept current after each picture.
        self.loaded = ""
        self.models: frozenset[str] | None = None
        # Learned: seconds per sampling step, and what a switch adds.
        self._seconds_per_step: float | None = None
        self.switch_seconds: float | None = None
        # The fingerprint of the last preview taken, per job being drawn.
        self._preview_seen: dict[uuid.UUID, str] = {}
        self.write_interval = settings.MAMI_PROGRESS_WRITE_INTERVAL
        self.breaker = CircuitBreaker(
            threshold=settings.MAMI_CIRCUIT_THRESHOLD,
            open_seconds=settings.MAMI_CIRCUIT_OPEN_SECONDS,
        )
        self._last_sweep = float("-inf")
        self._sweep_lock = threading.Lock()
        # Set when a job may be waiting (a commit in this process, a NOTIFY
        # from another) or when stopping; the idle wait ends at once then.
        self._wake = threading.Event()
        self._idle = False
        self._finisher = Finisher(self)
        self.pipelined = False
        # Between a picture's answer and the next txt2img (see _hold_bookkeeping).
        self._holding = False
        self._hold_lock = threading.Lock()
        self._gpu_fed = threading.Event()
        self._gpu_fed.set()
        # Claimed ahead (pipelined only): the job the GPU draws next, and when.
        self._next: ImageJob | None = None
        self._next_claimed = 0.0

    # -- the loop ---------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> None:
        """1. Register (taking over from a dead predecessor of the same id)
           and start heartbeating and sweeping, so other workers and the
           cards know this one is alive.
        2. Recover what that predecessor left in processing.
        3. Loop: claim and process, sleep when idle; with `until_idle`
           (`runworker --drain`), stop once nothing is queued.
        4. On stop, hand the current job back (done inside `process`) and
           mark this worker stopped.
        """
        registry.register(self.worker_id, self.forge.base_url)
        self.read_checkpoints()
        heart = threading.Thread(target=self._beat, name="mami-worker-heartbeat", daemon=True)
        heart.start()
        wakeup.subscribe(self._woken)
        threading.Thread(
            target=lambda: self.stop.wait() or self._wake.set(),
            name="mami-worker-stop-relay",
            daemon=True,
        ).start()
        if connection.vendor == "postgresql":
            wakeup.PostgresListener(self.stop).start()
        logger.info("worker %s started against %s", self.worker_id, self.forge.base_url)
        self.pipelined = True
        _leave_checkpoints_to_others()
        try:
            self.recover_on_start()
            while not self.stop.is_set():
                # Cleared before looking, so a job committed from here on
                # ends the idle wait below at once.
                self._wake.clear()
                try:
                    worked = self.step()
                except Exception:
                    # A bug in one step must not kill the GPU box's only worker.
                    logger.exception("worker %s: step failed", self.worker_id)
                    worked = False
                if worked:
                    continue
                self._hold_bookkeeping(False)
                if until_idle and not queued_jobs().exists():
                    break
                self._idle = True
                self._wake.wait(self._idle_wait())
                self._idle = False
        finally:
            self.stop.set()
            self._hold_bookkeeping(False)
            self._give_back_next("worker stopping")
            self._finisher.close()
            heart.join(timeout=10)
            registry.unregister(self.worker_id)
            aftercommit.lane.drain()
            broadcast.flush_queue_refresh()
            wakeup.unsubscribe(self._woken)
            self.forge.close()
            close_old_connections()
            logger.info("worker %s stopped", self.worker_id)

    def _beat(self) -> None:
        """The worker's own heartbeat, and the guards: on their own thread
        so they run while the main thread waits on Forge."""
        interval = min(settings.MAMI_WORKER_HEARTBEAT_SECONDS, settings.MAMI_SWEEP_INTERVAL)
        while not self.stop.wait(interval):
            try:
                recreated = registry.beat(
                    self.worker_id,
                    self.forge.base_url,
                    channel_layer_failures=broadcast.layer_health.failures,
                )
                self.maybe_sweep()
                due = time.monotonic() - self._checkpoints_read >= CHECKPOINTS_EVERY_SECONDS
                if recreated or due:
                    self.read_checkpoints()
            except Exception:
                logger.exception("worker %s: heartbeat or sweep failed", self.worker_id)
        close_old_connections()

    def read_checkpoints(self) -> None:
        """Record which checkpoints this worker's Forge has and which one it
        draws with now; kept as they were if Forge does not answer."""
        self._checkpoints_read = time.monotonic()
        try:
            found = self.forge.checkpoints()
        except ForgeError as exc:
            logger.info("worker %s: could not read Forge's checkpoints: %s", self.worker_id, exc)
            return
        registry.record_checkpoints(self.worker_id, found)
        self.models = frozenset(m.model_name for m in found.models) or None
        self.loaded = found.current

    def _woken(self) -> None:
        """A job was queued (called from the committing thread). An idle
        worker holds the process's bookkeeping (that commit's own pushes
        among it) until its txt2img is sent."""
        if self._idle:
            self._hold_bookkeeping(True)
        self._wake.set()

    def _idle_wait(self) -> float:
        if self.breaker.is_open:
            return min(max(self.breaker.seconds_until_probe(), 0.05), 1.0)
        return settings.MAMI_WORKER_IDLE_SLEEP

    def recover_on_start(self) -> None:
        """Jobs recorded under this worker's id belong to a dead predecessor;
        Forge may still be drawing one of them, so stop it first."""
        try:
            if self.forge.progress().active:
                logger.warning("worker %s: interrupting a leftover Forge job", self.worker_id)
                self.forge.interrupt()
        except ForgeError:
            pass
        sweeps.recover_orphaned_jobs(restarted_worker_id=self.worker_id)
        self._last_sweep = time.monotonic()

    def maybe_sweep(self) -> None:
        """The stuck-job guard and dead-worker recovery, when due."""
        with self._sweep_lock:
            if time.monotonic() - self._last_sweep < settings.MAMI_SWEEP_INTERVAL:
                return
            self._last_sweep = time.monotonic()
        sweeps.fail_stuck_jobs()
        sweeps.recover_orphaned_jobs()
        sweeps.run_more_sweeps()

    def step(self) -> bool:
        """One unit of work; False if there was nothing to do."""
        _keep_connection_usable()
        if self.breaker.is_open:
            if not self.breaker.ready_to_probe():
                return False
            self.probe()
            return True
        job, self._next = self._next, None
        if job is not None:
            # Its run is timed from now, not from its claim.
            self._note(partial(record_started, job.id, worker_id=self.worker_id, at=timezone.now()))
        else:
            job = do_claim_next(self.worker_id, loaded=self.loaded, models=self.models)
            if job is None:
                return False
        # For the admin's overview only: off the GPU's path, in order.
        self._note(partial(registry.set_current_job, self.worker_id, job.id))
        try:
            self.process(job)
        finally:
            self._note(partial(registry.set_current_job, self.worker_id, None))
        return True

    def _note(self, task: Any) -> None:
        """Run bookkeeping that may wait: off the GPU's path, in order."""
        (aftercommit.lane.submit if self.pipelined else _call)(task)

    def _drew(self, job: ImageJob, seconds: float) -> None:
        """Forge has drawn `job` in `seconds`: it now has the job's model
        loaded (asked per request, kept afterwards). Learn what a switch of
        model costs on this GPU from the pictures that needed one."""
        loaded = self._loaded_after(job)
        switched = scheduling.needs_switch(self.loaded, loaded)
        steps = max(job.steps, 1)
        if not switched:
            rate = seconds / steps
            before = self._seconds_per_step
            self._seconds_per_step = rate if before is None else before + (rate - before) * LEARNING
        elif self._seconds_per_step is not None:
            extra = max(seconds - steps * self._seconds_per_step, 0.0)
            before = self.switch_seconds
            self.switch_seconds = extra if before is None else before + (extra - before) * LEARNING
        if loaded != self.loaded:
            self.loaded = loaded
            self._note(partial(registry.record_loaded, self.worker_id, loaded, self.switch_seconds))

    def _loaded_after(self, job: ImageJob) -> str:
        """The model Forge has loaded once it has drawn `job`. Forge ignores
        a checkpoint it does not have (and the picture fails as drawn with
        the wrong model): nothing was loaded then."""
        known = self.models is None or job.model in self.models
        return job.model if job.model and known else self.loaded

    def probe(self) -> None:
        """The half-open probe: one cheap call decides whether Forge is back."""
        try:
            self.forge.progress()
        except ForgeError as exc:
            self.breaker.record_failure()
            logger.warning("worker %s: Forge still unavailable: %s", self.worker_id, exc)
        else:
            self.breaker.record_success()
            logger.info("worker %s: Forge is back; circuit closed", self.worker_id)
        self._publish_circuit()

    def _publish_circuit(self) -> None:
        open_until = None
        if self.breaker.is_open:
            open_until = timezone.now() + timedelta(seconds=self.breaker.seconds_until_probe())
        registry.save_circuit(self.worker_id, self.breaker.state, self.breaker.failures, open_until)
        # Queued cards say whether the service is available.
        broadcast.queue_changed()

    # -- one job ----------------------------------------------------------

    def process(self, job: ImageJob) -> None:
        """Call Forge until the job is done, failed, canceled or handed back.

        Transient failures are retried with backoff up to FORGE_MAX_ATTEMPTS;
        when Forge can't be reached at all the job is never failed: it is
        retried until the circuit opens and then handed back to the head of
        the queue, where it waits for Forge to return.
        """
        job.preview_key = None  # a new run: its previews start afresh
        while True:
            try:
                drawing = self._generate(job)
            except Abandoned:
                return
            except ForgeError as exc:
                if not self._after_failure(job, exc):
                    return
                continue
            except Exception as exc:
                logger.exception("job %s failed unexpectedly", job.id)
                self._fail(job, ErrorCode.UNKNOWN, "".join(traceback.format_exception(exc)))
                return
            if self.breaker.record_success():
                self._publish_circuit()
            self._drew(job, drawing.seconds)
            if self.pipelined:
                self._finisher.submit(job, drawing)
            else:
                self.finish(job, drawing)
            return

    def _after_failure(self, job: ImageJob, exc: ForgeError) -> bool:
        """Decide what a failed Forge call means; True to call again."""
        logger.warning(
            "job %s attempt %d failed: %s", job.id, job.attempts, exc, extra={"job": job.id}
        )
        # The request reached Forge and we gave up on it: Forge may still draw
        # it, or hold it behind its lock, for nobody.
        abandoned = exc.code == ErrorCode.FORGE_TIMEOUT or (
            exc.code == ErrorCode.FORGE_UNREACHABLE and not exc.outage
        )
        if abandoned and not self._settle_forge():
            self._fail(job, exc.code, f"{exc.detail}; Forge still busy afterwards")
            return False
        if exc.transient and self.breaker.record_failure():
            logger.error(
                "worker %s: %d Forge failures in a row; holding the queue for %gs",
                self.worker_id,
                self.breaker.failures,
                self.breaker.open_seconds,
            )
            self._publish_circuit()
        if self.stop.is_set():
            self._hand_back_held(job, "worker stopping")
            return False
        if exc.transient and self.breaker.is_open:
            self._hand_back_held(job, f"Forge unavailable ({exc.code})", code=exc.code)
            return False
        if not exc.transient or (not exc.outage and job.attempts >= settings.FORGE_MAX_ATTEMPTS):
            self._fail(job, exc.code, exc.detail)
            return False
        backoff = settings.FORGE_RETRY_BACKOFF or [1.0]
        delay = backoff[min(job.attempts, len(backoff)) - 1]
        if self.stop.wait(delay):
            self._hand_back_held(job, "worker stopping")
            return False
        verdict = self._verdict(job)
        if verdict is Verdict.CANCEL:
            do_cancel(job.id, worker_id=self.worker_id, allowed_from=[Status.PROCESSING])
            return False
        if verdict is Verdict.GONE or not do_retry_attempt(
            job.id,
            worker_id=self.worker_id,
            code=exc.code,
            reason=f"attempt {job.attempts + 1} after {exc.code}",
        ):
            return False
        job.attempts += 1
        job.version += 1
        job.progress = 0
        job.eta_seconds = None
        return True

    def _hand_back(self, job: ImageJob, reason: str, code: str = "") -> None:
        do_requeue(job.id, reason=reason, worker_id=self.worker_id, code=code)

    def _hand_back_held(self, job: ImageJob, reason: str, code: str = "") -> None:
        """Hand back the job being drawn and the one claimed after it, in
        their order: each goes before everything queued, so the next first."""
        self._give_back_next(reason, code)
        self._hand_back(job, reason, code)

    def _claim_ahead(self, drawing: ImageJob) -> None:
        """Claim the job to draw after `drawing` (which is nearly done), so
        that the claim runs while the GPU draws. An idle worker of the same
        queue would have claimed it already (woken by its commit)."""
        try:
            self._next = do_claim_next(
                self.worker_id, loaded=self._loaded_after(drawing), models=self.models
            )
        except Exception:
            # Not the drawing job's failure: the claim is made between the
            # two pictures instead.
            logger.exception("worker %s: claiming ahead failed", self.worker_id)
            _keep_connection_usable()
        self._next_claimed = time.monotonic()

    def _give_back_next(self, reason: str, code: str = "") -> None:
        """Hand back the job claimed ahead, if any (it has not reached Forge)."""
        if self._next is not None:
            self._hand_back(self._next, reason, code)
            self._next = None

    def _settle_forge(self) -> bool:
        """Wait until Forge is idle, interrupting what it runs (one worker per
        Forge: whatever runs there is a request this worker gave up on), so
        that no retry queues behind an abandoned request and a recovering
        Forge draws nothing nobody will receive. False if Forge is still
        busy after FORGE_SETTLE_SECONDS; True if idle or unreachable (a
        Forge that went away draws nothing)."""
        deadline = time.monotonic() + settings.FORGE_SETTLE_SECONDS
        idle_polls = 0
        # Two idle answers in a row: the next abandoned request, if any, had
        # time to take the lock in between.
        while idle_polls < 2:
            try:
                progress = self.forge.progress()
            except ForgeError:
                return True
            if progress.active:
                idle_polls = 0
                self._interrupt_quietly()
            else:
                idle_polls += 1
            if time.monotonic() > deadline:
                logger.error("worker %s: Forge still busy after a timed-out call", self.worker_id)
                return False
            if self.stop.wait(self.poll_interval):
                return True
        return True

    def _interrupt_quietly(self) -> None:
        try:
            self.forge.interrupt()
        except ForgeError as exc:
            logger.info("worker %s: interrupt failed: %s", self.worker_id, exc)

    def _verdict(self, job: ImageJob) -> Verdict:
        """Is the job still this worker's to draw?"""
        row = (
            ImageJob.objects.filter(pk=job.pk)
            .values("status", "worker_id", "cancel_requested_at")
            .first()
        )
        if row is None or row["status"] != Status.PROCESSING or row["worker_id"] != self.worker_id:
            return Verdict.GONE
        if row["cancel_requested_at"] is not None:
            return Verdict.CANCEL
        return Verdict.CONTINUE

    def _generate(self, job: ImageJob) -> "Drawing":
        """Run txt2img on its own (daemon) thread while following progress
        here; a daemon thread because a hung Forge must not keep a stopping
        worker alive.

        Raises the call's failure. Pipelined, returns as soon as Forge
        answers 200 (the picture is drawn), while the call's thread still
        reads and parses the answer: the next claim overlaps that."""
        drawing = Drawing()
        payload = txt2img_payload(job)

        def answered(status: int) -> None:
            if status == 200 and self.pipelined:
                self._hold_bookkeeping(True)
                drawing.answered.set()
                # The answer's body waits in the socket until the next
                # request is out: reading and parsing it now would slow
                # the claim (one interpreter lock for both threads).
                self._gpu_fed.wait(aftercommit.MAX_PAUSE_SECONDS)

        def call() -> None:
            try:
                # Bookkeeping goes on once the request is sent.
                drawing.value = self.forge.txt2img(
                    payload, on_sent=partial(self._hold_bookkeeping, False), on_answer=answered
                )
            except BaseException as exc:
                drawing.error = exc
            finally:
                drawing.finished.set()
                drawing.answered.set()

        started = time.monotonic()
        threading.Thread(target=call, name=f"txt2img-{job.id}", daemon=True).start()
        try:
            self._follow(job, drawing.answered, started)
        finally:
            elapsed = drawing.seconds = time.monotonic() - started
            if elapsed > settings.FORGE_SLOW_CALL_SECONDS:
                logger.warning(
                    "job %s: Forge call held the GPU for %.1fs (limit %gs)",
                    job.id,
                    elapsed,
                    settings.FORGE_SLOW_CALL_SECONDS,
                )
        if drawing.finished.is_set() and drawing.error is not None:
            raise drawing.error
        return drawing

    def _follow(self, job: ImageJob, finished: threading.Event, started: float) -> None:
        """Poll progress until txt2img returns; push every change, write at
        most once per `write_interval` (that write is also the heartbeat).
        Stop early, interrupting Forge, when the job is canceled, taken away
        (stuck guard, recovery) or the worker is stopping."""
        last_write = time.monotonic()
        last_preview = 0.0
        warned_slow = False
        may_claim_ahead = self.pipelined and self._next is None
        # Polls keep their rate whatever a poll's own work takes.
        next_poll = started + self.poll_interval
        while not finished.wait(max(next_poll - time.monotonic(), 0.0)):
            next_poll = max(next_poll + self.poll_interval, time.monotonic())
            if self.stop.is_set():
                self._interrupt_quietly()
                self._hand_back_held(job, "worker stopping")
                raise Abandoned
            verdict = self._verdict(job)
            if verdict is not Verdict.CONTINUE:
                self._interrupt_quietly()
                if verdict is Verdict.CANCEL:
                    do_cancel(job.id, worker_id=self.worker_id, allowed_from=[Status.PROCESSING])
                raise Abandoned
            now = time.monotonic()
            if self._next is not None and now - self._next_claimed > self._hold_seconds():
                self._give_back_next("the picture before it took longer than Forge expected")
                may_claim_ahead = False
            if not warned_slow and now - started > settings.FORGE_SLOW_CALL_SECONDS:
                warned_slow = True
                logger.warning(
                    "job %s: Forge call has held the GPU for more than %gs",
                    job.id,
                    settings.FORGE_SLOW_CALL_SECONDS,
                )
            with_image = previews.enabled() and now - last_preview >= settings.MAMI_PREVIEW_INTERVAL
            try:
                progress = self.forge.progress(with_image=with_image)
            except ForgeError as exc:
                # No answer, no heartbeat: the stuck guard sees a frozen Forge.
                logger.debug("job %s: progress poll failed: %s", job.id, exc)
                continue
            changed = previewing = False
            if with_image:
                last_preview = now
                if progress.active and progress.current_image:
                    previewing = self._take_preview(job, progress.current_image)
            if (
                may_claim_ahead
                and progress.active
                and progress.progress > 0
                and progress.eta_relative <= CLAIM_AHEAD_SECONDS
            ):
                self._claim_ahead(job)
                may_claim_ahead = self._next is None
            if progress.active:
                percent = max(0, min(int(progress.progress * 100), 99))
                if percent > job.progress:
                    job.progress = percent
                    job.eta_seconds = round(progress.eta_relative, 1)
                    changed = True
            due = now - last_write >= (self.write_interval if changed else HEARTBEAT_SECONDS)
            if due:
                if do_progress(
                    job.id,
                    progress=job.progress,
                    eta_seconds=job.eta_seconds,
                    worker_id=self.worker_id,
                ):
                    job.version += 1
                last_write = now
            elif changed and not previewing:
                # Else the preview's push carries this progress too.
                broadcast.job_progress(job)

    @staticmethod
    def _hold_seconds() -> float:
        return min(CLAIM_AHEAD_HOLD_SECONDS, settings.MAMI_STUCK_AFTER_SECONDS / 4)

    def _take_preview(self, job: ImageJob, encoded: str) -> bool:
        """Keep a new live preview for the card (not the one already shown:
        Forge repeats it until the next is made). Shrinking and storing it
        is bookkeeping, off the worker's thread: it took 10-20 ms, and an
        answer that came meanwhile kept the GPU waiting for it. True if
        handed over: its push then carries the card's progress as well."""
        seen = previews.fingerprint(encoded)
        if seen == self._preview_seen.get(job.id):
            return False
        self._preview_seen = {job.id: seen}
        self._note(partial(self._keep_preview, job, encoded))
        return True

    def _keep_preview(self, job: ImageJob, encoded: str) -> None:
        image = previews.shrink(encoded)
        if image is not None:
            # Forge may have answered while this shrank the preview: the
            # claim of the next job must not wait for this write.
            aftercommit.lane.wait_running()
            key = previews.store(job.id, image)
            if key is None:
                return  # the run ended meanwhile
            job.preview_key = key
        broadcast.job_progress(job)

    def _hold_bookkeeping(self, hold: bool) -> None:
        """From a txt2img answer until the next txt2img is sent (or the
        worker has nothing to send), the process's bookkeeping waits, so
        the claim in between runs alone and the GPU waits as little as
        possible. Pipelined (`run`) only; called from the worker's thread
        and its txt2img thread."""
        if not self.pipelined:
            return
        with self._hold_lock:
            if hold == self._holding:
                return
            self._holding = hold
            if hold:
                self._gpu_fed.clear()
            else:
                self._gpu_fed.set()
        if hold:
            aftercommit.lane.pause()
        else:
            aftercommit.lane.resume()

    def finish(self, job: ImageJob, drawing: "Drawing") -> None:
        """Save the picture and complete the job (the finisher's work when
        pipelined). A picture that cannot be read or saved fails the job;
        one lost on its way after Forge answered is drawn again."""
        try:
            self._store(job, drawing.result())
        except ForgeError as exc:
            if exc.transient:
                self._hand_back(job, f"picture lost after Forge answered ({exc.code})", exc.code)
            else:
                self._fail(job, exc.code, exc.detail)
        except Exception as exc:
            logger.exception("job %s: storing the picture failed", job.id)
            _keep_connection_usable()
            self._fail(job, ErrorCode.UNKNOWN, "".join(traceback.format_exception(exc)))

    def _store(self, job: ImageJob, result: Txt2ImgResult) -> None:
        drawn = result.info.get("sd_model_name")
        if job.model and drawn != job.model:
            # Forge drops a checkpoint it does not know without a word and
            # draws with the one it has: that picture is not what was asked.
            self._fail(
                job,
                ErrorCode.WRONG_MODEL,
                f"asked for model {job.model!r}, Forge drew with {drawn!r}",
            )
            return
        data = result.picture()
        filename = job.image.field.generate_filename(job, f"{job.id}.{image_extension(data)}")
        name = default_storage.save(filename, ContentFile(data))
        if not do_complete(
            job.id, image_name=name, seed=result.seed, info=result.info, worker_id=self.worker_id
        ):
            # Canceled or taken away while Forge was drawing.
            default_storage.delete(name)

    def _fail(self, job: ImageJob, code: str, detail: str) -> None:
        with translation.override("en"):
            message = user_message(code)
        do_fail(job.id, code=code, user_message=message, detail=detail, worker_id=self.worker_id)


def _leave_checkpoints_to_others() -> None:
    """SQLite copies its write-ahead log back into the database (with an
    fsync) in whichever commit finds it long: never in the claim between
    two pictures, but in the finisher's or the after-commit lane's."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint = 0")


def _call(task: Any) -> None:
    task()


def _keep_connection_usable() -> None:
    """Keep the worker's database connection from job to job (opening one
    cost 15-50 ms of GPU time per job); replace it only once it failed."""
    if connection.errors_occurred:
        if connection.connection is not None and connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


class Drawing:
    """One txt2img call, made on a thread of its own."""

    def __init__(self) -> None:
        self.value: Txt2ImgResult | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        # From the request until Forge answered.
        self.seconds = 0.0
        # Forge answered 200 (pipelined), or the call finished.
        self.answered = threading.Event()

    def result(self) -> Txt2ImgResult:
        """The parsed answer, once read; raises the call's failure."""
        self.finished.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class Finisher:
    """Stores a drawn picture and completes its job on a thread of its own,
    while the worker's thread has the GPU draw the next one.

    The job stays processing, held by this worker, until its image is
    stored: a crash in between hands it back to the queue like any other
    job the worker held, and the stuck guard sees its heartbeat. It waits
    while the after-commit lane is paused, so it never competes with the
    next claim.
    """

    _STOP = object()

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._pictures: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: ImageJob, drawing: Drawing) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"mami-finisher:{self.worker.worker_id}", daemon=True
            )
            self._thread.start()
        self._pictures.put((job, drawing))

    def close(self) -> None:
        """Store every picture handed over so far, then stop."""
        if self._thread is not None:
            self._pictures.put(self._STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            while (item := self._pictures.get()) is not self._STOP:
                job, drawing = item
                aftercommit.lane.wait_running()
                self.worker.finish(job, drawing)
        finally:
            close_old_connections()
