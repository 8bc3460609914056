"""The ``postgres`` backend: each operation written once, as the statements it yields,
and run sync and async by the core's runner. Importing this module does not import
psycopg; building a backend does."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chathistory import BaseBackend
from chathistory.capabilities import SessionInfo, check_cutoff, check_record_texts
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_metadata,
    check_session_id,
    check_session_ids,
    check_text,
    check_update,
    check_where,
    checked_entry,
    read_cursor,
    summary_page,
    updated_entry,
)
from chathistory.driver import Operation, Runner, operation
from chathistory.records import encode_records
from chathistory_postgres.config import PostgresConfig

if TYPE_CHECKING:
    from chathistory_postgres.client import PostgresDriver
    from chathistory_postgres.sql import Statements

__all__ = ["PostgresBackend"]


class PostgresBackend(BaseBackend):
    """Stores each message as a jsonb row; reads the newest N through an index on (session, id).

    Build it with :meth:`from_options` (``conninfo=...`` or an application's
    connection or pool; see docs/backends/postgres.md for every option).
    Connections open on first use. A bad option is :class:`~chathistory.ConfigError`;
    later calls raise :class:`~chathistory.BackendUnavailableError` when the server
    cannot be reached (after retrying what is safe to repeat),
    :class:`~chathistory.PermissionDeniedError` when it refuses the login or a
    privilege, :class:`~chathistory.RecordError` for a message jsonb cannot hold.

    Example::

        history = ChatHistory("user-42", backend="postgres", conninfo="postgresql://...")
    """

    name = "postgres"
    Config = PostgresConfig
    config: PostgresConfig

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__(config)
        from chathistory_postgres import sql
        from chathistory_postgres.client import Copy, PostgresDriver

        self.driver: PostgresDriver = PostgresDriver(config)
        self.runner = Runner(self, self.driver)
        self.statements: Statements = sql.Statements(config.db_schema, config.table, config.layout)
        self._sql, self._copy = sql, Copy
        self._sessions_table = False

    def __repr__(self) -> str:
        return (f"PostgresBackend(server={self.driver.server!r}, schema={self.config.db_schema!r}"
                f", table={self.config.table!r}, layout={self.config.layout!r})")

    def _session(self, session_id: str) -> str:
        """The session id as bound: checked, and for the langchain layout, a canonical UUID."""
        check_session_id(session_id)
        if self.config.layout == "langchain_postgres":
            try:
                return str(uuid.UUID(session_id))
            except ValueError:
                shown = session_id if len(session_id) <= 80 else session_id[:77] + "..."
                raise ValueError(
                    "backend 'postgres' with layout='langchain_postgres' stores session ids "
                    f"in a UUID column, so session ids must be UUID strings; got {shown!r}"
                ) from None
        if "\x00" in session_id:
            raise ValueError("session_id must not contain NUL characters")
        return session_id

    def _has_sessions_table(self) -> Operation[bool]:
        """Whether ``<table>_sessions`` exists (looked up until it is seen once)."""
        if not self._sessions_table:
            (found,), = yield self.statements.has_sessions, ()
            self._sessions_table = bool(found)
        return self._sessions_table

    # Safe to run twice, so retried when the connection is lost (not a "write").
    @operation(transaction=True)
    def create_collection(self) -> Operation[None]:
        """Create the schema, table and index if missing, or upgrade them; check the layout."""
        yield from self.statements.create()
        self._sessions_table = True

    @operation(write=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        texts = encode_records(records)
        session = self._session(session_id)
        if texts:
            batch = self._sql.jsonb_batch(texts, self.config.layout)
            yield self.statements.insert, (session, session, batch)

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""
        session = self._session(session_id)
        if limit == 0:
            return []
        rows = yield ((self.statements.select_all, (session,)) if limit is None
                      else (self.statements.select_newest, (session, session, limit)))
        return self._sql.records_from_texts([row[0] for row in rows])

    @operation()
    def clear(self, session_id: str) -> Operation[None]:
        """Delete this session's rows and its summary: one statement."""
        session = self._session(session_id)
        yield self.statements.delete, (session, session)

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions after ``after``, in id order: one index range read of
        ``<table>_sessions`` (of the messages themselves on a table without it)."""
        page, start = check_limit(limit), None if after is None else self._session(after)
        s = self.statements
        first, rest = (s.list_first, s.list_after) if (yield from self._has_sessions_table()) \
            else (s.scan_first, s.scan_after)
        rows = yield (first, (page,)) if start is None else (rest, (start, page))
        return [SessionInfo(session_id, int(messages), written.astimezone(UTC))
                for session_id, messages, written in rows]

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        """When ``session_id`` last had rows inserted (UTC), or None if it has none: the
        time of its summary (:meth:`session_summaries`), if that counts messages."""
        summaries = yield from PostgresBackend.session_summaries.steps(self, [session_id])
        summary = summaries.get(session_id)
        return summary.updated_at if summary is not None and summary.messages else None

    @operation()
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        """Delete every session (of ``owner``, if given) last written before ``cutoff``
        (aware), with its summary; return how many. One statement, through the (owner,)
        ``last_write`` index and the ``(session_id, id)`` index."""
        s, moment = self.statements, check_cutoff(cutoff)
        if check_text("owner", owner) is None:
            (count,), = yield (s.count_before if dry_run else s.delete_before), (moment,)
        else:
            statement = s.count_before_owner if dry_run else s.delete_before_owner
            (count,), = yield statement, (moment, owner)
        return int(count)

    @operation()
    def fetch_many(self, session_ids: Sequence[str]) -> Operation[dict[str, list[dict[str, Any]]]]:
        """Every record of each session that has any, oldest first: one statement."""
        texts = yield from PostgresBackend.fetch_many_text.steps(self, session_ids)
        return {session: self._sql.records_from_texts(some) for session, some in texts.items()}

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        """:meth:`fetch_many`, each record as its JSON text (as the table prints it)."""
        given = self._given(session_ids)
        rows = (yield self.statements.select_many, (list(given),)) if given else []
        return self._sql.texts_by_session(rows, given)

    @operation(write=True, transaction=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> Operation[None]:
        """Append each session's records after its others: one transaction, all or nothing,
        taking :meth:`append`'s locks in session order, then one ``COPY`` in batch order."""
        # Every record of every session is encoded before any I/O: all or nothing.
        yield from self._copy_in({session_id: encode_records(records)
                                  for session_id, records in batches.items()})

    @operation(write=True, transaction=True)
    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        """:meth:`append_many` of records given as JSON text; jsonb parses each one."""
        check_record_texts(batches)
        yield from self._copy_in(batches)

    def _copy_in(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        rows: list[tuple[str, str]] = []
        jsonb_text, layout = self._sql.jsonb_text, self.config.layout
        for session_id, texts in batches.items():
            session = self._session(session_id)
            rows += [(session, jsonb_text(text, layout)) for text in texts]
        if rows:  # (lock_sessions takes the locks in session order)
            yield self.statements.lock_sessions, (list({session for session, _ in rows}),)
            yield self._copy(self.statements.copy_rows, rows)

    # -- the session catalog: <table>_sessions, kept by the triggers ------------------------

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        """A page of summaries, newest (or oldest) first: one range of an index on
        ``(owner, last_write, session_id)`` or ``(last_write, session_id)``."""
        parameters: list[Any] = []
        if check_text("owner", owner) is not None:
            parameters.append(owner)
        contains = check_where(where)
        if contains:
            parameters.append(check_metadata(contains))
        limit = check_limit(limit)
        after = read_cursor(cursor, newest_first, (str, str))
        if after is not None:
            parameters += self._position(after, cursor)
        statement = self.statements.listing(owner=owner is not None, where=bool(contains),
                                            after=after is not None, newest_first=newest_first)
        rows = yield statement, (*parameters, limit + 1)
        return summary_page(rows, limit, newest_first, self._sql.summary_from_row,
                            lambda row: [row[5].astimezone(UTC).isoformat(), row[0]])

    def _position(self, after: list[Any], cursor: str | None) -> list[Any]:
        """A cursor's (time, session) as bound, or a ValueError for one not made here."""
        try:
            moment, session_id = after
            when = datetime.fromisoformat(moment)
            if when.tzinfo is None:
                raise ValueError
            return [when, self._session(session_id)]
        except (ValueError, TypeError):
            raise ValueError(f"not a listing cursor: {str(cursor)[:40]!r}") from None

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        """The summaries of those of ``session_ids`` that have one: one statement (on a
        table an older version made, and not yet upgraded, from its messages: a copy out
        of it keeps the sessions' times)."""
        given = self._given(session_ids)
        if not given:
            return {}
        s = self.statements
        counted = yield from self._has_sessions_table()
        rows = yield (s.summaries if counted else s.scan_summaries), (list(given),)
        return {given.get(row[0], row[0]): self._sql.summary_from_row(
            row, given.get(row[0], row[0])) for row in rows}

    @operation(write=True, transaction=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        """Set the owner, title or metadata under the session's lock; its times stay."""
        session = self._session(session_id)
        check_update(owner, title, metadata)
        s = self.statements
        yield s.lock_sessions, ([session],)  # (as append takes it: its writers finish first)
        rows = yield s.described, (session,)
        entry = updated_entry(rows[0] if rows else None, owner, title, metadata,
                              replace_metadata, only_if_unset)
        (row,) = yield s.describe, (session, *entry)
        return self._sql.summary_from_row(row, session_id)

    @operation(write=True, transaction=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        """Delete these sessions' messages and summaries: one transaction, under their locks."""
        sessions = sorted(self._given(session_ids))
        if not sessions:
            return ErasureReceipt(dry_run=dry_run)
        s = self.statements
        if dry_run:
            (count, messages), = yield s.count_erasable, (sessions,)
            return ErasureReceipt(int(count), int(messages), dry_run=True)
        yield s.lock_sessions, (sessions,)
        (count, messages), = yield s.erase, (sessions, sessions)
        return ErasureReceipt(int(count), int(messages))

    @operation(write=True, transaction=True)
    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> Operation[None]:
        """Set each session's owner, title, metadata and both times: one statement."""
        rows: dict[str, tuple[Any, ...]] = {}
        for summary in summaries:
            entry = checked_entry(summary)  # first: it checks the times too
            rows[self._session(summary.session_id)] = (summary.updated_at, summary.created_at,
                                                        *entry)
        if rows:
            sessions = sorted(rows)
            columns = list(zip(*(rows[session] for session in sessions), strict=True))
            yield self.statements.lock_sessions, (sessions,)
            yield self.statements.restore, (sessions, *map(list, columns))

    def _given(self, session_ids: Sequence[str]) -> dict[str, str]:
        """Each bound session id, mapped to the one the caller gave (UUIDs have spellings)."""
        return {self._session(session_id): session_id
                for session_id in check_session_ids(session_ids)}
