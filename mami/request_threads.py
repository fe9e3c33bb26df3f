"""A few long-lived threads for the sync side of HTTP requests.

Django's ASGI handler gives every request a thread of its own for its
sync code (middleware, views, the ORM), started for it and ended after
it, and with the thread goes the request's database connection: each
request paid for a new thread and a new connection, about a third of a
small request's cost here. Under WSGI a thread and its connection serve
request after request; this gives ASGI the same. Each request still has
one thread to itself while its sync code runs: it takes the least busy
of MAMI_REQUEST_THREADS, so a slow request holds up others only when all
are busy.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext


class RequestThreads:
    def __init__(self, app: Any, threads: int) -> None:
        self.app = app
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mami-request-{n}")
            for n in range(max(threads, 1))
        ]
        # Requests on each thread now; read and written on the event loop only.
        self.busy = [0] * len(self.executors)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chosen = min(range(len(self.busy)), key=self.busy.__getitem__)
        self.busy[chosen] += 1
        try:
            # Django's own ThreadSensitiveContext inside finds this one set
            # and keeps it.
            async with ThreadSensitiveContext(executor=self.executors[chosen]):
                await self.app(scope, receive, send)
        finally:
            self.busy[chosen] -= 1
