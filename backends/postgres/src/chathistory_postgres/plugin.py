"""The entry point of backend ``postgres``: cheap to import, psycopg loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory import hookimpl

if TYPE_CHECKING:
    from chathistory_postgres.backend import PostgresBackend


@hookimpl
def chathistory_backend() -> type[PostgresBackend]:
    from chathistory_postgres.backend import PostgresBackend

    return PostgresBackend
