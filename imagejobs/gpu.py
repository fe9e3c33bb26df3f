"""What a worker knows of its GPU, for the scheduler: the checkpoints its
Forge has, the one it has loaded, and what a picture and a switch of
model cost there, learned from the pictures it draws."""

import logging
import time

from . import scheduling, workers
from .forge import ForgeClient, ForgeError
from .models import ImageJob

logger = logging.getLogger(__name__)

# Forge scans its checkpoints at start; a worker reads them at its own
# start and this often after (a Forge restarted with new files).
CHECKPOINTS_EVERY_SECONDS = 60.0

# How much each picture moves the learned draw and switch times.
LEARNING = 0.3


class Gpu:
    def __init__(self) -> None:
        # What its Forge has loaded ("": not known) and has (None: not known).
        self.loaded = ""
        self.models: frozenset[str] | None = None
        self.seconds_per_step: float | None = None
        self.switch_seconds: float | None = None
        self._checkpoints_read = float("-inf")

    def checkpoints_due(self) -> bool:
        return time.monotonic() - self._checkpoints_read >= CHECKPOINTS_EVERY_SECONDS

    def read_checkpoints(self, forge: ForgeClient, worker_id: str) -> None:
        """Record which checkpoints the worker's Forge has and which one it
        draws with now; kept as they were if Forge does not answer."""
        self._checkpoints_read = time.monotonic()
        try:
            found = forge.checkpoints()
        except ForgeError as exc:
            logger.info("worker %s: could not read Forge's checkpoints: %s", worker_id, exc)
            return
        workers.record_checkpoints(worker_id, found)
        self.models = frozenset(m.model_name for m in found.models) or None
        self.loaded = found.current

    def loaded_after(self, job: ImageJob) -> str:
        """The model Forge has loaded once it has drawn `job`. Forge ignores
        a checkpoint it does not have (and the picture fails as drawn with
        the wrong model): nothing was loaded then."""
        known = self.models is None or job.model in self.models
        return job.model if job.model and known else self.loaded

    def drew(self, job: ImageJob, seconds: float) -> bool:
        """Forge has drawn `job` in `seconds`: it now has the job's model
        loaded (asked per request, kept afterwards). Learn what a switch
        costs from the pictures that needed one. True if the loaded model
        changed."""
        loaded = self.loaded_after(job)
        steps = max(job.steps, 1)
        if not scheduling.needs_switch(self.loaded, loaded):
            rate = seconds / steps
            self.seconds_per_step = _learn(self.seconds_per_step, rate)
        elif self.seconds_per_step is not None:
            extra = max(seconds - steps * self.seconds_per_step, 0.0)
            self.switch_seconds = _learn(self.switch_seconds, extra)
        changed = loaded != self.loaded
        self.loaded = loaded
        return changed


def _learn(before: float | None, seen: float) -> float:
    return seen if before is None else before + (seen - before) * LEARNING
