"""The table: every statement the backend runs, and how create_collection builds and checks it.

Statements are built once per backend, with identifiers quoted by
``psycopg.sql``. Session ids and records are always bound parameters.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import sql

from chathistory import ChatHistoryError, ConfigError, RecordError, decode_record
from chathistory_postgres.config import Layout

__all__ = [
    "SCHEMA_VERSION",
    "Job",
    "Statements",
    "jsonb_batch",
    "jsonb_texts",
    "records_from_rows",
    "session_texts_from_rows",
    "sessions_from_rows",
]

SCHEMA_VERSION = 2
"""The version of the table layout this code reads and writes, kept in ``<table>_meta``.

1. the message table, its ``(session_id, id)`` index and ``<table>_meta``;
2. adds ``<table>_sessions`` (a row per session: its message count and last
   write time), kept by statement-level triggers on the message table, and
   filled once from the messages already there.
"""

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


def jsonb_texts(texts: list[str], layout: Layout) -> list[str]:
    """Each record's JSON text as a jsonb value, for COPY: :func:`jsonb_batch`, row by row."""
    values = []
    for text in texts:
        if "\\u0000" in text:
            text = _nul_safe(text, layout)
        values.append(_positional_floats(text) if "e+" in text else text)
    return values


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


def sessions_from_rows(rows: list[tuple[str, str]], given: Mapping[str, str]
                       ) -> dict[str, list[dict[str, Any]]]:
    """(session, record JSON) rows, in session then id order, as records per session.

    ``given`` maps each bound session id to the id the caller asked for (they
    differ when a UUID was spelt another way).
    """
    records = records_from_rows([(row[1],) for row in rows])
    found: dict[str, list[dict[str, Any]]] = {}
    for (session, _), record in zip(rows, records, strict=True):
        found.setdefault(given.get(session, session), []).append(record)
    return found


def session_texts_from_rows(rows: list[tuple[str, str]], given: Mapping[str, str]
                            ) -> dict[str, list[str]]:
    """:func:`sessions_from_rows`, each record left as its JSON text."""
    found: dict[str, list[str]] = {}
    for session, value in rows:
        found.setdefault(given.get(session, session), []).append(
            value if value.startswith("{") else _record_text(value))
    return found


def _record_text(value: str) -> str:
    """The JSON text of a stored value that is not an object: a record kept as a string."""
    kept = json.loads(value)
    if not isinstance(kept, str):
        raise RecordError(f"stored record is a JSON {type(kept).__name__}, not an object")
    decode_record(kept)  # what fetch would refuse is refused here too
    return kept


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
    qualified_sessions: str
    insert: str
    lock_sessions: str
    copy_rows: str
    select_all: str
    select_newest: str
    select_many: str
    delete: str
    list_first: str
    list_after: str
    last_write: str
    count_before: str
    delete_before: str
    # Reads of a table not yet given its sessions table (made by langchain-postgres or
    # an older version, and not written through create_collection since): from the
    # messages themselves, last_write being max(created_at).
    scan_first: str
    scan_after: str
    scan_last_write: str
    create_table: str
    create_indexes: tuple[tuple[str, str], ...]  # (qualified index name, CREATE INDEX)
    add_sessions: tuple[str, ...]  # schema version 1 -> 2, before the backfill
    backfill: str  # {written} is the last write time of a backfilled session

    @classmethod
    def build(cls, schema: str, table: str, layout: Layout) -> Statements:
        t = sql.Identifier(schema, table)
        s = sql.Identifier(schema, f"{table}_sessions")
        uuids = layout == "langchain_postgres"
        session = sql.SQL("%s::uuid" if uuids else "%s::text")
        sessions = sql.SQL("%s::uuid[]" if uuids else "%s::text[]")
        lock_space = sql.Literal(_int4(f"{schema}.{table}"))
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
        ).format(t=t, session=session, ns=lock_space)
        # Many sessions in one transaction: the same per-session locks first, taken
        # in session order (the volatile output is computed after the sort), so two
        # such transactions never wait for each other in a cycle; then one COPY of
        # every row in batch order (the identity follows the order rows arrive).
        lock_sessions = sql.SQL(
            "SELECT pg_advisory_xact_lock({ns}, hashtext(u.session_id::text)) "
            "FROM unnest({sessions}) AS u(session_id) ORDER BY u.session_id"
        ).format(sessions=sessions, ns=lock_space)
        copy_rows = sql.SQL("COPY {t} (session_id, message) FROM STDIN").format(t=t)
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
        select_many = sql.SQL(
            "SELECT session_id::text, message::text FROM {t} "
            "WHERE session_id = ANY({sessions}) ORDER BY session_id, id"
        ).format(t=t, sessions=sessions)

        # The sessions table. Text ids sort in the "C" collation: code point
        # order, as Python sorts str, whatever the database's collation. Where it
        # meets the message table's column, the comparison names a collation.
        to_c = sql.SQL("") if uuids else sql.SQL(' COLLATE "C"')
        to_default = sql.SQL("") if uuids else sql.SQL(' COLLATE "default"')
        page = "SELECT session_id::text, messages, last_write FROM {s} "
        list_first = sql.SQL(page + "ORDER BY session_id LIMIT %s").format(s=s)
        list_after = sql.SQL(page + "WHERE session_id > {session} ORDER BY session_id LIMIT %s"
                             ).format(s=s, session=session)
        last_write = sql.SQL("SELECT last_write FROM {s} WHERE session_id = {session}").format(
            s=s, session=session)
        count_before = sql.SQL("SELECT count(*) FROM {s} WHERE last_write < %s").format(s=s)
        # The old sessions through the last_write index, locked in id order (a
        # session written meanwhile is re-checked and kept), their rows through
        # the (session_id, id) index: an empty prune costs one index probe.
        delete_before = sql.SQL(
            "WITH gone AS (DELETE FROM {t} WHERE session_id = ANY(ARRAY("
            "SELECT session_id{to_default} FROM {s} WHERE last_write < %s "
            "ORDER BY session_id FOR UPDATE)) RETURNING session_id) "
            "SELECT count(DISTINCT session_id) FROM gone"
        ).format(t=t, s=s, to_default=to_default)

        scan = ("SELECT s::text, count(*), max(created_at) FROM (SELECT session_id{to_c} AS s, "
                "created_at FROM {t}) AS x ")
        scan_first = sql.SQL(scan + "GROUP BY s ORDER BY s LIMIT %s").format(t=t, to_c=to_c)
        scan_after = sql.SQL(scan + "WHERE s > {session} GROUP BY s ORDER BY s LIMIT %s").format(
            t=t, to_c=to_c, session=session)
        scan_last_write = sql.SQL(
            "SELECT max(created_at) FROM {t} WHERE session_id = {session} HAVING count(*) > 0"
        ).format(t=t, session=session)

        ours = f"{table}_sid_id_idx"  # the index every read uses
        indexes: list[tuple[str, sql.SQL]] = []
        if uuids:
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
            qualified_sessions=_text(s),
            insert=_text(insert),
            lock_sessions=_text(lock_sessions),
            copy_rows=_text(copy_rows),
            select_all=_text(select_all),
            select_newest=_text(select_newest),
            select_many=_text(select_many),
            delete=_text(sql.SQL("DELETE FROM {t} WHERE session_id = {session}").format(
                t=t, session=session)),
            list_first=_text(list_first),
            list_after=_text(list_after),
            last_write=_text(last_write),
            count_before=_text(count_before),
            delete_before=_text(delete_before),
            scan_first=_text(scan_first),
            scan_after=_text(scan_after),
            scan_last_write=_text(scan_last_write),
            create_table=_text(create_table.format(t=t)),
            create_indexes=tuple(
                (_text(sql.Identifier(schema, name)),
                 _text(statement.format(i=sql.Identifier(name), t=t)))
                for name, statement in indexes),
            add_sessions=_sessions_ddl(schema, table, t, s, uuids, to_c),
            backfill=_text(sql.SQL(
                "INSERT INTO {s} (session_id, messages, last_write) "
                "SELECT session_id{to_c}, count(*), {{written}} FROM {t} GROUP BY 1"
            ).format(s=s, t=t, to_c=to_c)),
        )

    def create(self) -> Job:
        """Create what is missing, under a lock, upgrade an older layout, check the version.

        Runs in one transaction. When everything exists at this version it only
        reads (no DDL, no lock), so a role without CREATE privilege can use a
        prepared table.
        """
        meta = sql.SQL(self.qualified_meta)
        read_meta = _text(sql.SQL("SELECT json_object_agg(key, value)::text FROM {}").format(meta))
        exists = ("SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, "
                  "to_regclass(%s) IS NOT NULL")
        names = (_text(sql.Identifier(self.schema)), self.qualified_table, self.qualified_meta)
        rows = yield exists, names
        if rows[0][1] and rows[0][2]:
            rows = yield read_meta, ()
            if self._check_meta(json.loads(rows[0][0] or "{}")) == SCHEMA_VERSION:
                return
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
        # A table new or adopted here starts at version 1, and is upgraded below.
        yield _text(sql.SQL(
            "INSERT INTO {} (key, value) VALUES ('schema_version', '1'), ('layout', %s) "
            "ON CONFLICT (key) DO NOTHING").format(meta)), (self.layout,)
        rows = yield read_meta, ()
        if self._check_meta(json.loads(rows[0][0] or "{}")) < 2:
            yield from self._add_sessions()
            yield _text(sql.SQL(
                "UPDATE {} SET value = {} WHERE key = 'schema_version'").format(
                    meta, sql.Literal(str(SCHEMA_VERSION)))), ()

    def _add_sessions(self) -> Job:
        """Version 1 -> 2: the sessions table and its triggers, filled from the messages.

        The table is locked against writers first, so no message lands between
        the count and the triggers. A backfilled session's last write is its
        newest ``created_at`` (both layouts have the column, set by the server
        on insert); on an adopted table without it, the time of the upgrade.
        """
        yield _text(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.SQL(self.qualified_table))), ()
        for statement in self.add_sessions:
            yield statement, ()
        rows = yield (
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'created_at' "
            "AND NOT a.attisdropped"), (self.qualified_table,)
        stamped = bool(rows) and rows[0][0] == "timestamp with time zone"
        yield _text(sql.SQL("DELETE FROM {}").format(sql.SQL(self.qualified_sessions))), ()
        yield self.backfill.replace(
            "{written}", "coalesce(max(created_at), now())" if stamped else "now()"), ()

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

    def _check_meta(self, meta: dict[str, str]) -> int:
        """The table's schema version, after checking its layout and that we know it."""
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
        return int(version)


def _sessions_ddl(schema: str, table: str, t: sql.Identifier, s: sql.Identifier, uuids: bool,
                  to_c: sql.Composable) -> tuple[str, ...]:
    """The sessions table, its last_write index, the counting function and its triggers.

    Statement-level triggers with transition tables: one upsert per statement,
    whatever its number of rows, for every writer of the table (langchain-postgres's
    ``PostgresChatMessageHistory`` included). The function runs as its owner
    (SECURITY DEFINER, with a fixed search_path), so a role that may write the
    message table needs no privilege on the sessions table.
    """
    function = sql.Identifier(schema, f"{table}_count_rows")
    session_type = sql.SQL("uuid" if uuids else 'text COLLATE "C"')
    body = sql.SQL(
        "BEGIN "
        "IF TG_OP = 'TRUNCATE' THEN DELETE FROM {s}; RETURN NULL; END IF; "
        "IF TG_OP <> 'INSERT' THEN "
        "UPDATE {s} AS s SET messages = s.messages - d.n "
        "FROM (SELECT o.session_id{to_c} AS session_id, count(*) AS n "
        "FROM old_rows AS o GROUP BY 1) AS d WHERE s.session_id = d.session_id; "
        "DELETE FROM {s} AS s WHERE s.messages <= 0 "
        "AND s.session_id IN (SELECT o.session_id{to_c} FROM old_rows AS o); "
        "END IF; "
        "IF TG_OP <> 'DELETE' THEN "
        "INSERT INTO {s} AS s (session_id, messages, last_write) "
        "SELECT n.session_id{to_c}, count(*), now() FROM new_rows AS n GROUP BY 1 ORDER BY 1 "
        "ON CONFLICT (session_id) DO UPDATE SET messages = s.messages + excluded.messages, "
        "last_write = greatest(s.last_write, excluded.last_write); "
        "END IF; "
        "RETURN NULL; "
        "END"
    ).format(s=s, to_c=to_c)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {s} (session_id {type} PRIMARY KEY, "
                "messages bigint NOT NULL, last_write timestamptz NOT NULL)").format(
            s=s, type=session_type),
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {s} (last_write)").format(
            i=sql.Identifier(f"{table}_last_write_idx"), s=s),
        sql.SQL("CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql "
                "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}").format(
            f=function, body=sql.Literal(_text(body))),
    ]
    events = {
        "insert": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows",
        "delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows",
        "update": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "truncate": "AFTER TRUNCATE ON {t}",
    }
    for event, when in events.items():
        trigger = sql.Identifier(f"{table}_count_{event}")
        statements.append(sql.SQL("DROP TRIGGER IF EXISTS {g} ON {t}").format(g=trigger, t=t))
        statements.append(sql.SQL(
            "CREATE TRIGGER {g} " + when + " FOR EACH STATEMENT EXECUTE FUNCTION {f}()"
        ).format(g=trigger, t=t, f=function))
    return tuple(_text(statement) for statement in statements)
