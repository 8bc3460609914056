"""The table of each layout and the statements the backend runs, in SQLAlchemy Core.

Names reach SQL only through SQLAlchemy's ``Table``/``Index``, which the
dialect quotes; session ids and records only ever travel as bound parameters.

Layout ``chathistory`` (the default)::

    id            BIGINT autoincrement primary key    (INTEGER on SQLite: its rowid)
    session_hash  VARCHAR(64)  sha256 of the session id, hex (ascii_bin on MySQL/MariaDB)
    session_id    TEXT         the session id itself
    message       TEXT         the record's JSON (LONGTEXT on MySQL/MariaDB)
    index <table>_session_idx (session_hash, id)

The session is found by its hash, so the index has a fixed, small key
whatever the id's length (MySQL cannot index a TEXT column whole, and
VARCHAR(255) is too short); the statements compare ``session_id`` too, so a
hash collision could never mix two sessions.

Layout ``langchain_community``: ``SQLChatMessageHistory``'s table (``id``
INTEGER primary key, ``session_id`` TEXT, ``message`` TEXT), used in place,
plus an index ``<table>_session_idx`` on (session_id, id) (a 255-character
prefix of session_id on MySQL/MariaDB), which that class ignores. On
MySQL/MariaDB the statements also compare the session id's bytes, since the
table's collation may fold case or ignore trailing spaces.

Listing sessions in id order (code-point order, as Python sorts ``str``)
needs an index whose order is that one, which each dialect gets its own way
(:class:`Listing`): on MySQL/MariaDB, where a TEXT column is indexed only by
a prefix and under its collation, a virtual column ``session_key``
(VARBINARY: the first :data:`KEY_BYTES` bytes of the id's UTF-8) and an
index ``<table>_session_key_idx`` on it, in both layouts; on SQLite an index
on session_id (``<table>_session_id_idx`` in our layout; the langchain
layout's ``<table>_session_idx`` serves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Delete,
    Executable,
    Index,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import TextClause

from chathistory import ConfigError
from chathistory_sqlalchemy.config import Layout

__all__ = ["KEY_BYTES", "MIGRATIONS", "MYSQL_DIALECTS", "Job", "Listing", "Statements",
           "build_table", "migrate", "session_hash"]

T = TypeVar("T")

MYSQL_DIALECTS = ("mysql", "mariadb")
MAX_CACHED_ROWS = 64
KEY_BYTES = 1024
"""MySQL/MariaDB: how many leading bytes of a session id's UTF-8 ``session_key`` holds.

An id that long or longer may share its key with others; a page tells those
apart by reading their rows (:attr:`Listing.ties`)."""
MAX_INSERT_CHARS = 1_000_000
"""MySQL/MariaDB: about how many characters of records one INSERT of a bulk write
carries (a session is never split), well inside ``max_allowed_packet``."""
IN_LIST = 500
"""Sessions per ``IN (...)`` list of a bulk read (bound parameters are limited)."""

Job = Generator[tuple[Executable, Mapping[str, Any] | list[dict[str, Any]]],
                Sequence[Sequence[Any]], T]
"""Yields (statement, parameters) and receives each one's rows, then returns its result:
run on one connection by sync and async code alike."""

_LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), *MYSQL_DIALECTS)


def session_hash(session_id: str) -> str:
    """The value of ``session_hash`` for ``session_id``: its UTF-8 sha256, in hex."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def build_table(name: str, layout: Layout) -> Table:
    """The table of ``layout`` named ``name``, with its index, in a metadata of its own."""
    metadata = MetaData()
    if layout == "langchain_community":
        table = Table(
            name, metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("session_id", Text),
            Column("message", _LONG_TEXT),
            mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin",
        )
        Index(f"{name}_session_idx", table.c.session_id, table.c.id,
              mysql_length={"session_id": 255}, mariadb_length={"session_id": 255})
        return table
    table = Table(
        name, metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("session_hash", String(64).with_variant(
            mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), *MYSQL_DIALECTS),
            nullable=False),
        Column("session_id", Text, nullable=False),
        Column("message", _LONG_TEXT, nullable=False),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin",
    )
    Index(f"{name}_session_idx", table.c.session_hash, table.c.id)
    return table


ListingKind = Literal["mysql", "sqlite", "other"]


@dataclass(frozen=True)
class Listing:
    """How one table's sessions are listed, a page at a time, in code-point order.

    ``page`` reads a page through the listing index (or ``None``, on a dialect
    where there is none); ``scan`` reads the same page from the table, for a
    table that :meth:`upgrade` has not given its index yet (a peer's table
    read in place, or one made by an older version). Both take ``start`` (the
    page's first possible id, inclusive) and ``n`` (how many ids at most).

    - MySQL/MariaDB: ``page`` groups ``session_key`` through its index (a
      loose index scan, "Using index for group-by", where sessions hold many
      rows), and gives keys: a key shorter than :data:`KEY_BYTES` is the id's
      whole UTF-8, a longer one may stand for several ids, which ``ties``
      reads. ``scan`` and ``scan_ties`` compute the same keys over the whole
      table. (Keys, not whole ids, are sorted: the server sorts only the
      first ``max_sort_length`` bytes of a value, 1,024 by default.)
    - SQLite: ``page`` is a recursive query that steps from one session to
      the next with ``min(session_id) ... > previous``, one index probe each
      (``INDEXED BY``, so a missing index fails instead of scanning);
      ``scan`` is ``SELECT DISTINCT ... ORDER BY``, which walks every row.
    - other dialects: ``scan`` reads every distinct id, sorted here (their
      collations need not be code-point order).
    """

    kind: ListingKind
    page: TextClause | None
    scan: TextClause
    ties: TextClause | None
    scan_ties: TextClause | None
    index_name: str | None
    """The listing index: created by :meth:`upgrade`, or the table's own (SQLite, langchain)."""
    upgrades: tuple[str, ...]
    """MySQL: the DDL adding ``session_key`` and its index; SQLite: the index's."""

    @classmethod
    def build(cls, table: Table, layout: Layout, dialect: Dialect) -> Listing:
        preparer = dialect.identifier_preparer
        name, quoted = table.name, preparer.format_table(table)
        session_id = preparer.quote("session_id")
        if dialect.name in MYSQL_DIALECTS:
            index = f"{name}_session_key_idx"
            utf8 = f"CAST(CONVERT({session_id} USING utf8mb4) AS BINARY)"
            computed = f"LEFT({utf8}, {KEY_BYTES})"
            key = preparer.quote("session_key")
            return cls(
                kind="mysql",
                page=text(f"SELECT {key} FROM {quoted} WHERE {key} >= UNHEX(:start) "
                          f"GROUP BY {key} ORDER BY {key} LIMIT :n"),
                scan=text(f"SELECT DISTINCT {computed} AS k FROM {quoted} "
                          f"WHERE {computed} >= UNHEX(:start) ORDER BY k LIMIT :n"),
                ties=text(f"SELECT DISTINCT {utf8} FROM {quoted} WHERE {key} = UNHEX(:key)"),
                scan_ties=text(f"SELECT DISTINCT {utf8} FROM {quoted} "
                               f"WHERE {computed} = UNHEX(:key)"),
                index_name=index,
                upgrades=(
                    f"ALTER TABLE {quoted} ADD COLUMN {key} VARBINARY({KEY_BYTES}) "
                    f"AS ({computed}) VIRTUAL",
                    f"CREATE INDEX {preparer.quote(index)} ON {quoted} ({key})",
                ),
            )
        if dialect.name == "sqlite":
            if layout == "chathistory":
                index = f"{name}_session_id_idx"
                upgrades: tuple[str, ...] = (
                    f"CREATE INDEX IF NOT EXISTS {preparer.quote(index)} "
                    f"ON {quoted} ({session_id})",)
            else:
                index, upgrades = f"{name}_session_idx", ()
            probe = f"SELECT min({session_id}) FROM {quoted} INDEXED BY {preparer.quote(index)}"
            return cls(
                kind="sqlite",
                page=text(
                    f"WITH RECURSIVE page(session_id, number) AS ("
                    f"SELECT ({probe} WHERE {session_id} >= :start), 1 "
                    f"UNION ALL SELECT ({probe} WHERE {session_id} > page.session_id), "
                    "number + 1 FROM page WHERE page.session_id IS NOT NULL AND number < :n) "
                    "SELECT session_id FROM page WHERE session_id IS NOT NULL"),
                scan=text(f"SELECT DISTINCT {session_id} FROM {quoted} "
                          f"WHERE {session_id} >= :start ORDER BY {session_id} LIMIT :n"),
                ties=None,
                scan_ties=None,
                index_name=index,
                upgrades=upgrades,
            )
        columns = session_id
        if layout == "chathistory":  # distinct by hash too, whatever the collation
            columns = f"{preparer.quote('session_hash')}, {session_id}"
        return cls(kind="other", page=None, scan=text(f"SELECT DISTINCT {columns} FROM {quoted}"),
                   ties=None, scan_ties=None, index_name=None, upgrades=())

    def upgrade(self, connection: Connection, table: str) -> None:
        """Give ``table`` its listing index (and on MySQL/MariaDB ``session_key``) if missing."""
        inspector = inspect(connection)
        upgrades = list(self.upgrades)
        if self.kind == "mysql" and "session_key" in {
                column["name"] for column in inspector.get_columns(table)}:
            indexes = {index["name"] for index in inspector.get_indexes(table)}
            upgrades = [] if self.index_name in indexes else upgrades[1:]
        for statement in upgrades:
            connection.execute(text(statement))

    def pages(self, after: str | None, limit: int, *, scan: bool = False) -> Job[list[str]]:
        """The ids of the page of up to ``limit`` sessions after ``after``, in id order.

        One statement, and on MySQL/MariaDB one more for each key that stands for
        ids of :data:`KEY_BYTES` bytes or longer. ``scan`` reads the table instead
        of the listing index.
        """
        if self.kind == "other":
            rows = yield self.scan, {}
            ids = sorted({row[-1] for row in rows if row[-1] is not None})
            return [session for session in ids if after is None or session > after][:limit]
        # The page starts at `after` itself, inclusive: one more row covers it.
        params: dict[str, Any] = {"n": limit + 1}
        if self.kind == "sqlite":
            params["start"] = after or ""
            rows = yield (self.scan if scan or self.page is None else self.page), params
            found = [row[0] for row in rows]
            return [session for session in found if after is None or session > after][:limit]
        # Bytes travel as hex: aiomysql cannot bind bytes with the PyMySQL of today.
        start = b"" if after is None else after.encode("utf-8")[:KEY_BYTES]
        params["start"] = start.hex()
        rows = yield (self.scan if scan or self.page is None else self.page), params
        ties = self.scan_ties if scan else self.ties
        assert ties is not None
        found = []
        for (key,) in rows:
            if len(key) < KEY_BYTES:
                ids = [key.decode("utf-8")]
            else:
                tied = yield ties, {"key": key.hex()}
                ids = sorted(row[0].decode("utf-8") for row in tied)
            found.extend(session for session in ids if after is None or session > after)
            if len(found) >= limit:
                break
        return found[:limit]


@dataclass(frozen=True)
class Statements:
    """The statements of one table, built once and executed with bound parameters.

    Every statement takes the parameters :meth:`session` gives; ``select_newest``
    takes ``limit`` as well.
    """

    table: Table
    versions: Table
    """``<table>_migrations``: one row (``v``) per step of :data:`MIGRATIONS` applied."""
    layout: Layout
    select_all: Select[tuple[str]]
    select_newest: Select[tuple[str]]
    select_many: Select[tuple[str, str]]
    delete: Delete
    insert: Insert
    listing: Listing
    multi_row_inserts: dict[int, TextClause] = field(default_factory=dict, repr=False)
    """The multi-row INSERT of each batch size seen (up to MAX_CACHED_ROWS), built once."""

    @classmethod
    def build(cls, name: str, layout: Layout, dialect: Dialect) -> Statements:
        """The statements of table ``name`` in ``layout``, for ``dialect``."""
        table = build_table(name, layout)
        c = table.c
        session_id = bindparam("session_id", type_=Text)
        same_session = c.session_id == session_id
        # A bulk read finds its sessions as single reads do: by hash, or by id.
        if layout == "chathistory":
            same_session = and_(c.session_hash == bindparam("session_hash"), same_session)
            select_many = (select(c.session_id, c.message)
                           .where(c.session_hash.in_(bindparam("sessions", expanding=True)))
                           .order_by(c.session_hash, c.id))
        else:
            select_many = (select(c.session_id, c.message)
                           .where(c.session_id.in_(bindparam("sessions", expanding=True)))
                           .order_by(c.session_id, c.id))
        if layout == "langchain_community" and dialect.name in MYSQL_DIALECTS:
            # The peer's table compares with its collation: case-insensitive for a
            # *_ci one, and blind to trailing spaces for any PAD SPACE one. The bytes
            # are compared too, so "A", "a" and "a " stay three sessions.
            same_session = and_(same_session, cast(c.session_id, LargeBinary)
                                == cast(session_id, LargeBinary))
        newest = (select(c.id, c.message).where(same_session).order_by(c.id.desc())
                  .limit(bindparam("limit", type_=Integer)).subquery("newest"))
        return cls(
            table=table,
            versions=Table(f"{name}_migrations", table.metadata,
                           Column("v", Integer, primary_key=True, autoincrement=False),
                           mysql_engine="InnoDB"),
            layout=layout,
            select_all=select(c.message).where(same_session).order_by(c.id),
            select_newest=select(newest.c.message).order_by(newest.c.id),
            select_many=select_many,
            delete=delete(table).where(same_session),
            insert=insert(table),
            listing=Listing.build(table, layout, dialect),
        )

    @property
    def index(self) -> Index:
        (index,) = self.table.indexes
        return index

    @property
    def columns(self) -> set[str]:
        return {column.name for column in self.table.columns}

    def check_columns(self, found: set[str]) -> None:
        """Refuse an existing table that is not of this layout."""
        missing = {column.name for column in self.table.columns} - found
        if missing:
            raise ConfigError(
                f"backend 'sqlalchemy': table {self.table.name!r} exists but is not a "
                f"{self.layout!r} table (it lacks {', '.join(sorted(missing))}); "
                "choose another table, or the layout that matches it")

    def session(self, session_id: str) -> dict[str, Any]:
        """The bound parameters that select ``session_id``'s rows."""
        if self.layout == "chathistory":
            return {"session_hash": session_hash(session_id), "session_id": session_id}
        return {"session_id": session_id}

    def fetch_many(self, session_ids: Sequence[str]) -> Job[dict[str, list[str]]]:
        """Every stored JSON text of each of ``session_ids``, oldest first, by session.

        One statement per :data:`IN_LIST` sessions. A row is kept only when its
        session_id is exactly one asked for (a collation may match more).
        """
        wanted = set(session_ids)
        keys = sorted({session_hash(session) for session in wanted}
                      if self.layout == "chathistory" else wanted)
        found: dict[str, list[str]] = {}
        for start in range(0, len(keys), IN_LIST):
            rows = yield self.select_many, {"sessions": keys[start:start + IN_LIST]}
            for row in rows:
                if row[0] in wanted:
                    found.setdefault(row[0], []).append(row[1])
        return found

    def insert_many(self, dialect: Dialect, batches: Sequence[list[dict[str, Any]]]) -> Job[None]:
        """Insert the rows of each session (each a list from :meth:`rows`), in order.

        Elsewhere than on MySQL/MariaDB, one executemany of every row. On
        MySQL/MariaDB, :meth:`insert_batch`'s multi-row INSERT of as many whole
        sessions as fit in about :data:`MAX_INSERT_CHARS` characters of records
        (one session's rows are never split, so each gets consecutive ids as an
        append does); the caller's transaction makes them all or nothing.
        """
        if dialect.name not in MYSQL_DIALECTS:
            everything = [row for rows in batches for row in rows]
            if everything:
                yield self.insert_batch(dialect, everything)
            return None
        group: list[dict[str, Any]] = []
        size = 0
        for rows in batches:
            weight = sum(len(row["message"]) for row in rows)
            if group and size + weight > MAX_INSERT_CHARS:
                yield self.insert_batch(dialect, group)
                group, size = [], 0
            group.extend(rows)
            size += weight
        if group:
            yield self.insert_batch(dialect, group)
        return None

    def rows(self, session_id: str, messages: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of a batch: one per encoded record, in order."""
        if self.layout == "chathistory":
            digest = session_hash(session_id)
            return [{"session_hash": digest, "session_id": session_id, "message": message}
                    for message in messages]
        return [{"session_id": session_id, "message": message} for message in messages]

    def insert_batch(self, dialect: Dialect, rows: list[dict[str, Any]]
                     ) -> tuple[Insert | TextClause, Mapping[str, Any] | list[dict[str, Any]]]:
        """The one statement (and its parameters) that inserts ``rows``.

        On MySQL/MariaDB a single multi-row INSERT: one statement is what
        gives a batch consecutive AUTO_INCREMENT ids while others write to the
        table (InnoDB's lock modes 0 and 1), whatever its size. Elsewhere an
        executemany of one INSERT, inside the caller's transaction.
        """
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
            statement = text(
                f"INSERT INTO {preparer.format_table(self.table)} "
                f"({', '.join(preparer.quote(column) for column in columns)}) VALUES {values}")
            if len(rows) <= MAX_CACHED_ROWS:
                self.multi_row_inserts[len(rows)] = statement
        return statement, {f"{key}_{number}": value for number, row in enumerate(rows)
                           for key, value in row.items()}


Step = Callable[[Connection, Statements], None]


def _create_table(connection: Connection, statements: Statements) -> None:
    """Version 0: the table (of :func:`build_table`) and its session index.

    A peer's table, or one made before versions were kept, gets the index.
    """
    statements.table.create(connection, checkfirst=True)
    statements.index.create(connection, checkfirst=True)


def _listing_index(connection: Connection, statements: Statements) -> None:
    """Version 1: what lists sessions in code-point order (:class:`Listing`), if missing."""
    statements.listing.upgrade(connection, statements.table.name)


MIGRATIONS: list[Step] = [_create_table, _listing_index]
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
    inspector = inspect(connection)
    table, versions = statements.table, statements.versions
    done: int | None = None
    if inspector.has_table(table.name):
        statements.check_columns({column["name"] for column in
                                  inspector.get_columns(table.name)})
        if inspector.has_table(versions.name):
            done = connection.execute(select(func.max(versions.c.v))).scalar()
    versions.create(connection, checkfirst=True)
    if done is None:  # nothing recorded, or what was recorded of a table since dropped
        connection.execute(delete(versions))
        done = -1
    for version in range(done + 1, len(MIGRATIONS)):
        MIGRATIONS[version](connection, statements)
        connection.execute(insert(versions), {"v": version})
