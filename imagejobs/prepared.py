"""A cursor for the statements between two pictures (the claim).

On PostgreSQL each of them is prepared once per connection: planning the
fair order's query, and the UPDATE of a row with six indexes, took longer
than running them (about 1 ms a statement, bench/gpu_gap.py). Elsewhere it
is Django's cursor. Psycopg prepares at the protocol level, which
PgBouncer (1.21+) passes through in transaction pooling.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connection


class _Prepared:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[object]) -> Any:
        return self._cursor.execute(sql, params, prepare=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@contextmanager
def prepared_cursor() -> Iterator[Any]:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        yield _Prepared(cursor)
