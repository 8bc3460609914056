"""The session catalog's table, ``<table>_sessions``, and its statements in SQLAlchemy Core.

One row per session of the ``chathistory`` layout: its owner, title, metadata,
both times (microseconds since the epoch) and message count. The count and the
last-updated time move in the statement before the append's insert, in the
append's transaction (an upsert, so two first appends of one session race safely).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from chathistory.catalog import SessionSummary
from chathistory_sqlalchemy.sql import MYSQL_DIALECTS, session_hash

__all__ = ["CATALOG_DIALECTS", "ORDER_KEY_BYTES", "Catalog", "from_micros", "micros",
           "order_key"]

CATALOG_DIALECTS = (*MYSQL_DIALECTS, "sqlite", "postgresql")
"""The dialects with an upsert, which the catalog's writes need (two first appends may race)."""

ORDER_KEY_BYTES = 255
"""The leading bytes of an id's UTF-8 that ``session_key`` holds: the listing's tie-break."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HASH = sa.String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"),
                                   *MYSQL_DIALECTS)
# Hex of the bytes: it orders as they do, and binds as text (aiomysql cannot bind bytes).
_KEY = sa.String(2 * ORDER_KEY_BYTES).with_variant(
    mysql.VARCHAR(2 * ORDER_KEY_BYTES, charset="ascii", collation="ascii_bin"), *MYSQL_DIALECTS)
_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL_DIALECTS)
_BACKFILL_ROWS = 1000


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
        sa.Column("messages", sa.BigInteger, nullable=False),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin")
    c = table.c
    # Short names: <table> may be 48 characters, MySQL's identifiers 64.
    sa.Index(f"{name}_s_updated", c.updated_at, c.session_key, c.session_hash)
    sa.Index(f"{name}_s_owner", c.owner_hash, c.updated_at, c.session_key, c.session_hash)
    return table


@dataclass(frozen=True)
class Catalog:
    """The statements of one ``<table>_sessions``, built once per backend."""

    table: sa.Table
    messages: sa.Table
    count: Any  # the upsert after an append: count + n, updated_at moves forward
    describe: Any  # the upsert of update_session: owner, title, metadata
    restore: Any  # the upsert of restore_summaries: also both times
    delete: sa.Delete  # the entries of :hashes
    erase_messages: sa.Delete  # the messages of :hashes
    totals: sa.Select[Any]  # sessions and messages among :hashes
    columns: tuple[sa.ColumnElement[Any], ...]

    @classmethod
    def build(cls, messages: sa.Table, dialect: Dialect) -> Catalog:
        table = _build_table(messages.name)
        c = table.c
        insert, inserted = _upsert(table, dialect)
        return cls(
            table=table, messages=messages,
            count=_on_conflict(insert, dialect, table, {
                "messages": c.messages + inserted.messages,
                "updated_at": _greatest(dialect, c.updated_at, inserted.updated_at)}),
            describe=_on_conflict(insert, dialect, table, {
                "owner_hash": inserted.owner_hash, "owner": inserted.owner,
                "title": inserted.title, "metadata": inserted["metadata"]}),
            restore=_on_conflict(insert, dialect, table, {
                "owner_hash": inserted.owner_hash, "owner": inserted.owner,
                "title": inserted.title, "metadata": inserted["metadata"],
                "created_at": inserted.created_at, "updated_at": inserted.updated_at}),
            delete=sa.delete(table).where(
                c.session_hash.in_(sa.bindparam("hashes", expanding=True))),
            erase_messages=sa.delete(messages).where(
                messages.c.session_hash.in_(sa.bindparam("hashes", expanding=True))),
            totals=sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(c.messages), 0))
            .where(c.session_hash.in_(sa.bindparam("hashes", expanding=True))),
            columns=(c.session_id, c.owner, c.title, c["metadata"], c.created_at,
                     c.updated_at, c.messages, c.session_key, c.session_hash))

    @staticmethod
    def row(session_id: str, *, created_at: int, updated_at: int, added: int = 0,
            owner: str | None = None, title: str | None = None, metadata: str = "{}"
            ) -> dict[str, Any]:
        """The parameters of an upsert for ``session_id``."""
        return {"session_hash": session_hash(session_id), "session_id": session_id,
                "session_key": order_key(session_id),
                "owner_hash": None if owner is None else session_hash(owner), "owner": owner,
                "title": title, "metadata": metadata, "created_at": created_at,
                "updated_at": updated_at, "messages": added}

    def counted(self, batches: Mapping[str, int]) -> tuple[Any, list[dict[str, Any]]] | None:
        """The upsert that counts ``batches`` (session id -> messages added), or None."""
        now = now_micros()
        rows = [self.row(session_id, added=added, created_at=now, updated_at=now)
                for session_id, added in batches.items() if added]
        # One order, so bulk writes of the same sessions never deadlock (then retried).
        rows.sort(key=lambda row: row["session_hash"])
        return (self.count, rows) if rows else None

    def select(self) -> sa.Select[Any]:
        return sa.select(*self.columns)

    def by_hashes(self) -> sa.Select[Any]:
        return self.select().where(
            self.table.c.session_hash.in_(sa.bindparam("hashes", expanding=True)))

    def page(self, *, owner: str | None, newest_first: bool, after: Sequence[Any] | None,
             limit: int) -> tuple[sa.Select[Any], dict[str, Any]]:
        """One ordered read of the listing: an index range of (owner,) updated_at, key, hash."""
        c = self.table.c
        statement = self.select()
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

    def prune(self, cutoff: int, owner: str | None
              ) -> tuple[sa.Select[Any], sa.Delete, sa.Delete, dict[str, Any]]:
        """A prune's count, its deletes (messages, then entries) and their parameters."""
        c = self.table.c
        condition = c.updated_at < sa.bindparam("cutoff")
        params: dict[str, Any] = {"cutoff": cutoff}
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


def summary(row: Sequence[Any]) -> SessionSummary:
    session_id, owner, title, metadata, created_at, updated_at, messages = row[:7]
    return SessionSummary(session_id, owner, title, json.loads(metadata),
                          from_micros(created_at), from_micros(updated_at), int(messages))


def position(row: Sequence[Any]) -> list[Any]:
    """A row's place in the listing, as JSON values: (updated_at, key, hash)."""
    return [row[5], row[7], row[8]]


def _upsert(table: sa.Table, dialect: Dialect) -> tuple[Any, Any]:
    if dialect.name in MYSQL_DIALECTS:
        statement: Any = mysql.insert(table)
        return statement, statement.inserted
    statement = (sqlite.insert(table) if dialect.name == "sqlite"
                 else postgresql.insert(table))
    return statement, statement.excluded


def _on_conflict(insert: Any, dialect: Dialect, table: sa.Table, values: dict[str, Any]
                 ) -> Any:
    if dialect.name in MYSQL_DIALECTS:
        return insert.on_duplicate_key_update(values)
    return insert.on_conflict_do_update(index_elements=[table.c.session_hash], set_=values)


def _greatest(dialect: Dialect, first: Any, second: Any) -> Any:
    # A clock a little behind another writer's never moves a session back in the listing.
    if dialect.name == "sqlite":
        return sa.func.max(first, second)
    return sa.func.greatest(first, second)
