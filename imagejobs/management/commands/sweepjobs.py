from typing import Any

from django.core.management.base import BaseCommand

from imagejobs.sweeps import fail_stuck_jobs, recover_orphaned_jobs


class Command(BaseCommand):
    help = (
        "Run the stuck-job guard and dead-worker recovery once (every worker also "
        "runs them; this is for cron)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stuck = fail_stuck_jobs()
        recovered = recover_orphaned_jobs()
        self.stdout.write(f"Stuck jobs failed: {len(stuck)}; jobs recovered: {len(recovered)}")
