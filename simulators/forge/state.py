"""The simulated Forge's state: its one generation lock, what /progress
reports, and the counts tests and benchmarks read back."""

import threading
from dataclasses import dataclass, field


class FifoLock:
    """Serves waiters in arrival order, like Forge's queue_lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


@dataclass
class SimState:
    job: str = ""
    job_count: int = 0
    job_no: int = 0
    job_timestamp: str = "0"
    sampling_step: int = 0
    sampling_steps: int = 0
    interrupted: bool = False
    started: float = 0.0
    # Live previews: every n steps (0: off), of what.
    preview_every: int = 0
    preview_of: tuple[str, int, int, int] = ("", 0, 64, 64)


@dataclass
class SimStats:
    txt2img_requests: int = 0
    completed: int = 0
    interrupted: int = 0
    failed: int = 0
    in_flight_generations: int = 0
    max_concurrent_generations: int = 0
    # txt2img requests open at once, waiting on the lock or generating: more
    # than one means two clients were driving this Forge.
    in_flight_requests: int = 0
    max_concurrent_requests: int = 0
    prompts_completed: list[str] = field(default_factory=list)
    # (prompt, started, ended) of every generation, in wall-clock seconds.
    generations: list[tuple[str, float, float]] = field(default_factory=list)
    # (received, answered) of every txt2img call, in wall-clock seconds:
    # from its request line read to its answer handed to the network. The time
    # between one answer and the next request is the client's own.
    calls: list[tuple[float, float]] = field(default_factory=list)
    # Checkpoint loads a request caused, and POST /options calls (a client
    # that changes the model for every user of this Forge makes those).
    switches: int = 0
    options_writes: int = 0
    # The model each completed picture was drawn with, in order.
    models_drawn: list[str] = field(default_factory=list)
