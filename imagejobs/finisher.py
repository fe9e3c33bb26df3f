"""The end of a job's life on a worker: its picture stored and the job
completed, or the job failed; when pipelined, on a thread of its own
while the worker's thread has the GPU draw the next one."""

import logging
import queue
import threading
import traceback
import uuid
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections

from mami.db_outage import OUTAGE_ERRORS, database, drop_connection

from . import aftercommit, spool, tracing
from .drawing import Call
from .errors import ErrorCode
from .forge import ForgeError, Txt2ImgResult, image_extension
from .models import ImageJob
from .transitions import do_complete, do_fail, do_requeue

logger = logging.getLogger(__name__)


def fail_unexpectedly(job: ImageJob, worker_id: str, exc: BaseException) -> None:
    """A bug, not Forge: the job fails with the traceback for staff."""
    detail = "".join(traceback.format_exception(exc))
    do_fail(job.id, code=ErrorCode.UNKNOWN, detail=detail, worker_id=worker_id)


class Finisher:
    """Pipelined, the job stays processing, held by this worker, until its
    image is stored: a crash in between hands it back to the queue like any
    other job the worker held, and the stuck guard sees its heartbeat. The
    thread waits while the after-commit lane is paused, so it never
    competes with the next claim. Not pipelined, `take` finishes inline."""

    _STOP = object()

    def __init__(self, worker_id: str, *, pipelined: bool) -> None:
        self.worker_id = worker_id
        self.pipelined = pipelined
        # Pictures stored whose job the database was not there to complete.
        self.spooled = False
        self._pictures: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def take(self, job: ImageJob, call: Call) -> None:
        if not self.pipelined:
            self.finish(job, call)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"mami-finisher:{self.worker_id}", daemon=True
            )
            self._thread.start()
        self._pictures.put((job, call))

    def close(self) -> None:
        """Store every picture handed over so far, then stop."""
        if self._thread is not None:
            self._pictures.put(self._STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            while (item := self._pictures.get()) is not self._STOP:
                job, call = item
                aftercommit.lane.wait_running()
                with tracing.tracer.span("picture stored (finisher)"):
                    self.finish(job, call)
        finally:
            close_old_connections()

    def finish(self, job: ImageJob, call: Call) -> None:
        """Save the picture and complete the job. A picture that cannot be
        read or saved fails the job; one lost on its way after Forge
        answered is drawn again."""
        try:
            self._store(job, call.result())
        except ForgeError as exc:
            if exc.transient:
                reason = f"picture lost after Forge answered ({exc.code})"
                do_requeue(job.id, reason=reason, worker_id=self.worker_id, code=exc.code)
            else:
                do_fail(job.id, code=exc.code, detail=exc.detail, worker_id=self.worker_id)
        except OUTAGE_ERRORS as exc:
            # Before the picture was stored: the job stays held by this
            # worker, which hands it back once the database returns.
            drop_connection()
            database.failed(f"finishing job {job.id}", exc)
        except Exception as exc:
            logger.exception("job %s: storing the picture failed", job.id)
            aftercommit.keep_connection_usable()
            fail_unexpectedly(job, self.worker_id, exc)

    def complete_spooled(self) -> None:
        """Complete the jobs of the pictures this worker spooled (at start,
        and after an outage); each stays spooled until that is done."""
        for entry in spool.waiting(self.worker_id):
            completed = do_complete(
                uuid.UUID(entry.job_id),
                image_name=entry.image_name,
                seed=entry.seed,
                info=entry.info,
                worker_id=self.worker_id,
            )
            if not completed:
                # Canceled or taken away meanwhile.
                default_storage.delete(entry.image_name)
            spool.forget(entry)
            logger.info(
                "job %s: spooled picture %s", entry.job_id, "stored" if completed else "dropped"
            )
        self.spooled = False

    def _store(self, job: ImageJob, result: Txt2ImgResult) -> None:
        drawn = result.info.get("sd_model_name")
        if job.model and drawn != job.model:
            # Forge drops a checkpoint it does not know without a word and
            # draws with the one it has: that picture is not what was asked.
            detail = f"asked for model {job.model!r}, Forge drew with {drawn!r}"
            do_fail(job.id, code=ErrorCode.WRONG_MODEL, detail=detail, worker_id=self.worker_id)
            return
        data = result.picture()
        filename = job.image.field.generate_filename(job, f"{job.id}.{image_extension(data)}")
        name = default_storage.save(filename, ContentFile(data))
        try:
            completed = do_complete(
                job.id,
                image_name=name,
                seed=result.seed,
                info=result.info,
                worker_id=self.worker_id,
            )
        except OUTAGE_ERRORS as exc:
            drop_connection()
            database.failed(f"completing job {job.id}", exc)
            spool.keep(spool.Spooled(str(job.id), name, result.seed, result.info, self.worker_id))
            self.spooled = True
            return
        if not completed:
            # Canceled or taken away while Forge was drawing.
            default_storage.delete(name)
