"""Every statement the backend runs, built once per backend with quoted identifiers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from psycopg import sql

from chathistory_postgres.config import Layout

__all__ = ["SCHEMA_VERSION", "Statements"]

SCHEMA_VERSION = 1
"""The version of the table layout this code reads and writes, kept in ``<table>_meta``."""

# The part of the advisory-lock key space this backend uses: pg_advisory_xact_lock(int, int).
_LOCK_CLASS_CREATE = 0x43480001  # "CH" 1: creating a schema's tables


def _int4(text: str) -> int:
    """A stable signed 32-bit number for ``text``, for advisory-lock keys."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


@dataclass(frozen=True)
class Statements:
    """The SQL for one (schema, table, layout). Session ids are always ``%s`` parameters."""

    layout: Layout
    qualified_table: str
    qualified_meta: str
    insert: str
    select_all: str
    select_newest: str
    delete: str
    read_meta: str
    lock_schema: str
    create_schema: str
    create_table: str
    create_indexes: tuple[str, ...]
    index_names: tuple[str, ...]
    create_meta: str
    write_meta: str
    columns: str

    @classmethod
    def build(cls, schema: str, table: str, layout: Layout) -> Statements:
        t = sql.Identifier(schema, table)
        meta = sql.Identifier(schema, f"{table}_meta")
        session_type = sql.SQL("uuid" if layout == "langchain_postgres" else "text")
        session = sql.SQL("%s::{}").format(session_type)

        def text(statement: sql.Composable) -> str:
            return statement.as_string()

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
        delete = sql.SQL("DELETE FROM {t} WHERE session_id = {session}").format(
            t=t, session=session)
        read_meta = sql.SQL("SELECT json_object_agg(key, value)::text FROM {meta}").format(
            meta=meta)

        if layout == "langchain_postgres":
            # Exactly langchain-postgres's create_tables, so that package keeps working.
            create_table = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (id SERIAL PRIMARY KEY, "
                "session_id UUID NOT NULL, message JSONB NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"
            ).format(t=t)
            theirs = f"idx_{table}_session_id"
            index_names: tuple[str, ...] = (theirs, f"{table}_sid_id_idx")
            create_indexes: tuple[sql.Composable, ...] = (
                sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (session_id)").format(
                    i=sql.Identifier(theirs), t=t),
            )
        else:
            create_table = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "session_id text NOT NULL, "
                "message jsonb NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            ).format(t=t)
            index_names = (f"{table}_sid_id_idx",)
            create_indexes = ()
        # The index every read uses: newest N of a session without a sort of the session.
        create_indexes += (
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (session_id, id)").format(
                i=sql.Identifier(f"{table}_sid_id_idx"), t=t),
        )

        return cls(
            layout=layout,
            qualified_table=text(t),
            qualified_meta=text(meta),
            insert=text(insert),
            select_all=text(select_all),
            select_newest=text(select_newest),
            delete=text(delete),
            read_meta=text(read_meta),
            lock_schema=text(sql.SQL("SELECT pg_advisory_xact_lock({c}, {k})").format(
                c=sql.Literal(_LOCK_CLASS_CREATE), k=sql.Literal(_int4(schema)))),
            create_schema=text(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(
                s=sql.Identifier(schema))),
            create_table=text(create_table),
            create_indexes=tuple(text(statement) for statement in create_indexes),
            index_names=index_names,
            create_meta=text(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)"
            ).format(meta=meta)),
            write_meta=text(sql.SQL(
                "INSERT INTO {meta} (key, value) VALUES ('schema_version', %s), ('layout', %s) "
                "ON CONFLICT (key) DO NOTHING"
            ).format(meta=meta)),
            columns=(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
                "AND a.attnum > 0 AND NOT a.attisdropped"
            ),
        )
