"""What the catalog's counting trigger costs MariaDB's server a turn, by trigger body.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_trigger_cost.py \
        [--size 10000] [--turns 1000] [--rounds 5] [--writers 4] [--sessions 200]

On a PRIVATE MariaDB server (bench_catalog's: its settings, a 512 MB buffer
pool), one table of ``--size`` sessions (bench_catalog's fill) for each trigger
body:

- **none**: no trigger (and no catalog for the append);
- **count alone**: ``UPDATE`` of the entry's count, nothing else (it makes no
  entry: not the catalog's semantics, the cost of writing the count);
- **UPDATE first**: ``UPDATE`` of the count and ``updated_at``, then step 3's
  upsert only where ``ROW_COUNT() = 0`` (the same semantics);
- **step 3**: the body the backend installs (``sql._count_trigger``).

A turn is the backend's own statements of one (fetch the newest 20, append 2),
captured once per table and replayed on one PyMySQL connection per body, then a
commit. Each round runs ``--turns`` turns a body, the bodies in a shuffled order
turn by turn, so that the machine's load falls on all alike; the figure is the
CPU time of the server's thread that serves the body's connection (Linux's
schedstat) around the ``INSERT`` and around the whole turn, the median of the
rounds. Twice: appending to an entry that exists, and to a new session each
turn (its first append).

Then the race: ``--writers`` plain PyMySQL connections (nothing retries for
them, as for a peer's writer) append two messages to each of ``--sessions`` new
sessions at once (a barrier before each), on each body that makes entries: the
deadlocks (error 1213) each body got, and whether every count is exact.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
from pathlib import Path

import bench_catalog as bench
import pymysql  # type: ignore[import-untyped]  # as client.py: no stubs in the venv
from chathistory_sqlalchemy import SQLAlchemyBackend, sql
from private_mariadb import PrivateServer  # beside the tests: bench_catalog finds it
from sqlalchemy import Engine, create_engine, text

from chathistory.testing import numbered_records

BODIES = ("none", "count alone", "UPDATE first", "step 3")
NOW = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"
TURN_SESSION = "turn"


def bodies(backend: SQLAlchemyBackend) -> dict[str, str | None]:
    """The CREATE TRIGGER of each body, on ``backend``'s table (None: no trigger)."""
    catalog = backend.statements.catalog
    assert catalog is not None and catalog.trigger is not None
    step_3 = catalog.trigger
    # Step 3's: "... BEGIN <the session_hash fill> END IF; <the upsert> END"
    head, upsert = step_3.split("END IF; ", 1)
    upsert = upsert.removesuffix(" END")
    entries = backend.client.engine().dialect.identifier_preparer.quote(catalog.table.name)
    where = "WHERE session_hash = NEW.session_hash; "
    return {
        "none": None,
        "count alone": (f"{head}END IF; UPDATE {entries} SET messages = messages + 1 "
                        f"{where}END"),
        "UPDATE first": (f"{head}END IF; UPDATE {entries} SET messages = messages + 1, "
                         f"updated_at = GREATEST(updated_at, {NOW}) {where}"
                         f"IF ROW_COUNT() = 0 THEN {upsert} END IF; END"),
        "step 3": step_3}


def thread_nanoseconds(pid: int, thread: int) -> int:
    """The CPU time so far of thread ``thread`` of process ``pid`` (Linux's schedstat)."""
    return int(Path(f"/proc/{pid}/task/{thread}/schedstat").read_text().split()[0])


class Contender:
    """One body: its table, its backend, its replayed turn and its server thread."""

    def __init__(self, server: PrivateServer, admin: Engine, name: str, size: int) -> None:
        self.name = name
        self.table = f"{bench.PREFIX}_{len(name)}_{name.split()[0].lower()}"
        self.backend = SQLAlchemyBackend.from_options(url=server.url, table=self.table)
        self.backend.create_collection()
        bench.fill(admin, self.table, size, counting=False)
        self.creates = bodies(self.backend)[name]
        if self.creates is None:
            self.backend.statements.catalog = None  # the append sends no upsert either
        else:
            with admin.begin() as connection:
                connection.exec_driver_sql(self.creates)
        # The turn's session, with its entry (the count alone makes none).
        entry = sql.Catalog.row(TURN_SESSION, created_at=0, updated_at=0)
        with admin.begin() as connection:
            connection.execute(text(
                f"INSERT INTO `{self.table}_sessions` (session_hash, session_id, session_key, "
                "metadata, created_at, updated_at, messages) VALUES (:session_hash, "
                ":session_id, :session_key, '{}', 0, 0, 0)"), entry)
        self.backend.append(TURN_SESSION, [bench.TURN[0], bench.TURN[1]] * 15)
        bench.turn(self.backend, "warm-up")
        self.statements = bench.captured_turn(self.backend, TURN_SESSION)
        self.connection = server.connect()
        self.connection.autocommit(False)
        cursor = self.connection.cursor()
        cursor.execute("SELECT tid FROM information_schema.processlist "
                       "WHERE id = CONNECTION_ID()")
        (self.thread,) = cursor.fetchone()
        self.connection.commit()

    def turn(self, pid: int, session: str | None) -> tuple[int, int]:
        """One replayed turn (to ``session``, a new one, if given): the server thread's
        nanoseconds in the whole turn and in its INSERT."""
        statements = self.statements
        if session is not None:
            rename = {sql.session_hash(TURN_SESSION): sql.session_hash(session),
                      TURN_SESSION: session}
            statements = [(statement, {key: rename.get(value, value)
                                       for key, value in parameters.items()}
                           if isinstance(parameters, dict) else parameters, many)
                          for statement, parameters, many in statements]
        cursor = self.connection.cursor()
        started = thread_nanoseconds(pid, self.thread)
        insert = 0
        for statement, parameters, many in statements:
            before = thread_nanoseconds(pid, self.thread)
            (cursor.executemany if many else cursor.execute)(statement, parameters)
            cursor.fetchall()
            if statement.lstrip().upper().startswith("INSERT"):
                insert += thread_nanoseconds(pid, self.thread) - before
        self.connection.commit()
        return thread_nanoseconds(pid, self.thread) - started, insert

    def miscounted(self, admin: Engine) -> int:
        """Entries whose count is not their session's rows."""
        with admin.connect() as connection:
            return int(connection.execute(text(
                f"SELECT COUNT(*) FROM `{self.table}_sessions` s WHERE messages <> "
                f"(SELECT COUNT(*) FROM `{self.table}` m "
                "WHERE m.session_hash = s.session_hash)")).scalar() or 0)


def measure(contenders: list[Contender], pid: int, arguments: argparse.Namespace,
            new: bool) -> None:
    turns: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    inserts: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    for round_number in range(arguments.rounds):
        sums = {contender.name: [0, 0] for contender in contenders}
        for number in range(arguments.turns):
            random.shuffle(contenders)
            for contender in contenders:
                session = f"new-{int(new)}-{round_number}-{number}" if new else None
                whole, insert = contender.turn(pid, session)
                sums[contender.name][0] += whole
                sums[contender.name][1] += insert
        for name, (turn_ns, insert_ns) in sums.items():
            turns[name].append(turn_ns / arguments.turns / 1e3)
            inserts[name].append(insert_ns / arguments.turns / 1e3)
    print(f"\nappending to {'a new session each turn' if new else 'an entry that exists'}: "
          "the server's CPU a turn (us), median of the rounds [each round]")
    none = statistics.median(inserts["none"]), statistics.median(turns["none"])
    for name in BODIES:
        its_insert, its_turn = statistics.median(inserts[name]), statistics.median(turns[name])
        print(f"  {name:13} INSERT {its_insert:6.1f} ({its_insert / none[0]:.2f}x none) "
              f"[{', '.join(f'{value:.1f}' for value in inserts[name])}]   "
              f"turn {its_turn:6.1f} ({its_turn / none[1]:.3f}x none)", flush=True)


def race(server: PrivateServer, contender: Contender, writers: int,
         sessions: int) -> str:
    """Plain writers appending to the same new sessions at once: what they got."""
    errors: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(writers, timeout=60)
    insert = (f"INSERT INTO `{contender.table}` (session_hash, session_id, message) "
              "VALUES (%s, %s, %s), (%s, %s, %s)")
    records = [json.dumps(record) for record in numbered_records(2)]

    def write() -> None:
        connection = server.connect()
        connection.autocommit(False)
        cursor = connection.cursor()
        for number in range(sessions):
            session = f"race-{number}"
            start.wait()
            try:
                cursor.execute(insert, (sql.session_hash(session), session, records[0],
                                        sql.session_hash(session), session, records[1]))
                connection.commit()
            except pymysql.err.OperationalError as error:
                connection.rollback()
                with lock:
                    errors[error.args[0]] = errors.get(error.args[0], 0) + 1
        connection.close()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = ", ".join(f"{count} with error {code}" for code, count in sorted(errors.items()))
    return f"{writers * sessions} appends, {failed or 'none failed'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="sessions a table")
    parser.add_argument("--turns", type=int, default=1000, help="turns a body a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=200, help="new sessions raced")
    arguments = parser.parse_args()
    with bench.private_server("512M") as server:
        assert server.process is not None
        admin = create_engine(server.url)
        contenders: list[Contender] = []
        try:
            for name in BODIES:
                contenders.append(Contender(server, admin, name, arguments.size))
            print(f"{bench.describe_server(admin, private=True)}; tables of "
                  f"{arguments.size:,} sessions; {arguments.turns:,} turns a body a round, "
                  f"{arguments.rounds} rounds", flush=True)
            print(bench.wait_for_purge(admin), flush=True)
            for new in (False, True):
                measure(contenders, server.process.pid, arguments, new)
            print(f"\n{arguments.writers} plain writers appending two messages to each of "
                  f"{arguments.sessions} new sessions at once:")
            for contender in sorted(contenders, key=lambda contender: contender.name):
                if contender.name in ("UPDATE first", "step 3"):
                    outcome = race(server, contender, arguments.writers, arguments.sessions)
                    print(f"  {contender.name:13} {outcome}; entries miscounted: "
                          f"{contender.miscounted(admin)}", flush=True)
        finally:
            for contender in contenders:
                contender.connection.close()
                contender.backend.close()
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
