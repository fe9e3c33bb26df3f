"""What rendering every queued card costs as the queue grows (what a queue
move cost before queue.places; a page or a reconnect renders its own cards
the same way), and one claim. Runs on a throwaway SQLite database.
bench/queue_moves.py measures a queue move as it is now.

    .venv/bin/python bench/queue_refresh.py [sizes...]
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mami.settings")
os.environ["MAMI_SQLITE_PATH"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")
os.environ["REDIS_URL"] = ""
os.environ.setdefault("MAMI_LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from chat.actions import post_message  # noqa: E402
from chat.intents import ImageRequest  # noqa: E402
from chat.models import Conversation  # noqa: E402
from imagejobs import fair_order, positions  # noqa: E402
from imagejobs.cards import render_card_languages  # noqa: E402
from imagejobs.models import ImageJob  # noqa: E402
from imagejobs.transitions import do_cancel, do_claim_next  # noqa: E402

# One user's thousand pictures are the point here, not the fair-use limits.
settings.MAMI_MAX_UNFINISHED_PER_USER = 0
settings.MAMI_MAX_PICTURES_PER_MINUTE = 0


def timed(function, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def refresh() -> None:
    snapshot = positions.snapshot()
    for job in fair_order.queued_jobs().select_related("message"):
        render_card_languages(job, snapshot)


def main(sizes: list[int]) -> None:
    call_command("migrate", verbosity=0)
    users = [get_user_model().objects.create_user(f"u{n}") for n in range(10)]
    conversations = [Conversation.objects.create(owner=u) for u in users]
    print(
        f"{'queued':>7} {'snapshot ms':>12} {'refresh ms':>11} {'per card ms':>12} {'claim ms':>9}"
    )
    made = 0
    for size in sizes:
        while made < size:
            post_message(conversations[made % 10], "/image fox", ImageRequest(f"fox {made}"))
            made += 1
        snap = timed(positions.snapshot)
        full = timed(refresh, repeat=3)

        def claim_and_put_back() -> None:
            job = do_claim_next("bench")
            do_cancel(job.id)

        claim = timed(claim_and_put_back, repeat=3)
        made -= 3  # the claims above took three jobs out of the queue
        count = ImageJob.objects.filter(status="queued").count()
        print(
            f"{count:>7} {snap * 1000:>12.1f} {full * 1000:>11.1f} "
            f"{full * 1000 / max(count, 1):>12.2f} {claim * 1000:>9.1f}"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 100, 500, 1000])
    from imagejobs.broadcast import flush_queue_refresh

    flush_queue_refresh()
