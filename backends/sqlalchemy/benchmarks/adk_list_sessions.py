"""Google ADK's ``DatabaseSessionService.list_sessions`` for one user on MariaDB.

Run by ``bench_catalog.py --adk-python PATH`` in an interpreter of its own (google-adk
cannot share chathistory's environment: its google-genai caps tenacity below what
chathistory needs)::

    python3 -m venv /tmp/adk-my && /tmp/adk-my/bin/pip install "google-adk[db]" aiomysql pymysql

    /tmp/adk-my/bin/python adk_list_sessions.py URL DATABASE SESSIONS ROUNDS

URL is a SQLAlchemy URL of the server (``mysql+pymysql://root@127.0.0.1:3306/test``);
the script works in DATABASE, which the caller made and drops. ADK is given the same
server through ``mysql+aiomysql://`` (the async driver its DatabaseSessionService asks
for on a ``mysql`` URL). ADK makes its tables and the first session there; the rest
(100 per user, as bench_catalog fills chathistory) are copies of that row inserted in
one statement from MariaDB's ``seq_`` tables, since ADK's ``create_session`` commits
each one. Prints one JSON line: the fill's seconds and the median seconds of a listing.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time

from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]
from sqlalchemy import create_engine, make_url, text

PER_OWNER = 100


def owner_of(session: int) -> str:
    return f"user-{session // PER_OWNER:06d}"


def main() -> None:
    url, database, sessions, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    server = make_url(url).set(database=database)
    adk_url = server.set(drivername="mysql+aiomysql").render_as_string(hide_password=False)

    async def create_first() -> None:
        async with DatabaseSessionService(db_url=adk_url) as service:
            await service.create_session(app_name="bench", user_id=owner_of(0),
                                         session_id=f"s{0:08d}",
                                         state={"title": "Conversation 0"})

    async def list_sessions() -> list[float]:
        pick = random.Random(sessions)
        times = []
        async with DatabaseSessionService(db_url=adk_url) as service:
            for _ in range(rounds):
                user = owner_of(pick.randrange(sessions // PER_OWNER) * PER_OWNER)
                started = time.perf_counter()
                listed = await service.list_sessions(app_name="bench", user_id=user)
                times.append(time.perf_counter() - started)
                assert len(listed.sessions) == PER_OWNER, len(listed.sessions)
        return times

    started = time.perf_counter()
    asyncio.run(create_first())
    overrides = {"user_id": f"CONCAT('user-', LPAD(n.seq DIV {PER_OWNER}, 6, '0'))",
                 "id": "CONCAT('s', LPAD(n.seq, 8, '0'))"}
    engine = create_engine(server.set(drivername="mysql+pymysql"))
    with engine.begin() as connection:
        for table, key, first in (("sessions", "id", f"s{0:08d}"),
                                  ("user_states", "user_id", owner_of(0))):
            columns = list(connection.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :db "
                "AND table_name = :table ORDER BY ordinal_position"),
                {"db": database, "table": table}).scalars())
            step = 1 if table == "sessions" else PER_OWNER
            values = [overrides.get(column, f"first.`{column}`") for column in columns]
            connection.execute(text(
                f"INSERT INTO `{table}` ({', '.join(f'`{column}`' for column in columns)}) "
                f"SELECT {', '.join(values)} FROM `{table}` AS first, "
                f"seq_{step}_to_{sessions - 1}_step_{step} AS n WHERE first.`{key}` = :first"),
                {"first": first})
        connection.execute(text("ANALYZE TABLE `sessions`, `user_states`")).all()
    engine.dispose()
    filled = time.perf_counter() - started
    print(json.dumps({"fill_s": filled, "list": statistics.median(asyncio.run(list_sessions()))}))


if __name__ == "__main__":
    main()
