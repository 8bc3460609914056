"""Google ADK's ``DatabaseSessionService.list_sessions`` for one user on PostgreSQL.

Run by ``bench_catalog.py --adk-python PATH`` in an interpreter of its own (google-adk
cannot share chathistory's environment: its google-genai caps tenacity below what
chathistory needs)::

    python3 -m venv /tmp/adk-pg && /tmp/adk-pg/bin/pip install "google-adk[db]" "psycopg[binary]"

    /tmp/adk-pg/bin/python adk_list_sessions.py URL SCHEMA SESSIONS ROUNDS

Works in SCHEMA (which the caller made and drops): ADK makes its tables and the first
session there; the rest (100 per user, as bench_catalog fills chathistory) are copies
of that row inserted in one statement, since ADK's ``create_session`` commits each one.
Prints one JSON line: the fill's seconds and the median seconds of a listing.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
from urllib.parse import quote

import psycopg
from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]
from psycopg import sql

PER_OWNER = 100


def owner_of(session: int) -> str:
    return f"user-{session // PER_OWNER:06d}"


def main() -> None:
    url, schema, sessions, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    separator = "&" if "?" in url else "?"
    db_url = (url.replace("postgresql://", "postgresql+psycopg://", 1) + separator
              + "options=" + quote(f"-csearch_path={schema}"))

    async def create_first() -> None:
        service = DatabaseSessionService(db_url=db_url)
        await service.create_session(app_name="bench", user_id=owner_of(0),
                                     session_id=f"s{0:08d}", state={"title": "Conversation 0"})

    async def list_sessions() -> list[float]:
        service = DatabaseSessionService(db_url=db_url)
        pick = random.Random(sessions)
        times = []
        for _ in range(rounds):
            user = owner_of(pick.randrange(sessions // PER_OWNER) * PER_OWNER)
            started = time.perf_counter()
            listed = await service.list_sessions(app_name="bench", user_id=user)
            times.append(time.perf_counter() - started)
            assert len(listed.sessions) == PER_OWNER, len(listed.sessions)
        return times

    started = time.perf_counter()
    asyncio.run(create_first())
    overrides = {"user_id": sql.SQL("'user-' || lpad((n / {})::text, 6, '0')").format(
                     sql.Literal(PER_OWNER)),
                 "id": sql.SQL("'s' || lpad(n::text, 8, '0')")}
    with psycopg.connect(url, autocommit=True) as connection:
        for table, key in (("sessions", "id"), ("user_states", "user_id")):
            columns = [name for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s ORDER BY ordinal_position", (schema, table))]
            step = 1 if table == "sessions" else PER_OWNER
            values = [overrides.get(column, sql.Identifier(column)) for column in columns]
            connection.execute(sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} AS first, generate_series({}, {}, {}) AS n "
                "WHERE first.{} = {}").format(
                    sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(values), sql.Identifier(schema, table),
                    sql.Literal(step), sql.Literal(sessions - 1), sql.Literal(step),
                    sql.Identifier(key), sql.Literal(f"s{0:08d}" if key == "id" else owner_of(0))))
            connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
    filled = time.perf_counter() - started
    print(json.dumps({"fill_s": filled, "list": statistics.median(asyncio.run(list_sessions()))}))


if __name__ == "__main__":
    main()
