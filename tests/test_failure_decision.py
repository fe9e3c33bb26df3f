"""The failure policy as a table: what a failed Forge call means for its
job, from what the worker knows at that moment (no Forge, no database)."""

from dataclasses import replace

import pytest

from imagejobs.errors import ErrorCode
from imagejobs.failures import (
    Backoff,
    Cancel,
    Decision,
    Drop,
    Fail,
    HandBack,
    Retry,
    Situation,
    Verdict,
    abandoned_at_forge,
    backoff_seconds,
    decide,
)

# A transient failure on the first of three attempts, Forge settled,
# circuit closed, not stopping, not yet backed off.
FIRST_TRY = Situation(
    code=ErrorCode.FORGE_ERROR,
    detail="HTTP 503",
    transient=True,
    outage=False,
    attempts=1,
    max_attempts=3,
    backoff=(1.0, 2.0, 4.0),
    circuit_open=False,
    stopping=False,
)
OUTAGE = replace(FIRST_TRY, code=ErrorCode.FORGE_UNREACHABLE, outage=True, detail="refused")
PERMANENT = replace(FIRST_TRY, code=ErrorCode.INVALID_REQUEST, transient=False, detail="HTTP 422")

TABLE: list[tuple[str, Situation, Decision]] = [
    ("a transient error backs off first", FIRST_TRY, Backoff(1.0)),
    ("the second attempt waits longer", replace(FIRST_TRY, attempts=2), Backoff(2.0)),
    (
        "past the list, the last wait repeats",
        replace(FIRST_TRY, attempts=7, max_attempts=9),
        Backoff(4.0),
    ),
    ("after the wait, the job is called again", replace(FIRST_TRY, backed_off=True), Retry()),
    (
        "canceled during the wait: canceled",
        replace(FIRST_TRY, backed_off=True, verdict=Verdict.CANCEL),
        Cancel(),
    ),
    (
        "taken away during the wait: nothing more to do",
        replace(FIRST_TRY, backed_off=True, verdict=Verdict.GONE),
        Drop(),
    ),
    (
        "stopped during the wait: handed back",
        replace(FIRST_TRY, backed_off=True, stopping=True),
        HandBack("worker stopping"),
    ),
    (
        "the last attempt fails the job",
        replace(FIRST_TRY, attempts=3),
        Fail("forge_error", "HTTP 503"),
    ),
    ("a permanent error fails at once", PERMANENT, Fail("invalid_request", "HTTP 422")),
    (
        "an outage never uses up attempts",
        replace(OUTAGE, attempts=50),
        Backoff(4.0),
    ),
    (
        "an open circuit hands the job back to wait for Forge",
        replace(OUTAGE, circuit_open=True),
        HandBack("Forge unavailable (forge_unreachable)", "forge_unreachable"),
    ),
    (
        "an open circuit does not keep a permanent error",
        replace(PERMANENT, circuit_open=True),
        Fail("invalid_request", "HTTP 422"),
    ),
    ("stopping hands the job back", replace(FIRST_TRY, stopping=True), HandBack("worker stopping")),
    (
        "stopping wins over a permanent error",
        replace(PERMANENT, stopping=True),
        HandBack("worker stopping"),
    ),
    (
        "a Forge still busy after the call given up on fails the job, stopping or not",
        replace(FIRST_TRY, code=ErrorCode.FORGE_TIMEOUT, settled=False, stopping=True),
        Fail("forge_timeout", "HTTP 503; Forge still busy afterwards"),
    ),
]


@pytest.mark.parametrize(
    ("situation", "decision"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_what_a_failed_call_means(situation: Situation, decision: Decision) -> None:
    assert decide(situation) == decision


def test_a_call_given_up_on_is_one_forge_may_still_draw() -> None:
    assert abandoned_at_forge(ErrorCode.FORGE_TIMEOUT, outage=False)
    assert abandoned_at_forge(ErrorCode.FORGE_UNREACHABLE, outage=False)  # reset mid-answer
    assert not abandoned_at_forge(ErrorCode.FORGE_UNREACHABLE, outage=True)  # never connected
    assert not abandoned_at_forge(ErrorCode.FORGE_ERROR, outage=False)  # Forge answered


def test_an_empty_backoff_list_waits_a_second() -> None:
    assert backoff_seconds(1, ()) == 1.0
