"""What a worker knows of its GPU, for the scheduler: the checkpoints its
Forge has, the one it has loaded, and what a picture and a switch of
model cost there, learned from the pictures it draws."""

from . import scheduling
from .models import ImageJob

# How much each picture moves the learned draw and switch times.
LEARNING = 0.3


class Gpu:
    def __init__(self) -> None:
        # What its Forge has loaded ("": not known) and has (None: not known).
        self.loaded = ""
        self.models: frozenset[str] | None = None
        self.seconds_per_step: float | None = None
        self.switch_seconds: float | None = None

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
