from typing import Any

from django.core.management.base import BaseCommand

from imagejobs.sweeps import run_all


class Command(BaseCommand):
    help = (
        "Run every sweep a worker runs once: the stuck-job guard, dead-worker "
        "recovery and the guards of apps built on the queue (the chat's "
        "orphaned replies). Every worker runs them too; this is for cron."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = run_all()
        self.stdout.write("; ".join(f"{what}: {count}" for what, count in done.items()))
