"""The session catalog on MariaDB at two sizes, and what keeping it costs a turn, in one run.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_catalog.py \
        [--sizes 10000 1000000] [--rounds 5] [--pages 40] [--erasures 5] [--turns 40]
        [--adk-python /tmp/adk-my/bin/python [--adk-sizes 5000 50000] [--adk-only]]
        [--private-server 2G]

Needs the MariaDB server of CHATHISTORY_MYSQL_URL (default
mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4; its ``seq_1_to_N``
tables fill the stores server-side). Works in tables named chh_bcat_<random>_*,
dropped at the end.

``--private-server SIZE`` runs everything on a MariaDB server of its own instead
(``mariadb-install-db`` and ``mariadbd`` in a temporary directory, root without
a password on a free port of 127.0.0.1, its ``test`` database; stopped and
removed at the end, on an error or Ctrl-C too) whose InnoDB buffer pool is SIZE
(``2G``, ``512M``): the shared server's settings otherwise (redo log 96 MB,
``O_DIRECT``, a flush at each commit, no binary log), so that only the pool
differs. The report's header names the server and its buffer pool.

Each size is one table of this backend (``chathistory`` layout, catalog kept)
holding that many sessions of two messages, 100 per owner, with distinct update
times, filled by ``INSERT ... SELECT`` with the rows the backend itself writes
(sha256 of the id, the id's UTF-8 in hex), then ``ANALYZE TABLE``. Then, the
sizes taken in turn within each round:

- **page**: ``list_conversations(backend, owner=X, limit=20)``, one owner's 20
  newest, owners at random among those not yet erased (so each has its 100
  sessions at both sizes: a page of an erased owner costs less); median time.
- **erase**: ``erase(backend, owner=X)`` of one owner's 100 sessions (200
  messages), each owner erased once; median time. After both sizes' pages, the
  two sizes' erasures one by one in turn, so that a slowdown of the machine for
  some seconds falls on both sizes alike.
- **turn**: read a session's newest 20 messages and append two, on the small
  table with the catalog kept, and without it (the same backend class on a
  table of the same size without the catalog's counting trigger, its
  statements without the catalog's); median time. Beside them, its floor: each
  one's own statements of a turn, captured and replayed on one DBAPI connection
  (**raw turn**: no pool, no ping), so the trigger's own cost is measured alone.
  The four take turns in slices of 5, in an order shuffled each time.

Next to page and erase, their floor on the same tables: **raw page**, the
backend's own page statement run on a plain SQLAlchemy engine; **raw erase,
our statements**, what one ``erase(owner=...)`` of ours sends (the listing of
the owner's sessions and its rollback; the count, both ``DELETE`` statements by 200
hashes and the commit; the listing that finds nothing left and its rollback),
captured at each size and replayed on one DBAPI connection (PyMySQL: no pool,
no ping, none of our code) for another owner, whose ids the replayed listing
gives; and **raw erase, two DELETEs**, one transaction of two other statements
(``DELETE`` of the owner's messages joined to their entries, then of the
entries). So a ratio the backend misses can be told from one the database
misses with the same statements (InnoDB's buffer pool: 128 MB here), and from
one other statements would miss. The three erasures take turns in an order
shuffled each time; the report gives their medians round by round, ours'
ratio over its floor's, a 90% bootstrap interval of each ratio (how far it
moves with the erasures a run happens to draw) and, on a private server, the
server's CPU time an erasure (all its threads), which the machine's load
stretches far less than the wall time.

Ratios: large size / small size (target <= 1.3) and with / without the catalog
(target <= 1.1), and that ratio over the raw turn's own (the floor); and the
whole server's buffer-pool reads a page (from memory, from disk) during each
size's pages, round by round, to tell a slow round's competition, with what
InnoDB's purge did meanwhile (records purged, on a private server, which counts
them; the history list of undo logs awaiting purge before and after), and how
long this process and (on a private server) the server's threads waited for a
CPU (Linux's schedstat): on a busy machine a page's wait can outgrow its work,
in any round, at either size.

Purge is the server's background work the pages meet. The fill leaves undo logs
(some 9,000 pages at 1,000,000 sessions) that purge goes through a second or two
later, reading the pool some 100,000 times; a server not just filled has no such
backlog, so the run waits, before its first round, until the history list is
empty (at most two minutes: other clients of a shared server may keep it from
emptying) and prints how long it waited. The erasures leave 300 delete-marked
rows each, which purge removes in bursts, wherever the run then is: a burst
during a size's pages takes that round's reads from about 73 a page to
430-1,100 and slows ours and the raw page both. A server with erasures does
this too, so the rounds do not wait for it. What else the fill leaves, some
20,000 dirty pages written out at about 70-90 a second for minutes, reads nothing.

The exit status is 1 when one of our lines (page, erase, turn) misses its target,
else 0: the raw lines are floors, printed beside ours, with no target.

``--adk-python PATH`` names an interpreter with ``google-adk[db]``, ``aiomysql``
and ``pymysql`` (see ``adk_list_sessions.py``): Google ADK's
``DatabaseSessionService.list_sessions`` for one user (100 sessions) on this
server, in a database of its own (``chathistory_adk_bench``, made and dropped
here), at each of ``--adk-sizes``, next to chathistory's page of 20 and its
listing of the user's 100 on a table of each size, ``--rounds`` owners each.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from chathistory_sqlalchemy import SQLAlchemyBackend, sql
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict
from sqlalchemy import Engine, create_engine, event, make_url, text

from chathistory import erase, list_conversations
from chathistory.compaction import summary_session_id

sys.path.append(str(Path(__file__).parents[1] / "tests"))
from private_mariadb import PrivateServer  # in tests/: the tests use it too

SHARED_URL = (os.environ.get("CHATHISTORY_MYSQL_URL")
              or "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
PREFIX = f"chh_bcat_{secrets.token_hex(3)}"
PER_OWNER = 100
BASE_MICROS = 1_700_000_000_000_000
TURN = [message_to_dict(HumanMessage("What is the capital of France?")),
        message_to_dict(AIMessage("Paris."))]
ADK_DATABASE = "chathistory_adk_bench"
PAGE_TARGET = ERASE_TARGET = 1.3  # issue 19: large / small size
TURN_TARGET = 1.1  # issue 19: with / without the catalog
ERASERS = ("ours", "our statements", "two DELETEs")  # ours and its two floors
SETTLE_LIMIT = 120.0  # seconds to wait for purge after the fill (other clients may write)


@contextlib.contextmanager
def private_server(buffer_pool: str) -> Iterator[PrivateServer]:
    """A private mariadbd (tests/private_mariadb.py) with the shared server's settings but
    a ``buffer_pool`` InnoDB pool, started (its ``test`` database at ``url``)."""
    server = PrivateServer("test", (
        f"--innodb-buffer-pool-size={buffer_pool}", "--innodb-log-file-size=96M",
        "--innodb-flush-method=O_DIRECT", "--innodb-flush-log-at-trx-commit=1",
        # Counters of what purge does (off by default; counting changes nothing it does),
        # so that a run can tell purge's work from the pages' own.
        "--innodb-monitor-enable=module_purge"))
    # A SIGTERM stops the server too (the block removes it however it ends).
    previous = signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    try:
        with server:
            admin = server.connect()
            try:
                cursor = admin.cursor()
                cursor.execute("SELECT support FROM information_schema.engines "
                               "WHERE engine = 'SEQUENCE'")
                (sequence,) = cursor.fetchone() or (None,)
            finally:
                admin.close()
            if sequence not in ("YES", "DEFAULT"):
                raise SystemExit(f"the private server has no Sequence engine "
                                 f"(support: {sequence})")
            yield server
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_server(admin: Engine, private: bool) -> str:
    with admin.connect() as connection:
        version, pool = connection.execute(text(
            "SELECT @@version, @@innodb_buffer_pool_size")).one()
    return (f"MariaDB {version} ({'a private server' if private else 'the shared server'}, "
            f"innodb_buffer_pool_size {int(pool) // 2**20:,} MB)")


def fill(admin: Engine, table: str, size: int, *, counting: bool = True) -> float:
    """``size`` sessions, ids ``s-<n>``, owners ``o-<n // 100>``, two messages each; the
    catalog's counting trigger is dropped meanwhile (its entries are written here), and
    made again if ``counting``."""
    started = time.perf_counter()
    human = json.dumps(message_to_dict(HumanMessage("a question of this session")))
    answer = json.dumps(message_to_dict(AIMessage("a reasonably sized answer to it")))
    with admin.begin() as connection:
        connection.execute(text(f"DROP TRIGGER IF EXISTS `{table}_count`"))
        connection.execute(text(
            f"INSERT INTO `{table}` (session_hash, session_id, message) "
            f"SELECT SHA2(CONCAT('s-', seq), 256), CONCAT('s-', seq), m.message "
            f"FROM seq_0_to_{size - 1} CROSS JOIN "
            "(SELECT 1 AS n, :human AS message UNION ALL SELECT 2, :answer) AS m "
            "ORDER BY seq, m.n"), {"human": human, "answer": answer})
        connection.execute(text(
            f"INSERT INTO `{table}_sessions` (session_hash, session_id, session_key, "
            "owner_hash, owner, title, metadata, created_at, updated_at, messages) "
            "SELECT SHA2(CONCAT('s-', seq), 256), CONCAT('s-', seq), "
            "LOWER(HEX(CONCAT('s-', seq))), "
            f"SHA2(CONCAT('o-', seq DIV {PER_OWNER}), 256), CONCAT('o-', seq DIV {PER_OWNER}), "
            f"NULL, '{{}}', {BASE_MICROS} + seq * 1000, {BASE_MICROS} + seq * 1000, 2 "
            f"FROM seq_0_to_{size - 1}"))
        if counting:
            sql.MIGRATIONS[sql.COUNTING_VERSION](
                connection, sql.Statements(table, "chathistory", admin.dialect))
    with admin.connect() as connection:
        connection.execute(text(f"ANALYZE TABLE `{table}`, `{table}_sessions`")).all()
    return time.perf_counter() - started


def table_megabytes(admin: Engine, table: str) -> int:
    """The data and indexes of a store's two tables (InnoDB's estimate after ANALYZE)."""
    with admin.connect() as connection:
        size = connection.execute(text(
            "SELECT SUM(data_length + index_length) FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name IN (:messages, :sessions)"),
            {"messages": table, "sessions": f"{table}_sessions"}).scalar()
    return int(size or 0) // 2**20


def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - started


class ServerState(NamedTuple):
    """The whole server's counters so far."""

    read_requests: int  # buffer-pool reads
    disk_reads: int  # those of them that went to disk
    history: int  # InnoDB's history list: undo logs that purge has yet to clean up
    purged: int  # records purged (0 where the server does not count them)
    undo_pages: int  # undo log pages purge has gone through (0 where not counted)
    counts_purge: bool


def server_state(admin: Engine) -> ServerState:
    with admin.connect() as connection:
        found: dict[str, str] = dict(connection.execute(text(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_buffer_pool_read_requests', "
            "'Innodb_buffer_pool_reads', 'Innodb_history_list_length')")).all())
        # Records purged (erased rows, delete-marked, and the old versions of updated ones)
        # and undo log pages: module_purge's counters, which a private server turns on.
        purged, undo_pages, counted = connection.execute(text(
            "SELECT SUM(IF(name = 'purge_undo_log_pages', 0, count)), "
            "SUM(IF(name = 'purge_undo_log_pages', count, 0)), MIN(enabled) "
            "FROM information_schema.innodb_metrics WHERE name IN ('purge_del_mark_records', "
            "'purge_upd_exist_or_extern_records', 'purge_undo_log_pages')")).one()
    return ServerState(int(found["Innodb_buffer_pool_read_requests"]),
                       int(found["Innodb_buffer_pool_reads"]),
                       int(found["Innodb_history_list_length"]), int(purged or 0),
                       int(undo_pages or 0), bool(counted))


def wait_for_purge(admin: Engine, limit: float = SETTLE_LIMIT) -> str:
    """Wait until InnoDB's history list is empty, at most ``limit`` seconds: purge has
    cleaned up after the fill. What was waited for, and how long, as a sentence."""
    started, before = time.perf_counter(), server_state(admin)
    after = before
    while after.history and time.perf_counter() - started < limit:
        time.sleep(0.1)
        after = server_state(admin)
    seconds = time.perf_counter() - started
    undo = (f", {after.undo_pages - before.undo_pages:,} undo log pages purged"
            if before.counts_purge else "")
    outcome = "" if after.history == 0 else f" (gave up after {limit:.0f} s)"
    return (f"waited {seconds:.1f} s for purge after the fill{outcome}: InnoDB history list "
            f"{before.history} -> {after.history}{undo}, "
            f"{after.read_requests - before.read_requests:,} buffer-pool reads meanwhile")


def schedstat(pid: int | str, column: int) -> dict[str, int]:
    """A column of Linux's schedstat for each thread of process ``pid`` (``"self"``: this
    one), by thread id: 0, the nanoseconds it has run on a CPU; 1, those it has been ready
    to run but waiting for one. Empty where unknown."""
    times: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that has just ended
                times[task.name] = int((task / "schedstat").read_text().split()[column])
    return times


def cpu_waits(pid: int | str) -> dict[str, int]:
    return schedstat(pid, 1)


def cpu_times(pid: int | str) -> dict[str, int]:
    return schedstat(pid, 0)


def spent(before: dict[str, int], after: dict[str, int]) -> int:
    """The nanoseconds between two :func:`schedstat` readings of one process, summed over
    the threads alive at both."""
    return sum(after[thread] - before[thread] for thread in before.keys() & after.keys())


def remaining(owners: int, erased: set[int]) -> list[int]:
    """The owners (numbers below ``owners``) not yet erased: each still has its sessions."""
    return sorted(set(range(owners)) - erased)


def erased_rows(backend: SQLAlchemyBackend, owner: str) -> int:
    """``erase(backend, owner=owner)``: the sessions and messages its receipt counts."""
    receipt = erase(backend, owner=owner)
    return receipt.sessions + receipt.messages


def raw_erase(engine: Engine, table: str, owner: str) -> int:
    """The owner's messages and entries by two other statements: the rows deleted."""
    with engine.begin() as connection:
        messages = connection.execute(text(
            f"DELETE m FROM `{table}` m JOIN `{table}_sessions` s "
            "ON m.session_hash = s.session_hash WHERE s.owner_hash = SHA2(:owner, 256)"),
            {"owner": owner}).rowcount
        entries = connection.execute(text(f"DELETE FROM `{table}_sessions` "
                                          "WHERE owner_hash = SHA2(:owner, 256)"),
                                     {"owner": owner}).rowcount
    return int(messages) + int(entries)


class Ended(NamedTuple):
    """A transaction's end among captured statements: ``commit`` or ``rollback``."""

    how: str


Sent = tuple[str, Any, bool] | Ended  # a statement (text, parameters, executemany), or an end


class CapturedErase(NamedTuple):
    """What one ``erase(owner=...)`` sent, and the owner's session ids it listed."""

    owner: str
    sent: list[Sent]
    session_ids: list[str]  # oldest first, as the erasure lists them


def sha256_hex(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def captured_erase(backend: SQLAlchemyBackend, owner: str) -> CapturedErase:
    """What ``erase(backend, owner=owner)`` sends: its statements and transactions' ends."""
    session_ids = [summary.session_id for summary in list_conversations(
        backend, owner=owner, newest_first=False, limit=PER_OWNER).summaries]
    sent: list[Sent] = []

    def record(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        sent.append((statement, parameters, executemany))

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", record),
        ("commit", lambda connection: sent.append(Ended("commit"))),
        ("rollback", lambda connection: sent.append(Ended("rollback")))]
    engine = backend.client.engine()
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        receipt = erase(backend, owner=owner)
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)
    assert (receipt.sessions, receipt.messages) == (PER_OWNER, 2 * PER_OWNER)
    return CapturedErase(owner, sent, session_ids)


def replayed_erase(connection: Any, captured: CapturedErase, owner: str) -> int:
    """``captured`` again on one DBAPI connection, for ``owner``: each value that names
    the captured owner, one of its sessions or a session's summaries (their sha256) names
    ``owner``'s instead, its session of the same place in the listing, the first
    statement that holds the owner's hash and reads rows (their first column: the ids).
    The ``:hashes`` of a statement stay sorted, as ours sends them. The rows its
    ``DELETE`` statements deleted."""
    cursor = connection.cursor()
    rename = {sha256_hex(captured.owner): sha256_hex(owner)}
    deleted = 0
    for step in captured.sent:
        if isinstance(step, Ended):
            getattr(connection, step.how)()
            continue
        statement, parameters, executemany = step
        assert not executemany, "an erasure sends no executemany"
        values = {key: rename.get(value, value) if isinstance(value, str) else value
                  for key, value in parameters.items()}
        listed = sorted((key for key in values if key.startswith("hashes_")),
                        key=lambda key: int(key.rpartition("_")[2]))
        values.update(zip(listed, sorted(values[key] for key in listed), strict=True))
        cursor.execute(statement, values)
        rows = cursor.fetchall()
        if statement.lstrip().upper().startswith("DELETE"):
            deleted += cursor.rowcount
        if len(rename) == 1 and rows and sha256_hex(captured.owner) in parameters.values():
            for old, new in zip(captured.session_ids, [row[0] for row in rows], strict=True):
                rename[sha256_hex(old)] = sha256_hex(new)
                rename[sha256_hex(summary_session_id(old))] = sha256_hex(
                    summary_session_id(new))
    return deleted


def raw_page(engine: Engine, backend: SQLAlchemyBackend, owner: str) -> None:
    catalog = backend.catalog  # type: ignore[attr-defined]
    statement, params = catalog.page(owner=owner, newest_first=True, after=None, limit=21)
    with engine.connect() as connection:
        connection.execute(statement, params).all()


def turn(backend: SQLAlchemyBackend, session_id: str) -> None:
    backend.fetch(session_id, limit=20)
    backend.append(session_id, TURN)


def captured_turn(backend: SQLAlchemyBackend, session_id: str) -> list[tuple[Any, Any, bool]]:
    """The statements (text, parameters, executemany) that one turn of ``backend`` sends."""
    sent: list[tuple[Any, Any, bool]] = []

    def record(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        sent.append((statement, parameters, executemany))

    engine = backend.client.engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        turn(backend, session_id)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


def raw_turn(connection: Any, statements: list[tuple[Any, Any, bool]]) -> None:
    """``statements`` again on one DBAPI connection (PyMySQL), then a commit: the turn's floor."""
    cursor = connection.cursor()
    for statement, parameters, executemany in statements:
        if executemany:
            cursor.executemany(statement, parameters)
        else:
            cursor.execute(statement, parameters)
        cursor.fetchall()
    connection.commit()


def round_ratios(times: dict[int, list[float]], low: int, high: int, per_round: int
                 ) -> list[float]:
    """Each round's median at size ``high`` over its median at ``low``."""
    return [statistics.median(times[high][start:start + per_round])
            / statistics.median(times[low][start:start + per_round])
            for start in range(0, len(times[low]), per_round)]


def bootstrap_interval(low: list[float], high: list[float], resamples: int = 2000
                       ) -> tuple[float, float]:
    """The 5th and 95th percentiles of median(high) / median(low), each list resampled with
    replacement: how far the ratio moves by which erasures a run happened to draw."""
    draw = random.Random(0).choices
    ratios = sorted(statistics.median(draw(high, k=len(high)))
                    / statistics.median(draw(low, k=len(low))) for _ in range(resamples))
    return ratios[resamples // 20], ratios[-resamples // 20 - 1]


def median_of(call: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(call) for _ in range(repeats))


def adk_comparison(arguments: argparse.Namespace, url: str, admin: Engine) -> None:
    """ADK's list_sessions for one user against list_conversations, at each --adk-sizes."""
    script = Path(__file__).with_name("adk_list_sessions.py")
    print(f"Google ADK (run by {arguments.adk_python}): DatabaseSessionService.list_sessions "
          "(one user, 100 sessions) against chathistory's list_conversations, same server:",
          flush=True)
    for size in arguments.adk_sizes:
        table = f"{PREFIX}_adk_{size}"
        backend = SQLAlchemyBackend.from_options(url=url, table=table)
        try:
            backend.create_collection()
            fill(admin, table, size)
            list_conversations(backend, owner="o-0", limit=20)  # warm: pool, statements
            owners = [f"o-{number}" for number in
                      random.Random(size).sample(range(size // PER_OWNER), arguments.rounds)]
            page = statistics.median(median_of(partial(
                list_conversations, backend, owner=owner, limit=20), 20) for owner in owners)
            whole = statistics.median(median_of(partial(
                list_conversations, backend, owner=owner, limit=PER_OWNER), 20)
                for owner in owners)
        finally:
            backend.close()
            with admin.begin() as connection:
                connection.execute(text(f"DROP TABLE IF EXISTS `{table}`, "
                                        f"`{table}_migrations`, `{table}_sessions`"))
        with admin.begin() as connection:
            connection.execute(text(f"CREATE DATABASE `{ADK_DATABASE}` "
                                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        try:
            child = subprocess.run([arguments.adk_python, str(script),
                                    make_url(url).render_as_string(hide_password=False),
                                    ADK_DATABASE, str(size), str(arguments.rounds)],
                                   capture_output=True, text=True, check=True, timeout=900)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{ADK_DATABASE}`"))
        adk = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{size:>9,} sessions: ADK {adk['list'] * 1e3:.2f} ms; chathistory page of 20 "
              f"{page * 1e3:.3f} ms ({adk['list'] / page:.0f}x faster), all 100 "
              f"{whole * 1e3:.3f} ms ({adk['list'] / whole:.0f}x faster)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=40, help="pages per size per round")
    parser.add_argument("--erasures", type=int, default=5, help="owners erased per size "
                        "per round")
    parser.add_argument("--turns", type=int, default=40, help="turns per contender per round")
    parser.add_argument("--adk-python", default=None,
                        help="an interpreter with google-adk[db], aiomysql and pymysql")
    parser.add_argument("--adk-sizes", type=int, nargs=2, default=[5_000, 50_000])
    parser.add_argument("--adk-only", action="store_true", help="only the ADK comparison")
    parser.add_argument("--private-server", metavar="SIZE", default=None,
                        help="run on a private MariaDB with this InnoDB buffer pool (2G, 512M)")
    arguments = parser.parse_args()
    # Each erasure takes an owner of its own (one more is captured), and pages need one left.
    if not arguments.adk_only and (len(ERASERS) * arguments.rounds * arguments.erasures + 1
                                   >= min(arguments.sizes) // PER_OWNER):
        parser.error(f"{len(ERASERS)} x --rounds x --erasures erasures need more owners than "
                     f"the smaller size has ({min(arguments.sizes) // PER_OWNER}, "
                     f"{PER_OWNER} sessions each)")
    if arguments.private_server is None:
        return 1 if run(arguments, SHARED_URL) else 0
    if not re.fullmatch(r"[1-9][0-9]*[KMG]?", arguments.private_server):
        parser.error("--private-server takes a size such as 2G or 512M")
    with private_server(arguments.private_server) as server:
        assert server.process is not None
        return 1 if run(arguments, server.url, server.process.pid) else 0


def run(arguments: argparse.Namespace, url: str, server_pid: int | None = None) -> int:
    """The run on ``url`` (a server whose process is ``server_pid``, where it is ours); how
    many of our lines missed their target."""
    admin = create_engine(url)
    server = describe_server(admin, private=arguments.private_server is not None)
    print(server, flush=True)
    if arguments.adk_python:
        try:
            adk_comparison(arguments, url, admin)
        finally:
            if arguments.adk_only:
                admin.dispose()
        if arguments.adk_only:
            return 0
    missed = 0
    backends: dict[int, SQLAlchemyBackend] = {}
    # Closed before the tables are dropped, however the run ends: a transaction left open
    # (a failure midway) holds a metadata lock that DROP TABLE would wait for, for good.
    opened: list[Any] = []
    try:
        for size in arguments.sizes:
            backend = SQLAlchemyBackend.from_options(url=url, table=f"{PREFIX}_{size}")
            backend.create_collection()
            backends[size] = backend
            seconds = fill(admin, f"{PREFIX}_{size}", size)
            print(f"filled {size:,} sessions in {seconds:.1f} s (tables and indexes "
                  f"{table_megabytes(admin, f'{PREFIX}_{size}'):,} MB)", flush=True)
        small = backends[arguments.sizes[0]]
        # The same class and a table of the same size without the catalog: no counting
        # trigger, and the append's statements without the catalog's.
        plain = SQLAlchemyBackend.from_options(url=url, table=f"{PREFIX}_plain")
        opened.append(plain)
        plain.create_collection()
        fill(admin, f"{PREFIX}_plain", arguments.sizes[0], counting=False)
        plain.statements.catalog = None  # its own Statements: the append sends no upsert
        turn_sessions = {"with": "turn-with", "without": "turn-without"}
        for name, contender in (("with", small), ("without", plain)):
            contender.append(turn_sessions[name], [TURN[0], TURN[1]] * 15)

        for backend in backends.values():  # warm: pools open, statements compiled
            list_conversations(backend, owner="o-0", limit=20)
            turn(backend, "warm-up")
        turn(plain, "warm-up")
        pages: dict[int, list[float]] = {size: [] for size in backends}
        raw_pages: dict[int, list[float]] = {size: [] for size in backends}
        # The whole server's counters before and after each size's pages: its buffer-pool
        # reads (from memory, from disk) are what the pages competed with, besides their own
        # (about 50-75 a page); purge's work is the likeliest competitor.
        page_states: dict[int, list[tuple[ServerState, ServerState]]] = {
            size: [] for size in backends}
        # And how long this process and the server waited for a CPU meanwhile: on a busy
        # machine, longer than a page's own work.
        page_cpu_waits: dict[int, list[tuple[int, int]]] = {size: [] for size in backends}
        # Ours, its statements replayed, and the join's two DELETEs: times by size.
        erasures: dict[str, dict[int, list[float]]] = {
            name: {size: [] for size in backends} for name in ERASERS}
        # And the server's CPU time in each (all its threads: purge and the page cleaner
        # too, where they ran meanwhile), on a private server: what load does not stretch.
        erase_cpu: dict[str, dict[int, list[int]]] = {
            name: {size: [] for size in backends} for name in ERASERS}
        turns: dict[str, list[float]] = {"with": [], "without": [], "raw with": [],
                                         "raw without": []}
        # The floor of the catalog's cost: each contender's own statements of a turn,
        # replayed on one DBAPI connection (no pool, no ping), with the trigger and without.
        raw = admin.raw_connection()
        opened.append(raw)
        replays = {f"raw {name}": captured_turn(contender, turn_sessions[name])
                   for name, contender in (("with", small), ("without", plain))}
        erased: dict[int, set[int]] = {size: {0} for size in backends}  # o-0: captured here
        erase_replays = {size: captured_erase(backend, "o-0")
                         for size, backend in backends.items()}
        # The fill leaves undo logs (some 9,000 pages at 1,000,000 sessions) that purge goes
        # through within a second or two, reading the pool some 100,000 times: it would land on
        # the first round's pages. A server not just filled has no such backlog.
        print(wait_for_purge(admin), flush=True)
        erasers: dict[int, dict[str, Callable[[str], int]]] = {size: {
            "ours": partial(erased_rows, backend),
            "our statements": partial(replayed_erase, raw, erase_replays[size]),
            "two DELETEs": partial(raw_erase, admin, f"{PREFIX}_{size}")}
            for size, backend in backends.items()}
        for round_number in range(arguments.rounds):
            order = list(backends.items())
            if round_number % 2:
                order.reverse()
            for size, backend in order:
                owners = size // PER_OWNER
                live = remaining(owners, erased[size])
                state = server_state(admin)
                client_waits = cpu_waits("self")
                server_waits = cpu_waits(server_pid) if server_pid else {}
                for _ in range(arguments.pages):
                    owner = f"o-{random.choice(live)}"
                    pages[size].append(timed(list_conversations, backend, owner=owner,
                                             limit=20))
                    raw_pages[size].append(timed(raw_page, admin, backend, owner))
                page_states[size].append((state, server_state(admin)))
                page_cpu_waits[size].append((
                    spent(client_waits, cpu_waits("self")),
                    spent(server_waits, cpu_waits(server_pid)) if server_pid else 0))
            # The sizes' erasures in turn, one by one: a slowdown of the machine for some
            # seconds falls on both sizes alike, not on one size's block of erasures.
            for _ in range(arguments.erasures):
                for size, _backend in order:
                    names = list(ERASERS)
                    random.shuffle(names)
                    for name in names:
                        number = random.choice(remaining(size // PER_OWNER, erased[size]))
                        erased[size].add(number)
                        server_before = cpu_times(server_pid) if server_pid else {}
                        started = time.perf_counter()
                        deleted = erasers[size][name](f"o-{number}")
                        erasures[name][size].append(time.perf_counter() - started)
                        if server_pid:
                            erase_cpu[name][size].append(
                                spent(server_before, cpu_times(server_pid)))
                        assert deleted == 3 * PER_OWNER, (name, deleted)  # sessions, messages
            slices: list[tuple[str, Callable[[], None]]] = [
                ("with", partial(turn, small, turn_sessions["with"])),
                ("without", partial(turn, plain, turn_sessions["without"])),
                *((name, partial(raw_turn, raw, statements))
                  for name, statements in replays.items())]
            for _ in range(arguments.turns // 5):
                random.shuffle(slices)
                for name, call in slices:
                    for _ in range(5):
                        turns[name].append(timed(call))
        low, high = arguments.sizes
        page = {size: statistics.median(times) for size, times in pages.items()}
        erase_times = {name: {size: statistics.median(times) for size, times in by_size.items()}
                       for name, by_size in erasures.items()}
        raw_page_times = {size: statistics.median(times) for size, times in raw_pages.items()}
        turn_times = {name: statistics.median(times) for name, times in turns.items()}
        print(f"\n{server}, {arguments.rounds} rounds; median of each")
        floor = turn_times["raw with"] / turn_times["raw without"]
        # A target of None: a floor, printed beside ours, is no target of ours to miss.
        report: list[tuple[str, str, float, str, float, float | None]] = [
            ("page of one owner's 20 newest", f"{low:,}", page[low], f"{high:,}", page[high],
             PAGE_TARGET),
            ("erase one owner's 100 sessions", f"{low:,}", erase_times["ours"][low],
             f"{high:,}", erase_times["ours"][high], ERASE_TARGET),
            ("raw page (the same statement, plain engine)", f"{low:,}", raw_page_times[low],
             f"{high:,}", raw_page_times[high], None),
            ("raw erase, our statements (replayed on one connection)", f"{low:,}",
             erase_times["our statements"][low], f"{high:,}",
             erase_times["our statements"][high], None),
            ("raw erase, two DELETEs (one transaction)", f"{low:,}",
             erase_times["two DELETEs"][low], f"{high:,}", erase_times["two DELETEs"][high],
             None),
            ("turn (fetch 20, append 2)", "without catalog", turn_times["without"],
             "with", turn_times["with"], TURN_TARGET),
            ("raw turn (its statements replayed on one connection)", "without the trigger",
             turn_times["raw without"], "with", turn_times["raw with"], None)]
        for label, low_name, low_time, high_name, high_time, target in report:
            ratio = high_time / low_time
            if target is None:
                verdict = "a floor, no target"
            else:
                missed += ratio > target
                verdict = f"target <= {target}: {'met' if ratio <= target else 'MISSED'}"
            print(f"{label}: {low_name}: {low_time * 1e3:.2f} ms   {high_name}: "
                  f"{high_time * 1e3:.2f} ms   ratio {ratio:.2f} ({verdict})")
        print(f"turn: ours / floor {turn_times['with'] / turn_times['without'] / floor:.2f} "
              "(the ratio of ours over the raw turn's)")
        growth = {name: times[high] / times[low] for name, times in erase_times.items()}
        print(f"erase: ours / floor {growth['ours'] / growth['our statements']:.2f} (the ratio "
              "of ours over its statements' replayed)")
        # Round by round: a ratio that moves from round to round as far as from the target
        # is the machine's; one that stays is the statements'.
        print("erase medians by round (ms), ours / our statements / two DELETEs:")
        per_round = arguments.erasures
        for size in backends:
            print(f"  {size:,}: " + ", ".join(" / ".join(
                f"{statistics.median(erasures[name][size][start:start + per_round]) * 1e3:.1f}"
                for name in ERASERS) for start in range(0, len(erasures["ours"][size]),
                                                         per_round)))
        print("  ratio, 90% bootstrap interval (the erasures resampled at each size): " + ", ".join(
            f"{name} {low_bound:.2f}-{high_bound:.2f}" for name in ERASERS
            for low_bound, high_bound in [bootstrap_interval(erasures[name][low],
                                                             erasures[name][high])]))
        if server_pid:
            print("  the server's CPU time an erasure (us, median), by size: " + ", ".join(
                f"{name} " + " -> ".join(f"{statistics.median(by_size[size]) / 1e3:.0f}"
                                         for size in (low, high))
                + f" ({statistics.median(by_size[high]) / statistics.median(by_size[low]):.2f})"
                for name, by_size in erase_cpu.items()))
        print("  ratio by round, ours (our statements): " + ", ".join(
            f"{ours:.2f} ({floor_:.2f})" for ours, floor_ in zip(
                *(round_ratios(erasures[name], low, high, per_round)
                  for name in ERASERS[:2]), strict=True)))
        # With a log flush at each commit a turn's times are bimodal (a flush that is quick,
        # or one that waits), and a median near the gap moves far on a small shift of shares.
        means = {name: statistics.fmean(times) for name, times in turns.items()}
        quick = {name: sum(time_ < 2 * statistics.median(turns["raw without"])
                           for time_ in times) / len(times) for name, times in turns.items()}
        print(f"turn means (no target): with / without {means['with'] / means['without']:.2f}"
              f", raw {means['raw with'] / means['raw without']:.2f}; share under twice the "
              "raw turn's median: " + ", ".join(f"{name} {share:.2f}"
                                                for name, share in quick.items()))
        statements = 2 * arguments.pages  # ours and raw, a page each
        for size, states in page_states.items():
            print(f"server during the pages of {size:,} (ours and raw), each round:")
            print("  medians, ours / raw (ms) " + ", ".join(
                f"{statistics.median(pages[size][start:start + arguments.pages]) * 1e3:.2f} / "
                f"{statistics.median(raw_pages[size][start:start + arguments.pages]) * 1e3:.2f}"
                for start in range(0, len(pages[size]), arguments.pages)))
            print("  buffer-pool reads a page " + ", ".join(
                f"{(after.read_requests - before.read_requests) / statements:.0f}"
                for before, after in states) + "; from disk " + ", ".join(
                f"{(after.disk_reads - before.disk_reads) / statements:.1f}"
                for before, after in states))
            if all(before.counts_purge for before, _ in states):
                print("  records purged meanwhile (erased rows, old versions) " + ", ".join(
                    f"{after.purged - before.purged}" for before, after in states))
            print("  InnoDB history list before -> after " + ", ".join(
                f"{before.history} -> {after.history}" for before, after in states))
            cpu_line = "  ms a page waiting for a CPU: this process " + ", ".join(
                f"{client / statements / 1e6:.2f}" for client, _ in page_cpu_waits[size])
            if server_pid:
                cpu_line += "; the server " + ", ".join(
                    f"{server / statements / 1e6:.2f}" for _, server in page_cpu_waits[size])
            print(cpu_line)
    finally:
        for resource in [*opened, *backends.values()]:
            resource.close()
        with admin.begin() as connection:
            for size in [*backends, "plain"]:
                table = f"{PREFIX}_{size}"
                connection.execute(text(f"DROP TABLE IF EXISTS `{table}`, "
                                        f"`{table}_migrations`, `{table}_sessions`"))
        admin.dispose()
    return missed


if __name__ == "__main__":
    sys.exit(main())
