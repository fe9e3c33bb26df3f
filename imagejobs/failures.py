"""What a failed Forge call means for its job: a pure decision, so the
policy reads (and is tested) as one table; the worker carries it out.

The inputs are everything the worker knows when a call fails: the error
as classified once (`ForgeError`: transient or not, an outage or not), the
job's attempts so far, whether Forge settled after a call it gave up on,
the circuit breaker, whether the worker is stopping, and, once it has
waited out a backoff, whether the job is still its to draw.
"""

from dataclasses import dataclass
from enum import Enum

from .errors import ErrorCode


class Verdict(Enum):
    """Is a job still this worker's to draw?"""

    CONTINUE = "continue"
    CANCEL = "cancel"  # its owner asked to cancel it
    GONE = "gone"  # taken away (stuck guard, recovery) or finished elsewhere


@dataclass(frozen=True)
class Situation:
    code: str
    detail: str
    transient: bool
    # Forge could not be reached at all: the job waits for the service
    # and is never failed for it.
    outage: bool
    attempts: int
    max_attempts: int
    backoff: tuple[float, ...]
    circuit_open: bool
    stopping: bool
    # False if Forge was still busy after the call given up on was
    # interrupted (see `abandoned_at_forge`).
    settled: bool = True
    backed_off: bool = False
    verdict: Verdict = Verdict.CONTINUE


@dataclass(frozen=True)
class Backoff:
    """Wait this long, then decide again (`backed_off`, a fresh verdict)."""

    seconds: float


@dataclass(frozen=True)
class Retry:
    """Call Forge again now, as the next attempt."""


@dataclass(frozen=True)
class Fail:
    code: str
    detail: str


@dataclass(frozen=True)
class HandBack:
    """Back to the head of the queue, for this or another worker."""

    reason: str
    code: str = ""


@dataclass(frozen=True)
class Cancel:
    """Its owner asked meanwhile: the job ends canceled."""


@dataclass(frozen=True)
class Drop:
    """No longer this worker's job: nothing more to do with it."""


Decision = Backoff | Retry | Fail | HandBack | Cancel | Drop


def abandoned_at_forge(code: str, *, outage: bool) -> bool:
    """The request reached Forge and the worker gave up on it: Forge may
    still draw it, or hold it behind its lock, for nobody."""
    return code == ErrorCode.FORGE_TIMEOUT or (code == ErrorCode.FORGE_UNREACHABLE and not outage)


def backoff_seconds(attempts: int, backoff: tuple[float, ...]) -> float:
    """The wait before attempt `attempts + 1`: the list's last entry once
    attempts outnumber it."""
    steps = backoff or (1.0,)
    return steps[min(max(attempts, 1), len(steps)) - 1]


def decide(s: Situation) -> Decision:
    if not s.settled:
        return Fail(s.code, f"{s.detail}; Forge still busy afterwards")
    if s.stopping:
        return HandBack("worker stopping")
    if s.transient and s.circuit_open:
        return HandBack(f"Forge unavailable ({s.code})", s.code)
    if not s.transient or (not s.outage and s.attempts >= s.max_attempts):
        return Fail(s.code, s.detail)
    if not s.backed_off:
        return Backoff(backoff_seconds(s.attempts, s.backoff))
    if s.verdict is Verdict.CANCEL:
        return Cancel()
    if s.verdict is Verdict.GONE:
        return Drop()
    return Retry()
