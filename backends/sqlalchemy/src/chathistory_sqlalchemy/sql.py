"""The tables, their statements in SQLAlchemy Core, and the schema's versioned steps.

The messages table of each layout, and the session catalog of the ``chathistory``
layout (:class:`Catalog`), kept in the appends' transactions. Names reach SQL only
quoted by the dialect; session ids and records only as bound parameters.
docs/backends/sqlalchemy.md explains the layouts and indexes.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import TextClause

from chathistory import CollectionMissingError, ConfigError, Operation
from chathistory.catalog import SessionSummary
from chathistory_sqlalchemy.config import Layout
from chathistory_sqlalchemy.errors import error_code

__all__ = ["CATALOG_DIALECTS", "KEY_BYTES", "MIGRATIONS", "MYSQL_DIALECTS", "ORDER_KEY_BYTES",
           "Catalog", "Listing", "Statements", "build_table", "from_micros", "micros",
           "migrate", "order_key", "session_hash"]

MYSQL_DIALECTS = ("mysql", "mariadb")
CATALOG_DIALECTS = (*MYSQL_DIALECTS, "sqlite", "postgresql")
"""The dialects with an upsert, which the catalog's writes need (two first appends may race)."""
MAX_CACHED_ROWS = 64
KEY_BYTES = 1024  # MySQL: the leading bytes of an id's UTF-8 that session_key holds
MAX_INSERT_CHARS = 1_000_000  # MySQL: about the records one INSERT of a bulk write carries
IN_LIST = 500  # sessions per IN (...) list of a bulk read

_HASH = sa.String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"),
                                   *MYSQL_DIALECTS)
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), *MYSQL_DIALECTS)
_MYSQL_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                "mysql_collate": "utf8mb4_bin"}


def session_hash(session_id: str) -> str:
    """The value of ``session_hash`` for ``session_id``: its UTF-8 sha256, in hex."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _in_lists(keys: list[str]) -> list[list[str]]:
    return [keys[start:start + IN_LIST] for start in range(0, len(keys), IN_LIST)]


def build_table(name: str, layout: Layout) -> sa.Table:
    """The table of ``layout`` named ``name`` as version 0 made it, with its session index."""
    if layout == "langchain_community":
        table = sa.Table(name, sa.MetaData(),
                         sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                         sa.Column("session_id", sa.Text), sa.Column("message", _LONG_TEXT),
                         **_MYSQL_TABLE)
        sa.Index(f"{name}_session_idx", table.c.session_id, table.c.id,
                 mysql_length={"session_id": 255}, mariadb_length={"session_id": 255})
        return table
    table = sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("session_hash", _HASH, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("message", _LONG_TEXT, nullable=False),
        **_MYSQL_TABLE)
    sa.Index(f"{name}_session_idx", table.c.session_hash, table.c.id)
    return table


@dataclass
class Listing:
    """How one table's sessions are listed, a page at a time, in code-point order.

    A page reads listing keys from ``:start`` on: through the listing index
    (``page``) once :meth:`has_index` has seen it, else from the table (``scan``:
    a peer's table, or an older one's, until ``create_collection`` adds the index).
    On SQLite and PostgreSQL a key is the id (SQLite's BINARY and PostgreSQL's "C"
    collation order by code point) and ``page`` is a loose index scan
    (:func:`_loose_scan`). On MySQL/MariaDB a key is ``session_key``, the first
    :data:`KEY_BYTES` bytes of the id's UTF-8; a key that long may stand for several
    ids, which ``ties`` (or ``scan_ties``) reads. Other dialects read every id.
    """

    kind: Literal["mysql", "loose", "other"]
    table: str
    scan: TextClause
    page: TextClause | None = None
    index_name: str = ""
    upgrades: tuple[str, ...] = ()  # the DDL that adds the listing index
    ties: TextClause | None = None
    scan_ties: TextClause | None = None
    seen_index: bool = False
    # PostgreSQL: no text holds NUL, so the ids after `after` are those after its part
    # before the first NUL (which alone can be bound).
    cut_at_nul: bool = False

    @classmethod
    def build(cls, table: sa.Table, layout: Layout, dialect: Dialect) -> Listing:
        preparer = dialect.identifier_preparer
        name, quoted = table.name, preparer.format_table(table)
        session_id = preparer.quote("session_id")

        def distinct(key: str, start: str = ":start") -> TextClause:
            return sa.text(f"SELECT DISTINCT {key} FROM {quoted} WHERE {key} >= {start} "
                           "ORDER BY 1 LIMIT :n")

        if dialect.name in MYSQL_DIALECTS:
            index, key = f"{name}_session_key_idx", preparer.quote("session_key")
            utf8 = f"CAST(CONVERT({session_id} USING utf8mb4) AS BINARY)"
            computed = f"LEFT({utf8}, {KEY_BYTES})"

            def ties(by: str) -> TextClause:  # the ids a key of KEY_BYTES bytes stands for
                return sa.text(f"SELECT DISTINCT {utf8} FROM {quoted} WHERE {by} = UNHEX(:key)")

            return cls("mysql", name, distinct(computed, "UNHEX(:start)"),
                       distinct(key, "UNHEX(:start)"), index,
                       (f"ALTER TABLE {quoted} ADD COLUMN {key} VARBINARY({KEY_BYTES}) "
                        f"AS ({computed}) VIRTUAL",
                        f"CREATE INDEX {preparer.quote(index)} ON {quoted} ({key})"),
                       ties=ties(key), scan_ties=ties(computed))
        if dialect.name == "sqlite":
            index = f"{name}_session_{'id_' if layout == 'chathistory' else ''}idx"
            upgrades = (f"CREATE INDEX IF NOT EXISTS {preparer.quote(index)} "
                        f"ON {quoted} ({session_id})",) if layout == "chathistory" else ()
            return cls("loose", name, distinct(session_id), _loose_scan(
                f"{quoted} INDEXED BY {preparer.quote(index)}", session_id), index, upgrades)
        if dialect.name == "postgresql":
            index, ordered = f"{name}_session_c_idx", f'{session_id} COLLATE "C"'
            return cls("loose", name, distinct(ordered), _loose_scan(quoted, ordered), index,
                       (f"CREATE INDEX IF NOT EXISTS {preparer.quote(index)} "
                        f"ON {quoted} ({ordered})",), cut_at_nul=True)
        columns = session_id
        if layout == "chathistory":  # distinct by hash too, whatever the collation
            columns = f"{preparer.quote('session_hash')}, {session_id}"
        return cls("other", name, sa.text(f"SELECT DISTINCT {columns} FROM {quoted}"))

    def has_index(self, connection: Connection) -> bool:
        return sa.inspect(connection).has_index(self.table, self.index_name)

    def pages(self, after: str | None, limit: int) -> Operation[list[str]]:
        """The ids of up to ``limit`` sessions after ``after``, in id order.

        One statement (and one before, until the listing index is seen), and on
        MySQL/MariaDB one more per key that stands for ids of :data:`KEY_BYTES`
        bytes or more.
        """
        if self.page is not None and not self.seen_index:
            self.seen_index = yield self.has_index
        indexed = self.seen_index
        statement = self.page if indexed and self.page is not None else self.scan
        if self.kind == "other":  # every id, sorted here
            found = sorted({row[-1] for row in (yield statement, {})} - {None})
            return [session for session in found if after is None or session > after][:limit]
        if self.kind == "mysql":  # bytes travel as hex: aiomysql cannot bind bytes
            start = (b"" if after is None else after.encode("utf-8")[:KEY_BYTES]).hex()
        else:
            start = after or ""
            if self.cut_at_nul:
                start = start.partition("\x00")[0]
        # The page starts at `after` itself, inclusive: one more row covers it.
        rows = yield statement, {"start": start, "n": limit + 1}
        found = []
        for (key,) in rows:
            if isinstance(key, str):
                ids = [key]
            elif len(key) < KEY_BYTES:
                ids = [key.decode("utf-8")]
            else:
                tied = yield (self.ties if indexed else self.scan_ties), {"key": key.hex()}
                ids = sorted(row[0].decode("utf-8") for row in tied)
            found.extend(session for session in ids if after is None or session > after)
            if len(found) >= limit:
                break
        return found[:limit]


def _loose_scan(source: str, session_id: str) -> TextClause:
    """Up to ``:n`` ids from ``:start`` on, in ``session_id``'s order: one index probe per
    id (the smallest after the last found), never a read of each id's rows."""
    probe = f"SELECT min({session_id}) FROM {source}"
    return sa.text(
        f"WITH RECURSIVE page(session_id, number) AS ("
        f"SELECT ({probe} WHERE {session_id} >= :start), 1 "
        f"UNION ALL SELECT ({probe} WHERE {session_id} > page.session_id), "
        "number + 1 FROM page WHERE page.session_id IS NOT NULL AND number < :n) "
        "SELECT session_id FROM page WHERE session_id IS NOT NULL")


class Statements:
    """The statements of table ``name`` in ``layout``, for ``dialect``, built once: each
    takes :meth:`session`'s parameters."""

    def __init__(self, name: str, layout: Layout, dialect: Dialect) -> None:
        self.table = table = build_table(name, layout)
        # <table>_migrations: a row (v) per step of MIGRATIONS applied
        self.versions = sa.Table(f"{name}_migrations", table.metadata,
                                 sa.Column("v", sa.Integer, primary_key=True,
                                           autoincrement=False), mysql_engine="InnoDB")
        self.layout = layout
        c = table.c
        session_id = sa.bindparam("session_id", type_=sa.Text)
        same_session = c.session_id == session_id
        # A bulk read finds its sessions as single reads do: by hash, or by id.
        by = c.session_hash if layout == "chathistory" else c.session_id
        if layout == "chathistory":
            same_session = sa.and_(c.session_hash == sa.bindparam("session_hash"), same_session)
        elif dialect.name in MYSQL_DIALECTS:
            # The peer's table compares with its collation: case-insensitive for a
            # *_ci one, and blind to trailing spaces for any PAD SPACE one. The bytes
            # are compared too, so "A", "a" and "a " stay three sessions.
            same_session = sa.and_(same_session, sa.cast(c.session_id, sa.LargeBinary)
                                   == sa.cast(session_id, sa.LargeBinary))
        # PostgreSQL without a catalog: the sessions' advisory locks
        self.lock: sa.Select[Any] | None = None
        if dialect.name == "postgresql":
            # pg_advisory_xact_lock(int, int): this table's key space, the session's hash.
            space = zlib.crc32(name.encode()) - (1 << 31)
            ids = sa.func.unnest(sa.bindparam("sessions", type_=postgresql.ARRAY(sa.Text))
                                 ).table_valued("session_id").render_derived()
            self.lock = (sa.select(sa.func.pg_advisory_xact_lock(space, sa.func.hashtext(
                ids.c.session_id))).select_from(ids).order_by(ids.c.session_id))
        newest = (sa.select(c.id, c.message).where(same_session).order_by(c.id.desc())
                  .limit(sa.bindparam("limit", type_=sa.Integer)).subquery("newest"))
        # Typed Select[Any], as SQLAlchemy 2.0 and 2.1 infer them from Column[Any].
        self.select_all: sa.Select[Any] = sa.select(c.message).where(same_session).order_by(c.id)
        self.select_newest: sa.Select[Any] = sa.select(newest.c.message).order_by(newest.c.id)
        self.select_many: sa.Select[Any] = sa.select(c.session_id, c.message).where(
            by.in_(sa.bindparam("sessions", expanding=True))).order_by(by, c.id)
        self.delete = sa.delete(table).where(same_session)
        self.insert = sa.insert(table)
        self.listing = Listing.build(table, layout, dialect)
        # <table>_sessions: the chathistory layout, on a dialect with upserts
        self.catalog = (Catalog(table, dialect) if layout == "chathistory"
                        and dialect.name in CATALOG_DIALECTS else None)
        self.multi_row_inserts: dict[int, TextClause] = {}
        self.checked: set[int] = set()  # the version check_counting saw

    def session(self, session_id: str) -> dict[str, Any]:
        """The bound parameters that select ``session_id``'s rows."""
        if self.layout == "chathistory":
            return {"session_hash": session_hash(session_id), "session_id": session_id}
        return {"session_id": session_id}

    def rows(self, session_id: str, messages: Sequence[str]) -> list[dict[str, Any]]:
        session = self.session(session_id)
        return [{**session, "message": message} for message in messages]

    def claim(self, batches: Mapping[str, int]) -> Operation[None]:
        """Take the write locks of the sessions ``batches`` adds to (id -> records), in
        session order (two bulk writers never cycle), held to the commit and taken before
        their rows get ids: one session's batches get ids, and become visible, one whole
        batch after another. The catalog's counting upsert takes them where one is kept
        (the entry's row lock; on MySQL/MariaDB see :meth:`Catalog.counted`); elsewhere
        PostgreSQL's advisory locks, and SQLite serializes its writers itself.
        MySQL/MariaDB without a catalog takes none (a locking read takes gap locks, and
        concurrent writers deadlocked): its multi-row INSERT keeps a batch's ids
        consecutive (innodb_autoinc_lock_mode 0 or 1)."""
        sessions = sorted(session for session, added in batches.items() if added)
        if self.catalog is not None:
            if self.catalog.trigger is not None and not self.checked:
                yield from self.check_counting()
            upsert = self.catalog.counted(batches)
            if upsert is not None:
                yield upsert
        elif self.lock is not None and sessions:
            yield self.lock, {"sessions": sessions}

    def check_counting(self) -> Operation[None]:
        """Once per backend, before its first append on MySQL/MariaDB: the table is of a
        version whose trigger counts appends (an earlier one's would go uncounted)."""
        ((version,),) = yield sa.select(sa.func.max(self.versions.c.v)), {}
        if version is None or version < COUNTING_VERSION:
            raise CollectionMissingError(
                f"backend 'sqlalchemy': table {self.table.name!r} is of an earlier version "
                "whose catalog this one does not count in (nothing was written); "
                "create_collection() upgrades it in place")
        self.checked.add(version)

    def fetch_many(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        """The stored JSON texts of each session, oldest first: a statement per
        :data:`IN_LIST` sessions, keeping only ids asked for (a collation may match more)."""
        wanted = set(session_ids)
        keys = sorted({session_hash(session) for session in wanted}
                      if self.layout == "chathistory" else wanted)
        found: dict[str, list[str]] = {}
        for part in _in_lists(keys):
            for session, message in (yield self.select_many, {"sessions": part}):
                if session in wanted:
                    found.setdefault(session, []).append(message)
        return found

    def insert_many(self, dialect: Dialect, batches: Sequence[list[dict[str, Any]]]
                    ) -> Operation[None]:
        """Insert each session's rows: on MySQL/MariaDB one multi-row INSERT per about
        :data:`MAX_INSERT_CHARS` characters, never splitting a session; elsewhere one
        executemany. The caller's transaction makes them all or nothing."""
        group: list[dict[str, Any]] = []
        size = 0
        for rows in batches:
            weight = sum(len(row["message"]) for row in rows)
            if group and size + weight > MAX_INSERT_CHARS and dialect.name in MYSQL_DIALECTS:
                yield self.insert_batch(dialect, group)
                group, size = [], 0
            group += rows
            size += weight
        if group:
            yield self.insert_batch(dialect, group)

    def insert_batch(self, dialect: Dialect, rows: list[dict[str, Any]]
                     ) -> tuple[sa.Insert | TextClause,
                                Mapping[str, Any] | list[dict[str, Any]]]:
        """The one statement that inserts ``rows``, and its parameters: on MySQL/MariaDB
        a multi-row INSERT, elsewhere an executemany (:meth:`claim` keeps others out)."""
        if dialect.name not in MYSQL_DIALECTS or len(rows) == 1:
            return self.insert, rows
        statement = self.multi_row_inserts.get(len(rows))
        if statement is None:
            # Named parameters per row (message_0, message_1...), as text built once per
            # size: SQLAlchemy recompiles a multi-VALUES Insert construct on every call
            # (measured: about a third of a 10-row add), but caches a text clause.
            preparer = dialect.identifier_preparer
            columns = list(rows[0])
            values = ", ".join("(" + ", ".join(f":{key}_{number}" for key in columns) + ")"
                               for number in range(len(rows)))
            statement = sa.text(
                f"INSERT INTO {preparer.format_table(self.table)} "
                f"({', '.join(preparer.quote(column) for column in columns)}) VALUES {values}")
            if len(rows) <= MAX_CACHED_ROWS:
                self.multi_row_inserts[len(rows)] = statement
        return statement, {f"{key}_{number}": value for number, row in enumerate(rows)
                           for key, value in row.items()}


# -- the session catalog: <table>_sessions ------------------------------------------------

ORDER_KEY_BYTES = 255
"""The leading bytes of an id's UTF-8 that ``session_key`` holds: the listing's tie-break."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Hex of the bytes: it orders as they do, and binds as text (aiomysql cannot bind bytes).
_KEY = sa.String(2 * ORDER_KEY_BYTES).with_variant(
    mysql.VARCHAR(2 * ORDER_KEY_BYTES, charset="ascii", collation="ascii_bin"), *MYSQL_DIALECTS)
_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL_DIALECTS)
_BACKFILL_ROWS = 1000
TRIGGER_EXISTS = 1359  # MySQL's error: kept (CREATE TRIGGER IF NOT EXISTS is MySQL 8.0.29+)


def micros(moment: datetime) -> int:
    """A timezone-aware time as whole microseconds since the epoch (exact)."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (for example datetime.now(UTC)), "
                         f"not {moment!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def now_micros() -> int:
    return micros(datetime.now(UTC))


def order_key(session_id: str) -> str:
    """The id's UTF-8, cut, in hex: it compares as code points do, as Python orders ``str``."""
    return session_id.encode("utf-8")[:ORDER_KEY_BYTES].hex()


def _build_table(name: str) -> sa.Table:
    table = sa.Table(
        f"{name}_sessions", sa.MetaData(),
        sa.Column("session_hash", _HASH, primary_key=True),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("session_key", _KEY, nullable=False),
        sa.Column("owner_hash", _HASH, nullable=True),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("metadata", _TEXT, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False), **_MYSQL_TABLE)
    c = table.c
    # Short names: <table> may be 48 characters, MySQL's identifiers 64.
    sa.Index(f"{name}_s_updated", c.updated_at, c.session_key, c.session_hash)
    sa.Index(f"{name}_s_owner", c.owner_hash, c.updated_at, c.session_key, c.session_hash)
    return table


class Catalog:
    """The statements of ``<table>_sessions``, the catalog of table ``messages``: a row per
    session, with its owner, title, metadata, both times (microseconds since the epoch)
    and message count. Built once per backend."""

    def __init__(self, messages: sa.Table, dialect: Dialect) -> None:
        self.table = table = _build_table(messages.name)
        self.messages = messages
        c = table.c
        inserted, upsert = _upsert(table, dialect)
        described = {"owner_hash": inserted.owner_hash, "owner": inserted.owner,
                     "title": inserted.title, "metadata": inserted["metadata"]}
        # The upsert after an append: count + n, updated_at moves forward.
        self.count = upsert({
            "messages": c.messages + inserted.messages,
            "updated_at": _greatest(dialect, c.updated_at, inserted.updated_at)})
        # update_session's upsert (owner, title, metadata); restore_summaries' (both times too)
        self.describe = upsert(described)
        self.restore = upsert({
            **described, "created_at": inserted.created_at, "updated_at": inserted.updated_at})
        hashes: sa.BindParameter[Any] = sa.bindparam("hashes", expanding=True)
        self.delete = sa.delete(table).where(c.session_hash.in_(hashes))  # the entries
        self.erase_messages = sa.delete(messages).where(messages.c.session_hash.in_(hashes))
        # Sessions and messages among :hashes.
        self.totals: sa.Select[Any] = sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(c.messages), 0)
        ).where(c.session_hash.in_(hashes))
        # An entry's row, as summary() and position() read it.
        self.entries: sa.Select[Any] = sa.select(
            c.session_id, c.owner, c.title, c["metadata"], c.created_at, c.updated_at,
            c.messages, c.session_key, c.session_hash)
        self.by_hashes = self.entries.where(c.session_hash.in_(hashes))
        # MySQL/MariaDB: the CREATE TRIGGER that counts each insert.
        self.trigger = (_count_trigger(dialect, messages, table)
                        if dialect.name in MYSQL_DIALECTS else None)

    @staticmethod
    def row(session_id: str, *, created_at: int | datetime, updated_at: int | datetime,
            added: int = 0, owner: str | None = None, title: str | None = None,
            metadata: str = "{}") -> dict[str, Any]:
        """The parameters of an upsert for ``session_id`` (times: aware, or microseconds)."""
        return {"session_hash": session_hash(session_id), "session_id": session_id,
                "session_key": order_key(session_id),
                "owner_hash": None if owner is None else session_hash(owner), "owner": owner,
                "title": title, "metadata": metadata, "messages": added,
                "created_at": created_at if isinstance(created_at, int) else micros(created_at),
                "updated_at": updated_at if isinstance(updated_at, int) else micros(updated_at)}

    def counted(self, batches: Mapping[str, int]) -> tuple[Any, list[dict[str, Any]]] | None:
        """The upsert that counts ``batches`` (session id -> messages added), or None.

        Where :attr:`trigger` counts each inserted row (MySQL/MariaDB), a batch of one
        session needs none: the trigger's upsert, run before the first row is written,
        takes the entry's lock before InnoDB gives the statement its ids. Batches of
        several sessions upsert their entries first, counting nothing, to take every
        lock before any id, in one order."""
        counts = {session_id: added for session_id, added in batches.items() if added}
        if self.trigger is not None:
            if len(counts) < 2:
                return None  # before reading the clock: every turn's append comes here
            counts = dict.fromkeys(counts, 0)  # the trigger counts each row
        now = now_micros()
        rows = [self.row(session_id, added=added, created_at=now, updated_at=now)
                for session_id, added in counts.items()]
        # One order, so bulk writes of the same sessions never deadlock (then retried).
        rows.sort(key=lambda row: row["session_hash"])
        return (self.count, rows) if rows else None

    @staticmethod
    def chunks(session_ids: Iterable[str]) -> list[dict[str, list[str]]]:
        """The ``:hashes`` of ``session_ids``, sorted (one lock order), :data:`IN_LIST` a list."""
        return [{"hashes": part}
                for part in _in_lists(sorted({session_hash(id_) for id_ in session_ids}))]

    @staticmethod
    def summary(row: Sequence[Any]) -> SessionSummary:
        session_id, owner, title, metadata, created_at, updated_at, messages = row[:7]
        return SessionSummary(session_id, owner, title, json.loads(metadata),
                              from_micros(created_at), from_micros(updated_at), int(messages))

    @staticmethod
    def position(row: Sequence[Any]) -> list[Any]:
        """A row's place in the listing, as JSON values: (updated_at, key, hash)."""
        return [row[5], row[7], row[8]]

    def page(self, *, owner: str | None, newest_first: bool, after: Sequence[Any] | None,
             limit: int) -> tuple[sa.Select[Any], dict[str, Any]]:
        """One ordered read of the listing: an index range of (owner,) updated_at, key, hash."""
        c = self.table.c
        statement = self.entries
        params: dict[str, Any] = {"n": limit}
        if owner is not None:
            statement = statement.where(c.owner_hash == sa.bindparam("owner_hash"))
            params["owner_hash"] = session_hash(owner)
        if after is not None:
            # Spelled out (a row comparison is a range only on some MySQL/MariaDB versions).
            # MariaDB 10.11 walks the owner's index entries from the newest to the cursor:
            # a later page costs its depth in that owner's sessions, never the store's.
            time: Any = sa.bindparam("at")
            key: Any = sa.bindparam("key")
            digest: Any = sa.bindparam("hash")

            def before(column: Any, value: Any) -> Any:
                return column < value if newest_first else column > value

            statement = statement.where(sa.or_(
                before(c.updated_at, time),
                sa.and_(c.updated_at == time, sa.or_(
                    before(c.session_key, key),
                    sa.and_(c.session_key == key, before(c.session_hash, digest))))))
            params.update(at=after[0], key=after[1], hash=after[2])
        order = [c.updated_at, c.session_key, c.session_hash]
        statement = statement.order_by(*(column.desc() if newest_first else column.asc()
                                         for column in order))
        return statement.limit(sa.bindparam("n", type_=sa.Integer)), params

    def prune(self, cutoff: datetime, owner: str | None
              ) -> tuple[sa.Select[Any], sa.Delete, sa.Delete, dict[str, Any]]:
        """A prune's count, its deletes (messages, then entries) and their parameters."""
        c = self.table.c
        condition = c.updated_at < sa.bindparam("cutoff")
        params: dict[str, Any] = {"cutoff": micros(cutoff)}
        if owner is not None:
            condition = sa.and_(condition, c.owner_hash == sa.bindparam("owner_hash"),
                                c.owner == sa.bindparam("owner"))
            params.update(owner_hash=session_hash(owner), owner=owner)
        old = sa.select(c.session_hash).where(condition)
        return (sa.select(sa.func.count()).select_from(self.table).where(condition),
                sa.delete(self.messages).where(self.messages.c.session_hash.in_(old)),
                sa.delete(self.table).where(condition), params)

    def create(self, connection: Connection) -> None:
        """Version 2: the table and its indexes, and a row for each session already stored
        (its times are the upgrade's: the table kept none). Entries found here are
        those of a message table since dropped (its versions were lost with it): stale."""
        self.table.create(connection, checkfirst=True)
        for index in self.table.indexes:
            index.create(connection, checkfirst=True)
        connection.execute(sa.delete(self.table))
        m = self.messages.c
        counts = connection.execute(
            sa.select(m.session_hash, sa.func.min(m.session_id), sa.func.count())
            .group_by(m.session_hash))
        now = now_micros()
        while rows := counts.fetchmany(_BACKFILL_ROWS):
            connection.execute(sa.insert(self.table), [
                self.row(session_id, added=added, created_at=now, updated_at=now)
                for _, session_id, added in rows])


def _count_trigger(dialect: Dialect, messages: sa.Table, table: sa.Table) -> str:
    """A row-level trigger, run BEFORE each INSERT's row: the catalog's upsert of that
    row's session (the count, ``updated_at``: the server's clock, UTC microseconds).
    MySQL has no statement-level trigger; each row's upsert is one in-server write.
    A row without ``session_hash`` (``SQLChatMessageHistory`` knows only ``session_id``
    and ``message``) gets it here: the peer class can write to this table too."""
    quote = dialect.identifier_preparer.quote
    key = (f"LOWER(HEX(LEFT(CAST(CONVERT(NEW.session_id USING utf8mb4) AS BINARY), "
           f"{ORDER_KEY_BYTES})))")
    now = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"
    return (f"CREATE TRIGGER {quote(messages.name + '_count')} BEFORE INSERT ON "
            f"{quote(messages.name)} FOR EACH ROW BEGIN "
            "IF NEW.session_hash IS NULL OR NEW.session_hash = '' THEN "
            "SET NEW.session_hash = SHA2(NEW.session_id, 256); END IF; "
            f"INSERT INTO {quote(table.name)} "
            "(session_hash, session_id, session_key, metadata, created_at, updated_at, "
            f"messages) VALUES (NEW.session_hash, NEW.session_id, {key}, '{{}}', {now}, "
            f"{now}, 1) ON DUPLICATE KEY UPDATE messages = messages + 1, "
            "updated_at = GREATEST(updated_at, VALUES(updated_at)); END")


def _upsert(table: sa.Table, dialect: Dialect) -> tuple[Any, Callable[[dict[str, Any]], Any]]:
    """The row an INSERT into ``table`` would write, and the upsert that sets ``values``
    on the stored row when its ``session_hash`` is taken."""
    if dialect.name in MYSQL_DIALECTS:
        insert: Any = mysql.insert(table)
        return insert.inserted, insert.on_duplicate_key_update
    insert = (sqlite.insert if dialect.name == "sqlite" else postgresql.insert)(table)
    return insert.excluded, lambda values: insert.on_conflict_do_update(
        index_elements=[table.c.session_hash], set_=values)


def _greatest(dialect: Dialect, first: Any, second: Any) -> Any:
    # A clock a little behind another writer's never moves a session back in the listing.
    if dialect.name == "sqlite":
        return sa.func.max(first, second)
    return sa.func.greatest(first, second)


# -- the schema's versioned steps ---------------------------------------------------------

def _create_table(connection: Connection, statements: Statements) -> None:
    """Version 0: the table (of :func:`build_table`) and its session index (a peer's
    table, or one made before versions were kept, gets the index)."""
    statements.table.create(connection, checkfirst=True)
    for index in statements.table.indexes:
        index.create(connection, checkfirst=True)


def _listing_index(connection: Connection, statements: Statements) -> None:
    """Version 1: what lists sessions in code-point order (:class:`Listing`), if missing:
    the listing index (and on MySQL/MariaDB first ``session_key``)."""
    listing, upgrades = statements.listing, statements.listing.upgrades
    if listing.kind == "mysql" and "session_key" in {
            column["name"] for column in sa.inspect(connection).get_columns(listing.table)}:
        upgrades = () if listing.has_index(connection) else upgrades[1:]
    for statement in upgrades:
        connection.execute(sa.text(statement))


def _session_catalog(connection: Connection, statements: Statements) -> None:
    """Version 2: the session catalog, ``<table>_sessions`` (where the table keeps one)."""
    if statements.catalog is not None:
        statements.catalog.create(connection)


def _counting_trigger(connection: Connection, statements: Statements) -> None:
    """Version 3: on MySQL/MariaDB, the trigger that counts each inserted row in the catalog
    (the upsert before an append goes: one round trip fewer). Elsewhere nothing."""
    trigger = statements.catalog.trigger if statements.catalog is not None else None
    if trigger is None:
        return
    try:
        connection.exec_driver_sql(trigger)
    except sa.exc.OperationalError as error:
        if error_code(error) != TRIGGER_EXISTS:  # a table whose versions were lost
            raise


def _postgres_listing_index(connection: Connection, statements: Statements) -> None:
    """Version 4: on PostgreSQL, the listing index, on ``session_id COLLATE "C"`` (step 1
    made none there before it did). Elsewhere nothing."""
    if connection.dialect.name == "postgresql":
        _listing_index(connection, statements)


COUNTING_VERSION = 3  # MySQL/MariaDB: the catalog counts appends by trigger from here
MIGRATIONS: list[Callable[[Connection, Statements], None]] = [
    _create_table, _listing_index, _session_catalog, _counting_trigger,
    _postgres_listing_index]
"""The schema, as the steps that make it, oldest first: a step's index is its version.

Append only: a new column is one new step at the end (an ``ALTER TABLE``), and
never a change to :func:`build_table`, which is the table of version 0. Steps
0 and 1 check what exists, since tables made before versions were kept (and
peers' tables) start from nothing recorded; later steps run once per table.
"""


def migrate(connection: Connection, statements: Statements) -> None:
    """Apply the steps of :data:`MIGRATIONS` that ``<table>_migrations`` lacks, in order.

    An existing table of the other layout is refused (``ConfigError``) before any.
    """
    inspector = sa.inspect(connection)
    table, versions = statements.table, statements.versions
    done: int | None = None
    if inspector.has_table(table.name):
        missing = {column.name for column in table.columns} - {
            column["name"] for column in inspector.get_columns(table.name)}
        if missing:
            raise ConfigError(
                f"backend 'sqlalchemy': table {table.name!r} exists but is not a "
                f"{statements.layout!r} table (it lacks {', '.join(sorted(missing))}); "
                "choose another table, or the layout that matches it")
        if inspector.has_table(versions.name):
            done = connection.execute(sa.select(sa.func.max(versions.c.v))).scalar()
    versions.create(connection, checkfirst=True)
    if done is None:  # nothing recorded, or what was recorded of a table since dropped
        connection.execute(sa.delete(versions))
        done = -1
    for version in range(done + 1, len(MIGRATIONS)):
        MIGRATIONS[version](connection, statements)
        connection.execute(sa.insert(versions), {"v": version})
