"""The session catalog of the ``sqlalchemy`` backend: ``KeepsCatalog``, write times, prune.

Kept for the ``chathistory`` layout on MySQL/MariaDB, SQLite and PostgreSQL
(:data:`~chathistory_sqlalchemy.catalog_sql.CATALOG_DIALECTS`), in
``<table>_sessions``. A ``langchain_community`` table is written by the peer
class too, which this backend cannot count without altering the peer's table:
there the backend is a plain :class:`SQLAlchemyBackend` and declares no catalog.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from chathistory import ConfigError, Operation, operation
from chathistory.capabilities import SessionInfo
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_metadata,
    check_text,
    check_where,
    merge_metadata,
    read_cursor,
    write_cursor,
)
from chathistory_sqlalchemy.backend import SQLAlchemyBackend, check_session_id
from chathistory_sqlalchemy.catalog_sql import (
    CATALOG_DIALECTS,
    Catalog,
    from_micros,
    micros,
    now_micros,
    position,
    summary,
)
from chathistory_sqlalchemy.config import SQLAlchemyConfig
from chathistory_sqlalchemy.sql import IN_LIST, session_hash

__all__ = ["SQLAlchemyCatalogBackend", "keeps_catalog"]

_FILTERED_BATCH = 200  # rows read per statement while a metadata filter skips some


def keeps_catalog(config: SQLAlchemyConfig) -> bool:
    """Whether a backend of ``config`` keeps the catalog: the layout and dialect allow it."""
    return config.layout == "chathistory" and _dialect_name(config) in CATALOG_DIALECTS


def _dialect_name(config: SQLAlchemyConfig) -> str:
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    engine = config.engine if config.engine is not None else config.async_engine
    if config.url is not None:
        try:
            return make_url(config.url.get_secret_value()).get_backend_name()
        except (ArgumentError, ValueError):
            return ""  # the backend's own checks give the error
    return str(getattr(getattr(engine, "dialect", None), "name", ""))


class SQLAlchemyCatalogBackend(SQLAlchemyBackend):
    """:class:`SQLAlchemyBackend` where it keeps the session catalog (see the module).

    ``SQLAlchemyBackend(config)`` builds one where :func:`keeps_catalog` holds.
    Besides the base's capabilities it declares ``KeepsCatalog``,
    ``TracksWriteTimes`` and ``PrunesSessions`` (with ``owner=``).
    """

    def __init__(self, config: SQLAlchemyConfig) -> None:
        super().__init__(config)
        if self.statements.catalog is None:
            self.client.close()
            raise ConfigError(
                f"backend 'sqlalchemy' keeps no session catalog for layout={config.layout!r} "
                f"on {self.client.dialect.name}: only the 'chathistory' layout on "
                f"{', '.join(CATALOG_DIALECTS)} does (build SQLAlchemyBackend instead)")

    @property
    def catalog(self) -> Catalog:
        catalog = self.statements.catalog
        assert catalog is not None, "built only where the catalog is kept"
        return catalog

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        """A page of summaries by ``(updated_at, session_id)``: one index range of the
        owner's (or everyone's) entries; a metadata filter is applied to the rows read."""
        owner = check_text("owner", owner)
        wanted = check_where(where)
        limit = check_limit(limit)
        after = read_cursor(cursor, newest_first)
        if after is not None and not (
                len(after) == 3 and isinstance(after[0], int) and not isinstance(after[0], bool)
                and isinstance(after[1], str) and isinstance(after[2], str)):
            raise ValueError(f"not a listing cursor: {str(cursor)[:40]!r}")
        batch = limit + 1 if not wanted else max(limit + 1, _FILTERED_BATCH)
        found: list[Any] = []
        while True:
            statement, params = self.catalog.page(owner=owner, newest_first=newest_first,
                                                  after=after, limit=batch)
            rows = yield statement, params
            found += [row for row in rows
                      if (owner is None or row[1] == owner) and _matches(row[3], wanted)]
            if len(found) > limit or len(rows) < batch:
                break
            after = position(rows[-1])
        page = [summary(row) for row in found[:limit]]
        if len(found) <= limit:
            return SummaryPage(page, None)
        return SummaryPage(page, write_cursor(position(found[limit - 1]), newest_first))

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        """The summaries of those ids that have one: a statement per 500 ids."""
        wanted = set(_ids(session_ids))
        hashes = sorted({session_hash(session_id) for session_id in wanted})
        found: dict[str, SessionSummary] = {}
        for start in range(0, len(hashes), IN_LIST):
            rows = yield self.catalog.by_hashes(), {"hashes": hashes[start:start + IN_LIST]}
            found.update((row[0], summary(row)) for row in rows if row[0] in wanted)
        return found

    @operation(write=True, transaction=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        """Set the owner, title or metadata: the entry is read (locked) and upserted."""
        check_session_id(session_id)
        if not isinstance(owner, Unchanged):
            check_text("owner", owner)
        if not isinstance(title, Unchanged):
            check_text("title", title)
        if metadata is not None:
            check_metadata(metadata)
        catalog = self.catalog
        digest = {"hashes": [session_hash(session_id)]}
        rows = yield catalog.by_hashes().with_for_update(), digest
        stored_owner, stored_title, stored_metadata = rows[0][1:4] if rows else (None, None,
                                                                                "{}")
        if not isinstance(owner, Unchanged) and not (only_if_unset and stored_owner):
            stored_owner = owner
        if not isinstance(title, Unchanged) and not (only_if_unset and stored_title):
            stored_title = title
        if metadata is not None:
            stored_metadata = check_metadata(
                merge_metadata(json.loads(stored_metadata), metadata, replace_metadata))
        now = now_micros()
        yield catalog.describe, catalog.row(session_id, created_at=now, updated_at=now,
                                            owner=stored_owner, title=stored_title,
                                            metadata=stored_metadata)
        (row,) = yield catalog.by_hashes(), digest
        return summary(row)

    @operation(write=True, transaction=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        """Delete these sessions' messages and entries: one transaction, 500 ids a statement."""
        catalog = self.catalog
        hashes = sorted({session_hash(session_id) for session_id in _ids(session_ids)})
        receipt = ErasureReceipt(dry_run=dry_run)
        for start in range(0, len(hashes), IN_LIST):
            part = {"hashes": hashes[start:start + IN_LIST]}
            ((sessions, messages),) = yield catalog.totals, part
            receipt.add(ErasureReceipt(int(sessions), int(messages)))
            if not dry_run and sessions:
                yield catalog.erase_messages, part
                yield catalog.delete, part
        return receipt

    @operation(write=True, transaction=True)
    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> Operation[None]:
        """Upsert each summary's owner, title, metadata and both times (not its count)."""
        catalog = self.catalog
        rows = [catalog.row(check_session_id(entry.session_id), created_at=micros(entry.created_at),
                            updated_at=micros(entry.updated_at),
                            owner=check_text("owner", entry.owner),
                            title=check_text("title", entry.title),
                            metadata=check_metadata(entry.metadata))
                for entry in summaries]
        if rows:
            yield catalog.restore, rows

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions after ``after`` in id order (the base's listing), with
        their counts and write times from the catalog: one more statement."""
        ids = yield from self.session_ids_page(after, limit)
        rows = (yield self.catalog.by_hashes(),
                {"hashes": sorted({session_hash(session_id) for session_id in ids})}
                ) if ids else []
        kept = {row[0]: row for row in rows}
        return [SessionInfo(session_id, int(kept[session_id][6]),
                            from_micros(kept[session_id][5])) if session_id in kept
                else SessionInfo(session_id) for session_id in ids]

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        """When messages were last appended to ``session_id``: its entry's ``updated_at``."""
        digest = session_hash(check_session_id(session_id))
        rows = yield self.catalog.by_hashes(), {"hashes": [digest]}
        kept = [row for row in rows if row[0] == session_id and row[6] > 0]
        return from_micros(kept[0][5]) if kept else None

    @operation(write=True, transaction=True)
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        """Delete the sessions (of ``owner``) last updated before ``cutoff``: one transaction."""
        count, messages, entries, params = self.catalog.prune(
            micros(cutoff), check_text("owner", owner))
        ((found,),) = yield count, params
        if found and not dry_run:
            yield messages, params
            yield entries, params
        return int(found)

    alist_summaries = list_summaries.async_twin
    asession_summaries = session_summaries.async_twin
    aupdate_session = update_session.async_twin
    aerase_sessions = erase_sessions.async_twin
    arestore_summaries = restore_summaries.async_twin
    alist_sessions = list_sessions.async_twin
    alast_write = last_write.async_twin
    adelete_sessions_before = delete_sessions_before.async_twin


def _ids(session_ids: Sequence[str]) -> list[str]:
    if isinstance(session_ids, str):
        raise TypeError("session_ids must be a list of ids, not one str")
    return [check_session_id(session_id) for session_id in dict.fromkeys(session_ids)]


def _matches(metadata: str, wanted: Mapping[str, MetadataValue]) -> bool:
    """Each key holds that value as JSON does: 1, "1" and true are three values."""
    if not wanted:
        return True
    stored = json.loads(metadata)
    return all(key in stored and json.dumps(stored[key]) == json.dumps(value)
               for key, value in wanted.items())
