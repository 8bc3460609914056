"""The table: its layout as a list of versioned steps, and every statement the backend runs.

Statements are templates whose ``{names}`` are quoted identifiers (or a layout's cast),
formatted once per backend by ``psycopg.sql``; session ids and records are bound parameters.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from psycopg import sql

from chathistory import ChatHistoryError, ConfigError, RecordError, decode_record
from chathistory.catalog import SessionSummary
from chathistory.driver import Operation
from chathistory_postgres.config import Layout

__all__ = ["CATALOG_STATEMENTS", "CATALOG_STEP", "MIGRATIONS", "SCHEMA_VERSION", "STATEMENTS",
           "Statements", "jsonb_batch", "jsonb_text", "records_from_texts", "summary_from_row",
           "texts_by_session"]

Step = str | dict[Layout, str]
"""A statement of a migration: the same for both layouts, or per layout (none if absent)."""

# Step 3: the session catalog in <table>_sessions (both layouts: the table is ours, and
# langchain-postgres never reads it). The triggers already upsert a row per session
# for every writer; a new row takes created_at's default, now(), in the writer's
# transaction. A session's first message's time backfills created_at. Listings are
# keyset ranges of (last_write, session_id), one owner's of a partial index: the
# sessions nobody owns (a peer class's) cost that index nothing on each append.
CATALOG_STEP: tuple[Step, ...] = (
    "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
    "ALTER TABLE {sessions} ADD COLUMN IF NOT EXISTS created_at timestamptz, "
    "ADD COLUMN IF NOT EXISTS owner text, ADD COLUMN IF NOT EXISTS title text, "
    "ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb",
    "UPDATE {sessions} AS s SET created_at = least(f.first, s.last_write) FROM (SELECT "
    "session_id{to_c} AS session_id, min(created_at) AS first FROM {table} GROUP BY 1) AS f "
    "WHERE s.session_id = f.session_id",
    "UPDATE {sessions} SET created_at = last_write WHERE created_at IS NULL",
    "ALTER TABLE {sessions} ALTER COLUMN created_at SET DEFAULT now(), "
    "ALTER COLUMN created_at SET NOT NULL",
    "DROP INDEX IF EXISTS {schema}.{last_write_index}",
    "CREATE INDEX IF NOT EXISTS {updated_index} ON {sessions} (last_write, session_id)",
    "CREATE INDEX IF NOT EXISTS {owner_index} ON {sessions} (owner, last_write, session_id) "
    "WHERE owner IS NOT NULL")

MIGRATIONS: list[tuple[Step, ...]] = [
    # 0: the table that records the version (``schema_version`` = the last step applied).
    ("CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)",),
    # 1: the messages, in id order, and the index every read uses. A langchain_postgres
    # table is made exactly as PostgresChatMessageHistory.create_tables makes it.
    ({"chathistory": "CREATE TABLE IF NOT EXISTS {table} ("
                     "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "session_id text NOT NULL, message jsonb NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())",
      "langchain_postgres": "CREATE TABLE IF NOT EXISTS {table} (id SERIAL PRIMARY KEY, "
                            "session_id UUID NOT NULL, message JSONB NOT NULL, "
                            "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"},
     {"langchain_postgres": "CREATE INDEX IF NOT EXISTS {their_index} ON {table} (session_id)"},
     "CREATE INDEX IF NOT EXISTS {index} ON {table} (session_id, id)"),
    # 2: <table>_sessions, a row per session (its count and last write), kept by
    # statement-level triggers with transition tables (one upsert per statement, for
    # every writer of the table, langchain-postgres's included), filled from the
    # messages under a lock that keeps writers out meanwhile. The function runs as its
    # owner with a fixed search_path, so writers need no privilege on the sessions table.
    # An adopted table without created_at gets it, set to the time of the upgrade.
    ("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
     "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL "
     "DEFAULT now()",
     "CREATE TABLE IF NOT EXISTS {sessions} (session_id {session_type} PRIMARY KEY, "
     "messages bigint NOT NULL, last_write timestamptz NOT NULL)",
     "CREATE INDEX IF NOT EXISTS {last_write_index} ON {sessions} (last_write)",
     "CREATE OR REPLACE FUNCTION {count_rows}() RETURNS trigger LANGUAGE plpgsql "
     "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$ BEGIN "
     "IF TG_OP = 'TRUNCATE' THEN DELETE FROM {sessions}; RETURN NULL; END IF; "
     "IF TG_OP <> 'INSERT' THEN "
     "UPDATE {sessions} AS s SET messages = s.messages - d.n FROM (SELECT "
     "o.session_id{to_c} AS session_id, count(*) AS n FROM old_rows AS o GROUP BY 1) AS d "
     "WHERE s.session_id = d.session_id; "
     "DELETE FROM {sessions} AS s WHERE s.messages <= 0 "
     "AND s.session_id IN (SELECT o.session_id{to_c} FROM old_rows AS o); END IF; "
     "IF TG_OP <> 'DELETE' THEN "
     "INSERT INTO {sessions} AS s (session_id, messages, last_write) "
     "SELECT n.session_id{to_c}, count(*), now() FROM new_rows AS n GROUP BY 1 ORDER BY 1 "
     "ON CONFLICT (session_id) DO UPDATE SET messages = s.messages + excluded.messages, "
     "last_write = greatest(s.last_write, excluded.last_write); END IF; "
     "RETURN NULL; END $body$",
     *(f"DROP TRIGGER IF EXISTS {{count_{event}}} ON {{table}}" for event in
       ("insert", "delete", "update", "truncate")),
     "CREATE TRIGGER {count_insert} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
     "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
     "CREATE TRIGGER {count_delete} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
     "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
     "CREATE TRIGGER {count_update} AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows "
     "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
     "CREATE TRIGGER {count_truncate} AFTER TRUNCATE ON {table} "
     "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
     "DELETE FROM {sessions}",
     "INSERT INTO {sessions} (session_id, messages, last_write) "
     "SELECT session_id{to_c}, count(*), coalesce(max(created_at), now()) FROM {table} "
     "GROUP BY 1"),
    CATALOG_STEP,  # 3
    # 4: our layout keeps each record as the JSON text it was given: json, not jsonb. We
    # never query inside a record, and json stores the text as it came (a tenth smaller than
    # jsonb's parsed form, nothing re-printed). A table that already holds messages keeps
    # jsonb: converting it would rewrite it under an exclusive lock. Both are read and
    # written alike. langchain-postgres's layout stays jsonb, which its class reads.
    ({"chathistory": "DO $step$ BEGIN IF NOT EXISTS (SELECT FROM {table}) THEN "
                     "ALTER TABLE {table} ALTER COLUMN message TYPE json USING message::json; "
                     "END IF; END $step$"},),
]
"""The table's layout: append a step to change it, never edit one. The index is the version;
``<table>_meta`` records the last applied, and ``create_collection`` applies those after it."""

SCHEMA_VERSION = len(MIGRATIONS) - 1  # the version this code reads and writes

SUMMARY_COLUMNS = "session_id::text, owner, title, metadata::text, created_at, last_write, messages"
"""A summary's columns as :func:`summary_from_row` reads them."""

_DELETE_OLD = (
    "WITH old AS (SELECT session_id FROM {{sessions}} WHERE last_write < %s{owner} "
    "ORDER BY session_id FOR UPDATE), gone AS (DELETE FROM {{table}} WHERE session_id = ANY("
    "ARRAY(SELECT session_id{{to_default}} FROM old))), entries AS (DELETE FROM {{sessions}} "
    "WHERE session_id IN (SELECT session_id FROM old)) SELECT count(*) FROM old")

STATEMENTS = {
    # One statement, one round trip, one transaction. The advisory lock serializes the
    # writers of one session (only of that session) until commit, so each batch gets
    # consecutive ids; WITH ORDINALITY + ORDER BY make the identity follow batch order.
    # Each element is a record's json text; a jsonb column parses it on assignment.
    "insert": "INSERT INTO {table} (session_id, message) SELECT s.session_id, m.message "
              "FROM (SELECT {session} AS session_id, "
              "pg_advisory_xact_lock({lock_space}, hashtext({session}::text))) AS s, "
              "json_array_elements(%s::json) WITH ORDINALITY AS m(message, position) "
              "ORDER BY m.position",
    # Many sessions: their locks in session order (never a cycle of two such writers).
    "lock_sessions": "SELECT pg_advisory_xact_lock({lock_space}, hashtext(u.session_id::text)) "
                     "FROM unnest({sessions_param}) AS u(session_id) ORDER BY u.session_id",
    "copy_rows": "COPY {table} (session_id, message) FROM STDIN",
    # message::text, decoded here, whatever jsonb loader a lent connection has.
    "select_all": "SELECT message::text FROM {table} WHERE session_id = {session} ORDER BY id",
    # The newest N backward through the (session_id, id) index, the session matched
    # as a range: with "= x ORDER BY id DESC" the planner may walk the primary key
    # instead, and read the whole table after an old session's rows.
    "select_newest": "SELECT message FROM (SELECT id, message::text AS message FROM {table} "
                     "WHERE session_id >= {session} AND session_id <= {session} "
                     "ORDER BY session_id DESC, id DESC LIMIT %s) AS newest ORDER BY id",
    "select_many": "SELECT session_id::text, message::text FROM {table} "
                   "WHERE session_id = ANY({sessions_param}) ORDER BY session_id, id",
    # The messages and the summary, in one statement (the triggers, which run after it,
    # find no summary left to count down).
    "delete": "WITH gone AS (DELETE FROM {table} WHERE session_id = {session}) "
              "DELETE FROM {sessions} WHERE session_id = {session}",
    # Text ids sort in the "C" collation (code point order, as Python sorts str). A
    # summary without messages (a title set first) is in the catalog, not in these.
    "list_first": "SELECT session_id::text, messages, last_write FROM {sessions} "
                  "WHERE messages > 0 ORDER BY session_id LIMIT %s",
    "list_after": "SELECT session_id::text, messages, last_write FROM {sessions} "
                  "WHERE session_id > {session} AND messages > 0 ORDER BY session_id LIMIT %s",
    "count_before": "SELECT count(*) FROM {sessions} WHERE last_write < %s",
    # The old sessions through the (owner,) last_write index, locked (a session written
    # meanwhile is checked again and kept), their rows through the (session_id, id)
    # index, then their summaries (those without messages too).
    "delete_before": _DELETE_OLD.format(owner=""),
    # A table without <table>_sessions (langchain's, version 1) is read from the messages.
    "has_sessions": "SELECT to_regclass({sessions_name}) IS NOT NULL",
    "scan_first": "SELECT s::text, count(*), max(created_at) FROM (SELECT session_id{to_c} "
                  "AS s, created_at FROM {table}) AS x GROUP BY s ORDER BY s LIMIT %s",
    "scan_after": "SELECT s::text, count(*), max(created_at) FROM (SELECT session_id{to_c} "
                  "AS s, created_at FROM {table}) AS x WHERE s > {session} "
                  "GROUP BY s ORDER BY s LIMIT %s",
    "exists": "SELECT to_regnamespace({schema_name}) IS NOT NULL, "
              "to_regclass({table_name}) IS NOT NULL, to_regclass({meta_name}) IS NOT NULL",
    "read_meta": "SELECT json_object_agg(key, value)::text FROM {meta}",
    "columns": "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
               "WHERE a.attrelid = to_regclass({table_name}) AND a.attnum > 0 "
               "AND NOT a.attisdropped",
    "lock_schema": "SELECT pg_advisory_xact_lock({create_space}, {schema_key})",
    "create_schema": "CREATE SCHEMA IF NOT EXISTS {schema}",
    "write_meta": "INSERT INTO {meta} (key, value) VALUES ('schema_version', %s), "
                  "('layout', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
}

CATALOG_STATEMENTS = {
    # A prune of one owner's sessions, as delete_before and count_before are.
    "delete_before_owner": _DELETE_OLD.format(owner=" AND owner = %s"),
    "count_before_owner": "SELECT count(*) FROM {sessions} WHERE last_write < %s "
                          "AND owner = %s",
    # On a table without <table>_sessions, from the messages.
    "scan_summaries": "SELECT session_id::text, NULL, NULL, '{{}}', "
                      "min(created_at)::timestamptz, max(created_at)::timestamptz, count(*) "
                      "FROM {table} WHERE session_id = ANY({sessions_param}) GROUP BY 1",
    "summaries": "SELECT {summary_columns} FROM {sessions} "
                 "WHERE session_id = ANY({sessions_param})",
    "described": "SELECT owner, title, metadata::text FROM {sessions} "
                 "WHERE session_id = {session}",
    "describe": "INSERT INTO {sessions} AS s (session_id, messages, last_write, owner, title, "
                "metadata) VALUES ({session}, 0, now(), %s, %s, %s::jsonb) "
                "ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, "
                "title = excluded.title, metadata = excluded.metadata "
                "RETURNING {summary_columns}",
    "count_erasable": "SELECT count(*), coalesce(sum(messages), 0) FROM {sessions} "
                      "WHERE session_id = ANY({sessions_param})",
    "erase": "WITH gone AS (DELETE FROM {table} WHERE session_id = ANY({sessions_param}) "
             "RETURNING 1), entries AS (DELETE FROM {sessions} "
             "WHERE session_id = ANY({sessions_param}) RETURNING 1) "
             "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM gone)",
    "restore": "INSERT INTO {sessions} AS s (session_id, messages, last_write, created_at, "
               "owner, title, metadata) SELECT r.session_id, 0, r.updated, r.created, r.owner, "
               "r.title, r.metadata::jsonb FROM unnest({sessions_param}, %s::timestamptz[], "
               "%s::timestamptz[], %s::text[], %s::text[], %s::text[]) AS r(session_id, "
               "updated, created, owner, title, metadata) ORDER BY r.session_id "
               "ON CONFLICT (session_id) DO UPDATE SET last_write = excluded.last_write, "
               "created_at = excluded.created_at, owner = excluded.owner, "
               "title = excluded.title, metadata = excluded.metadata",
}
"""The session catalog's statements, made as :data:`STATEMENTS` are."""

# The part of the advisory-lock key space this backend uses: pg_advisory_xact_lock(int, int).
_CREATE_SPACE = 0x43480001  # "CH" 1: creating a schema's tables
_COLUMN_TYPES: dict[Layout, dict[str, tuple[str, ...]]] = {
    "chathistory": {"session_id": ("text", "character varying"), "message": ("json", "jsonb")},
    "langchain_postgres": {"session_id": ("uuid",), "message": ("jsonb",)},
}


def _int4(text: str) -> int:
    """A stable signed 32-bit number for ``text``, for advisory-lock keys."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


class Statements(SimpleNamespace):
    """The SQL for one (schema, table, layout): each of :data:`STATEMENTS` as an attribute."""

    def __init__(self, schema: str, table: str, layout: Layout) -> None:
        uuids = layout == "langchain_postgres"
        table_id = sql.Identifier(schema, table)
        names: dict[str, sql.Composable] = {
            "schema": sql.Identifier(schema), "table": table_id,
            "meta": sql.Identifier(schema, f"{table}_meta"),
            "sessions": sql.Identifier(schema, f"{table}_sessions"),
            "index": sql.Identifier(f"{table}_sid_id_idx"),
            "their_index": sql.Identifier(f"idx_{table}_session_id"),
            "last_write_index": sql.Identifier(f"{table}_last_write_idx"),
            "updated_index": sql.Identifier(f"{table}_updated_idx"),
            "owner_index": sql.Identifier(f"{table}_owner_updated_idx"),
            "summary_columns": sql.SQL(SUMMARY_COLUMNS),
            "count_rows": sql.Identifier(schema, f"{table}_count_rows"),
            "session": sql.SQL("%s::uuid" if uuids else "%s::text"),
            "sessions_param": sql.SQL("%s::uuid[]" if uuids else "%s::text[]"),
            "session_type": sql.SQL("uuid" if uuids else 'text COLLATE "C"'),
            # Where the sessions table meets the message table's column, name a collation.
            "to_c": sql.SQL("" if uuids else ' COLLATE "C"'),
            "to_default": sql.SQL("" if uuids else ' COLLATE "default"'),
            "lock_space": sql.Literal(_int4(f"{schema}.{table}")),
            "create_space": sql.Literal(_CREATE_SPACE),
            "schema_key": sql.Literal(_int4(schema)),
        }
        names.update({f"count_{event}": sql.Identifier(f"{table}_count_{event}")
                      for event in ("insert", "delete", "update", "truncate")})
        for name in ("schema", "table", "meta", "sessions"):
            names[f"{name}_name"] = sql.Literal(names[name].as_string())
        super().__init__(**{name: sql.SQL(template).format(**names).as_string()
                            for name, template in (STATEMENTS | CATALOG_STATEMENTS).items()})
        self.schema, self.layout = schema, layout
        self.qualified_table = table_id.as_string()
        self.qualified_meta = names["meta"].as_string()
        self.qualified_sessions = names["sessions"].as_string()
        self._names = names
        self._listings: dict[tuple[bool, bool, bool, bool], str] = {}
        self.migrations = [
            [sql.SQL(text).format(**names).as_string() for step in steps
             if (text := step if isinstance(step, str) else step.get(layout))]
            for steps in MIGRATIONS]

    def listing(self, *, owner: bool, where: bool, after: bool, newest_first: bool) -> str:
        """A page of summaries, newest or oldest first, keyset-paged on (last_write,
        session_id): a range of the (owner,) last_write index. Its parameters, in order:
        the owner, the metadata (a JSON object it must contain), the cursor's time and
        session, and the limit, each only if asked for."""
        key = (owner, where, after, newest_first)
        if key not in self._listings:
            conditions = ["TRUE"]
            if owner:
                conditions.append("owner = %s")
            if where:  # scalars only: containment is equality, key by key
                conditions.append("metadata @> %s::jsonb")
            if after:
                conditions.append("(last_write, session_id) "
                                  f"{'<' if newest_first else '>'} (%s::timestamptz, {{session}})")
            order = "DESC" if newest_first else "ASC"
            self._listings[key] = sql.SQL(
                f"SELECT {{summary_columns}} FROM {{sessions}} WHERE {' AND '.join(conditions)} "
                f"ORDER BY last_write {order}, session_id {order} LIMIT %s"
            ).format(**self._names).as_string()
        return self._listings[key]

    def create(self) -> Operation[None]:
        """Create what is missing, or upgrade it, under a lock; check layout and version.

        When everything exists at this version it only reads (no DDL, no lock), so
        a role without CREATE privilege can use a table prepared by another.
        """
        (_, table_exists, meta_exists), = yield self.exists, ()
        if table_exists and meta_exists:
            version = self._version((yield self.read_meta, ()))
            if version == SCHEMA_VERSION:
                return
        yield self.lock_schema, ()
        (schema_exists, table_exists, meta_exists), = yield self.exists, ()
        if not schema_exists:
            yield self.create_schema, ()
        version = -1  # a new table gets every step; so does an adopted one
        if table_exists and meta_exists:
            version = self._version((yield self.read_meta, ()))
        elif table_exists:  # made by langchain-postgres or by hand: adopted if it fits
            self._check_columns(dict((yield self.columns, ())))
        for steps in self.migrations[version + 1:]:
            for step in steps:
                yield step, ()
        if version < SCHEMA_VERSION:
            yield self.write_meta, (str(SCHEMA_VERSION), self.layout)

    def _version(self, rows: list[tuple[str | None]]) -> int:
        """The table's schema version, after checking its layout and that we know it."""
        meta = json.loads(rows[0][0] or "{}")
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

    def _check_columns(self, columns: dict[str, str]) -> None:
        where = f"backend 'postgres': table {self.qualified_table} exists"
        other: Layout = "langchain_postgres" if self.layout == "chathistory" else "chathistory"
        if columns.get("session_id") in _COLUMN_TYPES[other]["session_id"]:
            raise ConfigError(f"{where} with a {columns['session_id']} session_id column, as the "
                              f"{other} layout makes it: use layout={other!r} to use it in place")
        expected = {**_COLUMN_TYPES[self.layout],
                    "created_at": ("timestamp with time zone", "timestamp without time zone")}
        for column, allowed in expected.items():
            if columns.get(column, "missing" if column != "created_at" else allowed[0]) \
                    not in allowed:
                raise ConfigError(
                    f"{where} but is not a {self.layout} table: column {column!r} is "
                    f"{columns.get(column) or 'missing'}, expected {' or '.join(allowed)}")
        if "id" not in columns:
            raise ConfigError(f"{where} but has no id column to order messages by")


# -- records as jsonb ----------------------------------------------------------------------

# A JSON string, or a number in exponent form with a positive exponent.
_STRING_OR_BIG_EXPONENT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?\d+(?:\.\d+)?e\+\d+)')
# NUL in a JSON string: "\u0000" after an even number of backslashes (an odd one is
# an escaped backslash followed by the letters "u0000").
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _positional(match: re.Match[str]) -> str:
    number = match.group(1)  # (None: a string)
    return match.group(0) if number is None else format(Decimal(number), "f") + ".0"


def jsonb_text(text: str, layout: Layout) -> str:
    """A record's JSON text as jsonb can take it. jsonb refuses NUL in a string, so our
    layout keeps such a record as a jsonb *string* of its JSON text (no record is a
    string: reads tell them apart); a langchain_postgres table must hold the object.
    Floats like ``1e+300`` are written ``1000...0.0``: jsonb's ``numeric`` prints
    ``1e+300`` without exponent or fraction, which would come back as the int 10**300."""
    if "\\u0000" in text and _NUL.search(text):
        if layout == "langchain_postgres":
            raise RecordError(
                "message cannot be stored: it holds a NUL character (U+0000), which a "
                "langchain_postgres table (jsonb objects) cannot hold")
        return json.dumps(text, ensure_ascii=False)
    return _STRING_OR_BIG_EXPONENT.sub(_positional, text) if "e+" in text else text


def jsonb_batch(texts: list[str], layout: Layout) -> str:
    """The insert's batch parameter: a JSON array of the records' JSON texts, for jsonb."""
    batch = "[" + ",".join(texts) + "]"
    if "\\u0000" in batch or "e+" in batch:
        batch = "[" + ",".join([jsonb_text(text, layout) for text in texts]) + "]"
    return batch


def summary_from_row(row: Sequence[Any], session_id: str | None = None) -> SessionSummary:
    """The summary of a row of :data:`SUMMARY_COLUMNS`, named ``session_id`` if given."""
    stored_id, owner, title, metadata, created_at, updated_at, messages = row
    return SessionSummary(session_id or stored_id, owner, title, json.loads(metadata),
                          created_at.astimezone(UTC), updated_at.astimezone(UTC), int(messages))


def records_from_texts(texts: list[str]) -> list[dict[str, Any]]:
    """The records of their JSON texts (as read), decoded with one ``json.loads`` (half the
    cost of one per row); a string is a record kept as its JSON text (:func:`jsonb_text`)."""
    records: list[Any] = json.loads("[" + ",".join(texts) + "]")
    if set(map(type, records)) <= {dict}:  # (the usual case, checked without a Python loop)
        return records
    for position, record in enumerate(records):
        if isinstance(record, str):
            records[position] = decode_record(record)
        elif not isinstance(record, dict):
            raise RecordError(f"stored record is a JSON {type(record).__name__}, not an object")
    return records


def texts_by_session(rows: list[tuple[str, str]], given: Mapping[str, str]
                     ) -> dict[str, list[str]]:
    """(session, record JSON) rows as each session's record texts, named as ``given`` maps
    the bound ids to the caller's (a UUID may be spelt another way)."""
    found: dict[str, list[str]] = {}
    for session, value in rows:
        if not value.startswith("{"):  # a record kept as a string (or what fetch refuses)
            value = json.loads(value)
            decode_record(value if isinstance(value, str) else json.dumps(value))
        found.setdefault(given.get(session, session), []).append(value)
    return found
