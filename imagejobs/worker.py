"""The GPU worker: takes queued jobs one at a time and runs them on Forge,
surviving whatever Forge and the machine do.

A job's life on a worker, in order (docs/architecture.md tells it too):
`Worker.step` claims it (or takes the one claimed ahead), `Worker.process`
runs it: `drawing.Drawing.attempt` calls Forge and follows the call;
a failure goes to `failures.decide` and `Worker._carry_out`; a picture goes
to `finisher.Finisher`, which stores it and completes the job.
"""

import logging
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from mami import push
from mami.db_outage import OUTAGE_ERRORS, database, drop_connection, outage_guard

from . import aftercommit, broadcast, failures, spool, sweeps, tracing, wakeup, workers
from .bookkeeping import Bookkeeping
from .circuit import CircuitBreaker
from .claim_ahead import ClaimAhead
from .drawing import Abandoned, Drawing, read_verdict, settle_forge
from .fair_order import queued_jobs
from .finisher import Finisher, fail_unexpectedly
from .forge import ForgeClient, ForgeError
from .gpu import Gpu
from .models import ImageJob, Status
from .transitions import (
    do_cancel,
    do_claim_next,
    do_fail,
    do_requeue,
    do_retry_attempt,
    record_started,
)

logger = logging.getLogger(__name__)


class Worker:
    """Processes the queue serially against one Forge server.

    `step()` does one unit of work and says whether there was any, so tests
    drive it directly and `run()` only loops, sweeps and waits.

    Pipelined (`runworker`, the embedded worker), the GPU never waits for
    bookkeeping: a finished picture is stored and completed by the
    finisher thread while the next one is drawn, the next job is claimed
    while the GPU still draws, and what follows a commit runs on the
    after-commit lane. Not pipelined, a `step()` has finished all its work
    when it returns.
    """

    def __init__(
        self,
        forge_url: str,
        *,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
        pipelined: bool = False,
    ) -> None:
        self.worker_id = worker_id or workers.default_worker_id(forge_url)
        self.forge = ForgeClient(forge_url, timeout=settings.FORGE_TIMEOUT)
        self.stop = stop or threading.Event()
        self.pipelined = pipelined
        self.gpu = Gpu()
        self.breaker = CircuitBreaker(
            threshold=settings.MAMI_CIRCUIT_THRESHOLD,
            open_seconds=settings.MAMI_CIRCUIT_OPEN_SECONDS,
        )
        self.bookkeeping = Bookkeeping(pipelined=pipelined)
        self.ahead = ClaimAhead(self.worker_id, self.gpu)
        self.finisher = Finisher(self.worker_id, pipelined=pipelined)
        self._last_sweep = float("-inf")
        self._sweep_lock = threading.Lock()
        # Set when a job may be waiting (a commit in this process, a NOTIFY
        # from another) or when stopping; the idle wait ends at once then.
        self._wake = threading.Event()
        self._idle = False
        # Jobs this worker held when the database went away mid-draw: handed
        # back to the head of the queue once it returns.
        self._cut_off: list[uuid.UUID] = []

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
        workers.register(self.worker_id, self.forge.base_url)
        self.read_checkpoints()
        heart = threading.Thread(target=self._beat, name="mami-worker-heartbeat", daemon=True)
        heart.start()
        wakeup.subscribe(self._woken)
        threading.Thread(
            target=self._relay_stop, name="mami-worker-stop-relay", daemon=True
        ).start()
        if connection.vendor == "postgresql":
            wakeup.PostgresListener(self.stop).start()
        logger.info("worker %s started against %s", self.worker_id, self.forge.base_url)
        _leave_wal_checkpoints_to_others()
        try:
            self.recover_on_start()
            while not self.stop.is_set():
                # Cleared before looking, so a job committed from here on
                # ends the idle wait below at once.
                self._wake.clear()
                worked = False
                try:
                    with outage_guard(f"worker {self.worker_id}"):
                        worked = self.step()
                except Exception:
                    # A bug in one step must not kill the GPU box's only worker.
                    logger.exception("worker %s: step failed", self.worker_id)
                if database.down:
                    # Nothing is claimed or failed while it is away.
                    self.stop.wait(database.backoff())
                    continue
                if worked:
                    continue
                self.bookkeeping.release()
                if until_idle and not queued_jobs().exists():
                    break
                self._idle = True
                self._wake.wait(self._idle_wait())
                self._idle = False
        finally:
            self.stop.set()
            self.bookkeeping.release()
            self.ahead.give_back("worker stopping")
            self.finisher.close()
            heart.join(timeout=10)
            workers.unregister(self.worker_id)
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
        while not self.stop.wait(database.backoff() or interval):
            try:
                with outage_guard("heartbeat", probe=True):
                    with tracing.tracer.span("heartbeat"):
                        recreated = workers.beat(
                            self.worker_id,
                            self.forge.base_url,
                            channel_layer_failures=push.layer_health.failures,
                        )
                    self.maybe_sweep()
                    if recreated or self.gpu.checkpoints_due():
                        self.read_checkpoints()
            except Exception:
                logger.exception("worker %s: heartbeat or sweep failed", self.worker_id)
        close_old_connections()

    def read_checkpoints(self) -> None:
        self.gpu.read_checkpoints(self.forge, self.worker_id)

    def _relay_stop(self) -> None:
        """A stop ends the idle wait at once."""
        self.stop.wait()
        self._wake.set()

    def _woken(self) -> None:
        """A job was queued (called from the committing thread). An idle
        worker holds the process's bookkeeping (that commit's own pushes
        among it) until its txt2img is sent."""
        if self._idle:
            self.bookkeeping.hold(True)
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
        # Pictures a predecessor stored while the database was away complete
        # their jobs first, before the jobs it left are handed back.
        self.finisher.complete_spooled()
        kept = frozenset(uuid.UUID(entry.job_id) for entry in spool.waiting(self.worker_id))
        sweeps.recover_orphaned_jobs(restarted_worker_id=self.worker_id, kept=kept)
        self._last_sweep = time.monotonic()

    def maybe_sweep(self) -> None:
        """Every sweep a worker runs (sweeps.run_all), when due."""
        with self._sweep_lock:
            if time.monotonic() - self._last_sweep < settings.MAMI_SWEEP_INTERVAL:
                return
            self._last_sweep = time.monotonic()
        sweeps.run_all()

    def step(self) -> bool:
        """One unit of work; False if there was nothing to do."""
        tracing.tracer.mark("step")
        aftercommit.keep_connection_usable()
        if self.finisher.spooled:
            self.finisher.complete_spooled()
        for cut_off in (self._cut_off, self.finisher.cut_off):
            while cut_off:
                # Held when the database went away, with no picture.
                do_requeue(cut_off[0], reason="database away", worker_id=self.worker_id)
                cut_off.pop(0)
        if self.breaker.is_open:
            if not self.breaker.ready_to_probe():
                return False
            self.probe()
            return True
        job = self.ahead.take()
        if job is not None:
            # Its run is timed from now, not from its claim.
            at = timezone.now()
            self.bookkeeping.note(partial(record_started, job.id, worker_id=self.worker_id, at=at))
        else:
            with tracing.tracer.span("claim"):
                job = do_claim_next(self.worker_id, loaded=self.gpu.loaded, models=self.gpu.models)
            if job is None:
                return False
        # For the admin's overview only: off the GPU's path, in order.
        self.bookkeeping.note(partial(workers.set_current_job, self.worker_id, job.id))
        try:
            self.process(job)
        finally:
            self.bookkeeping.note(partial(workers.set_current_job, self.worker_id, None))
        return True

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
        workers.save_circuit(self.worker_id, self.breaker.state, self.breaker.failures, open_until)
        # Queued cards say whether the service is available.
        broadcast.queue_changed()

    # -- one job ----------------------------------------------------------

    def process(self, job: ImageJob) -> None:
        """Call Forge until the job is done, failed, canceled or handed back.

        Transient failures are retried with backoff up to FORGE_MAX_ATTEMPTS;
        when Forge can't be reached at all the job is never failed: it is
        retried until the circuit opens and then handed back to the head of
        the queue, where it waits for Forge to return (failures.decide).
        """
        drawing = Drawing(
            job,
            forge=self.forge,
            worker_id=self.worker_id,
            stop=self.stop,
            bookkeeping=self.bookkeeping,
            ahead=self.ahead,
        )
        while True:
            try:
                call = drawing.attempt()
            except Abandoned:
                return
            except ForgeError as exc:
                if self._after_failure(job, exc):
                    continue
                return
            except OUTAGE_ERRORS as exc:
                # Not the job's fault: it goes back to the head of the queue
                # once the database returns (`step`).
                drop_connection()
                database.failed(f"drawing job {job.id}", exc)
                self._cut_off.append(job.id)
                return
            except Exception as exc:
                logger.exception("job %s failed unexpectedly", job.id)
                fail_unexpectedly(job, self.worker_id, exc)
                return
            if self.breaker.record_success():
                self._publish_circuit()
            if self.gpu.drew(job, call.seconds):
                record = partial(
                    workers.record_loaded, self.worker_id, self.gpu.loaded, self.gpu.switch_seconds
                )
                self.bookkeeping.note(record)
            self.finisher.take(job, call)
            return

    def _after_failure(self, job: ImageJob, exc: ForgeError) -> bool:
        """Settle Forge and count the failure, then carry out what
        `failures.decide` makes of it; True to call Forge again."""
        logger.warning(
            "job %s attempt %d failed: %s", job.id, job.attempts, exc, extra={"job": job.id}
        )
        settled = not failures.abandoned_at_forge(exc.code, outage=exc.outage) or settle_forge(
            self.forge, self.worker_id, self.stop
        )
        # A Forge still busy after the call given up on fails the job at
        # once (decide), without counting against the service.
        if settled and exc.transient and self.breaker.record_failure():
            logger.error(
                "worker %s: %d Forge failures in a row; holding the queue for %gs",
                self.worker_id,
                self.breaker.failures,
                self.breaker.open_seconds,
            )
            self._publish_circuit()
        situation = failures.Situation(
            code=exc.code,
            detail=exc.detail,
            transient=exc.transient,
            outage=exc.outage,
            attempts=job.attempts,
            max_attempts=settings.FORGE_MAX_ATTEMPTS,
            backoff=tuple(settings.FORGE_RETRY_BACKOFF),
            circuit_open=self.breaker.is_open,
            stopping=self.stop.is_set(),
            settled=settled,
        )
        decision = failures.decide(situation)
        if isinstance(decision, failures.Backoff):
            # Then decide again, knowing whether the job is still ours.
            stopping = self.stop.wait(decision.seconds)
            verdict = failures.Verdict.CONTINUE if stopping else read_verdict(job, self.worker_id)
            situation = replace(situation, backed_off=True, stopping=stopping, verdict=verdict)
            decision = failures.decide(situation)
        return self._carry_out(job, decision, exc.code)

    def _carry_out(self, job: ImageJob, decision: failures.Decision, code: str) -> bool:
        match decision:
            case failures.Retry():
                reason = f"attempt {job.attempts + 1} after {code}"
                if not do_retry_attempt(job.id, worker_id=self.worker_id, code=code, reason=reason):
                    return False
                job.attempts += 1
                job.version += 1
                job.progress = 0
                job.eta_seconds = None
                return True
            case failures.Fail(code=failed_with, detail=detail):
                do_fail(job.id, code=failed_with, detail=detail, worker_id=self.worker_id)
            case failures.HandBack(reason=reason, code=handed_code):
                # Both go before everything queued, the next one first.
                self.ahead.give_back(reason, handed_code)
                do_requeue(job.id, reason=reason, worker_id=self.worker_id, code=handed_code)
            case failures.Cancel():
                do_cancel(job.id, worker_id=self.worker_id, allowed_from=[Status.PROCESSING])
        return False


def _leave_wal_checkpoints_to_others() -> None:
    """SQLite copies its write-ahead log back into the database (with an
    fsync) in whichever commit finds it long: never in the claim between
    two pictures, but in the finisher's or the after-commit lane's."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
