"""The table: every statement the backend runs, and how create_collection builds and checks it.

Statements are built once per backend, with identifiers quoted by
``psycopg.sql``. Session ids and records are always bound parameters.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import sql

from chathistory import ChatHistoryError, ConfigError, RecordError, decode_record
from chathistory_postgres.config import Layout

__all__ = ["SCHEMA_VERSION", "Job", "Statements", "jsonb_batch", "records_from_rows"]

SCHEMA_VERSION = 1
"""The version of the table layout this code reads and writes, kept in ``<table>_meta``."""

Job = Generator[tuple[str, Sequence[Any]], list[tuple[Any, ...]], None]
"""Yields (statement, parameters), receives each one's rows: driven by sync and async code."""

# The part of the advisory-lock key space this backend uses: pg_advisory_xact_lock(int, int).
_LOCK_CLASS_CREATE = 0x43480001  # "CH" 1: creating a schema's tables

_COLUMN_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "chathistory": {"session_id": ("text", "character varying"), "message": ("jsonb",)},
    "langchain_postgres": {"session_id": ("uuid",), "message": ("jsonb",)},
}

# A JSON string, or a number in exponent form with a positive exponent.
_STRING_OR_BIG_EXPONENT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?\d+(?:\.\d+)?e\+\d+)')
# NUL in a JSON string: "\u0000" after an even number of backslashes (an odd one is
# an escaped backslash followed by the letters "u0000").
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _positional_floats(batch: str) -> str:
    """Write floats like ``1e+300`` as ``1000...0.0``, so jsonb gives back a float.

    jsonb keeps numbers as ``numeric``, which prints ``1e+300`` without its
    exponent and without a fraction: it would come back as the int 10**300.
    Python's JSON uses a positive exponent only from 1e16 up, so this runs only
    for such numbers (or a string containing "e+").
    """
    def positional(match: re.Match[str]) -> str:
        number = match.group(1)
        return match.group(0) if number is None else format(Decimal(number), "f") + ".0"

    return _STRING_OR_BIG_EXPONENT.sub(positional, batch)


def _nul_safe(text: str, layout: Layout) -> str:
    """A record's JSON text as jsonb can take it: jsonb refuses NUL in a string.

    Our layout then keeps the record as a jsonb *string* of its JSON text (where
    NUL is the six characters ``\\u0000``); no record is a string, so a reader
    tells the two apart. A langchain_postgres table must hold the object itself.
    """
    if not _NUL.search(text):
        return text
    if layout == "langchain_postgres":
        raise RecordError(
            "message cannot be stored: it holds a NUL character (U+0000), which a "
            "langchain_postgres table (jsonb objects) cannot hold")
    return json.dumps(text, ensure_ascii=False)


def jsonb_batch(texts: list[str], layout: Layout) -> str:
    """The insert's batch parameter: a JSON array of the records' JSON texts, for jsonb."""
    batch = "[" + ",".join(texts) + "]"
    if "\\u0000" in batch:
        batch = "[" + ",".join([_nul_safe(text, layout) for text in texts]) + "]"
    return _positional_floats(batch) if "e+" in batch else batch


def records_from_rows(rows: list[tuple[str]]) -> list[dict[str, Any]]:
    """The records of ``rows`` (jsonb as text, one JSON value each), decoded in one go.

    One ``json.loads`` of the joined rows costs about half as much as one per row.
    A string is a record kept as its JSON text (see :func:`jsonb_batch`).
    """
    records: list[Any] = json.loads("[" + ",".join([row[0] for row in rows]) + "]")
    for position, record in enumerate(records):
        if isinstance(record, str):
            records[position] = decode_record(record)
        elif not isinstance(record, dict):
            raise RecordError(f"stored record is a JSON {type(record).__name__}, not an object")
    return records


def _int4(text: str) -> int:
    """A stable signed 32-bit number for ``text``, for advisory-lock keys."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


def _text(statement: sql.Composable) -> str:
    return statement.as_string()


@dataclass(frozen=True)
class Statements:
    """The SQL for one (schema, table, layout)."""

    schema: str
    layout: Layout
    qualified_table: str
    qualified_meta: str
    insert: str
    select_all: str
    select_newest: str
    delete: str
    create_table: str
    create_indexes: tuple[tuple[str, str], ...]  # (qualified index name, CREATE INDEX)

    @classmethod
    def build(cls, schema: str, table: str, layout: Layout) -> Statements:
        t = sql.Identifier(schema, table)
        session = sql.SQL("%s::uuid" if layout == "langchain_postgres" else "%s::text")
        # One statement, one round trip, one transaction. The lock serializes
        # the writers of one session (and only of that session) until commit, so
        # each batch gets consecutive ids and a session's commits follow id order.
        # WITH ORDINALITY + ORDER BY make the identity follow the batch order.
        insert = sql.SQL(
            "INSERT INTO {t} (session_id, message) "
            "SELECT s.session_id, m.message "
            "FROM (SELECT {session} AS session_id, "
            "pg_advisory_xact_lock({ns}, hashtext({session}::text))) AS s, "
            "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS m(message, position) "
            "ORDER BY m.position"
        ).format(t=t, session=session, ns=sql.Literal(_int4(f"{schema}.{table}")))
        # message::text, decoded by the backend: the same whatever jsonb loader
        # an application registered on a connection it lends us.
        select_all = sql.SQL(
            "SELECT message::text FROM {t} WHERE session_id = {session} ORDER BY id"
        ).format(t=t, session=session)
        # The newest N, backward through the (session_id, id) index. Not written
        # "session_id = x ORDER BY id DESC": for that, the planner may walk the
        # primary key backward and filter, expecting the session's rows spread
        # evenly; for a session whose rows are old it then reads the whole table
        # after them. As a range, session_id stays in the ORDER BY, and only the
        # (session_id, id) index gives that order.
        select_newest = sql.SQL(
            "SELECT message FROM (SELECT id, message::text AS message FROM {t} "
            "WHERE session_id >= {session} AND session_id <= {session} "
            "ORDER BY session_id DESC, id DESC LIMIT %s) AS newest ORDER BY id"
        ).format(t=t, session=session)

        ours = f"{table}_sid_id_idx"  # the index every read uses
        indexes: list[tuple[str, sql.SQL]] = []
        if layout == "langchain_postgres":
            # Exactly langchain-postgres's create_tables, so that package keeps working.
            create_table = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (id SERIAL PRIMARY KEY, "
                "session_id UUID NOT NULL, message JSONB NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW())")
            theirs = f"idx_{table}_session_id"
            indexes.append((theirs, sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (session_id)")))
        else:
            create_table = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "session_id text NOT NULL, message jsonb NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())")
        indexes.append((ours, sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (session_id, id)")))
        return cls(
            schema=schema,
            layout=layout,
            qualified_table=_text(t),
            qualified_meta=_text(sql.Identifier(schema, f"{table}_meta")),
            insert=_text(insert),
            select_all=_text(select_all),
            select_newest=_text(select_newest),
            delete=_text(sql.SQL("DELETE FROM {t} WHERE session_id = {session}").format(
                t=t, session=session)),
            create_table=_text(create_table.format(t=t)),
            create_indexes=tuple(
                (_text(sql.Identifier(schema, name)),
                 _text(statement.format(i=sql.Identifier(name), t=t)))
                for name, statement in indexes),
        )

    def create(self) -> Job:
        """Create what is missing, under a lock, and check the table's layout and version.

        Runs in one transaction. When everything exists it only reads (no DDL, no
        lock), so a role without CREATE privilege can use a prepared table.
        """
        meta = sql.SQL(self.qualified_meta)
        exists = ("SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, "
                  "to_regclass(%s) IS NOT NULL")
        names = (_text(sql.Identifier(self.schema)), self.qualified_table, self.qualified_meta)
        rows = yield exists, names
        if not (rows[0][1] and rows[0][2]):
            lock = sql.SQL("SELECT pg_advisory_xact_lock({c}, {k})").format(
                c=sql.Literal(_LOCK_CLASS_CREATE), k=sql.Literal(_int4(self.schema)))
            yield _text(lock), ()
            rows = yield exists, names
            schema_exists, table_exists, meta_exists = rows[0]
            if not schema_exists:
                yield _text(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema))), ()
            if table_exists and not meta_exists:
                columns = yield (
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
                    "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
                    "AND a.attnum > 0 AND NOT a.attisdropped"), (self.qualified_table,)
                self._check_columns(dict(columns))
            if not table_exists:
                yield self.create_table, ()
            for index, create_index in self.create_indexes:
                rows = yield "SELECT to_regclass(%s) IS NOT NULL", (index,)
                if not rows[0][0]:
                    yield create_index, ()
            yield _text(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)"
            ).format(meta)), ()
            yield _text(sql.SQL(
                "INSERT INTO {} (key, value) VALUES ('schema_version', %s), ('layout', %s) "
                "ON CONFLICT (key) DO NOTHING").format(meta)), (str(SCHEMA_VERSION), self.layout)
        rows = yield _text(sql.SQL("SELECT json_object_agg(key, value)::text FROM {}").format(
            meta)), ()
        self._check_meta(json.loads(rows[0][0] or "{}"))

    def _check_columns(self, columns: dict[str, str]) -> None:
        where = f"backend 'postgres': table {self.qualified_table} exists"
        session_type = columns.get("session_id")
        if session_type == "uuid" and self.layout == "chathistory":
            raise ConfigError(
                f"{where} with a UUID session_id column, as langchain-postgres makes it: "
                "use layout='langchain_postgres' to read and append to it in place")
        if session_type in ("text", "character varying") and self.layout == "langchain_postgres":
            raise ConfigError(f"{where} with a text session_id column: use layout='chathistory'")
        for column, allowed in _COLUMN_TYPES[self.layout].items():
            if columns.get(column) not in allowed:
                raise ConfigError(
                    f"{where} but is not a {self.layout} table: column {column!r} is "
                    f"{columns.get(column) or 'missing'}, expected {' or '.join(allowed)}")
        if "id" not in columns:
            raise ConfigError(f"{where} but has no id column to order messages by")

    def _check_meta(self, meta: dict[str, str]) -> None:
        where = f"backend 'postgres': table {self.qualified_table}"
        if meta.get("layout") != self.layout:
            raise ConfigError(
                f"{where} has layout {meta.get('layout')!r} (recorded in "
                f"{self.qualified_meta}), but the backend was configured with "
                f"layout={self.layout!r}")
        version = meta.get("schema_version", "")
        if not version.isdigit() or int(version) < 1:
            raise ChatHistoryError(f"{where}: {self.qualified_meta} holds no valid schema_version")
        if int(version) > SCHEMA_VERSION:
            raise ChatHistoryError(
                f"{where} has schema version {version}, written by a newer "
                f"chathistory-postgres; this one knows version {SCHEMA_VERSION}: upgrade it")
