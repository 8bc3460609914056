"""The ``sqlalchemy`` backend: each operation written once, as the statements it yields to
the core's runner. Importing this module does not import SQLAlchemy; building a backend does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chathistory import BaseBackend, ConfigError, Operation, Runner, operation
from chathistory.capabilities import SessionInfo, check_cutoff, check_record_texts
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_session_id,
    check_session_ids,
    check_text,
    check_update,
    check_where,
    checked_entry,
    metadata_matches,
    read_cursor,
    summary_page,
    updated_entry,
)
from chathistory.records import decode_records, encode_records
from chathistory_sqlalchemy.config import SQLAlchemyConfig

if TYPE_CHECKING:
    from chathistory_sqlalchemy.client import SQLAlchemyDriver
    from chathistory_sqlalchemy.sql import Catalog, Statements

__all__ = ["SQLAlchemyBackend", "SQLAlchemyCatalogBackend", "keeps_catalog"]

_FILTERED_BATCH = 200  # rows read per statement while a metadata filter skips some


class SQLAlchemyBackend(BaseBackend):
    """Stores each message as a row; reads the newest N through an index on (session, id).

    Args:
        config: A :class:`SQLAlchemyConfig`; :meth:`from_options` builds one from keywords.

    Raises:
        chathistory.ConfigError: a bad option or URL, a missing driver, or an
            application object of the wrong type.

    Connections open on first use. Later calls raise ``BackendUnavailableError``
    (unreachable, after retrying what is safe), ``PermissionDeniedError``,
    ``RecordError`` (a batch the table cannot hold) or ``CollectionMissingError``
    (no table, or no SQLite file: only :meth:`create_collection` creates them).
    Besides the four methods it has the capabilities ``ListsSessions`` (in id
    order), ``FetchesInBulk``, ``CopiesInBulk`` and ``CopiesRecordText``. Built for
    the ``chathistory`` layout on MySQL/MariaDB, SQLite or PostgreSQL, it is a
    :class:`SQLAlchemyCatalogBackend`, which also keeps the session catalog
    (``KeepsCatalog``, ``TracksWriteTimes``, ``PrunesSessions``).

    Attributes:
        client: The engines (:class:`~chathistory_sqlalchemy.client.SQLAlchemyDriver`).
        statements: The table and its SQL (:class:`~chathistory_sqlalchemy.sql.Statements`).

    Example::

        backend = SQLAlchemyBackend.from_options(url="mysql+pymysql://app:secret@db/chat")
        history = ChatHistory("user-42", backend=backend)
    """

    name = "sqlalchemy"
    Config = SQLAlchemyConfig
    config: SQLAlchemyConfig

    def __new__(cls, config: SQLAlchemyConfig) -> SQLAlchemyBackend:
        # The catalog is declared (its methods exist) only where it is kept: the class
        # is chosen from the layout and the dialect, before anything connects.
        if cls is SQLAlchemyBackend and keeps_catalog(config):
            cls = SQLAlchemyCatalogBackend
        return super().__new__(cls)

    def __init__(self, config: SQLAlchemyConfig) -> None:
        super().__init__(config)
        from chathistory_sqlalchemy import sql
        from chathistory_sqlalchemy.client import SQLAlchemyDriver

        self.client: SQLAlchemyDriver = SQLAlchemyDriver(config)
        self.statements: Statements = sql.Statements(config.table_name, config.layout,
                                                     self.client.dialect)
        self.runner = Runner(self, self.client)

    def __repr__(self) -> str:
        return (f"SQLAlchemyBackend(server={self.client.server!r}, "
                f"table={self.config.table_name!r}, layout={self.config.layout!r})")

    @operation(transaction=True)
    def create_collection(self) -> Operation[None]:
        """Create or upgrade the table in place: the steps of ``sql.MIGRATIONS`` it lacks.
        A table of the other layout is refused."""
        from chathistory_sqlalchemy.sql import migrate

        yield lambda connection: migrate(connection, self.statements)

    @operation(write=True, transaction=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        yield from self._append_texts({check_session_id(session_id): encode_records(records)})

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""
        params = self.statements.session(check_session_id(session_id))
        if limit is None:
            rows = yield self.statements.select_all, params
        elif limit < 0:
            raise ValueError(f"limit must be None or at least 0, not {limit}")
        elif limit == 0:
            return []
        else:
            rows = yield self.statements.select_newest, {**params, "limit": limit}
        return decode_records([row[0] for row in rows])

    @operation(write=True, transaction=True)
    def clear(self, session_id: str) -> Operation[None]:
        """Delete this session's rows (and its catalog entry, where one is kept)."""
        params = self.statements.session(check_session_id(session_id))
        yield self.statements.delete, params
        catalog = self.statements.catalog
        if catalog is not None:
            yield catalog.delete, {"hashes": [params["session_hash"]]}

    # Optional capabilities: listing, bulk reads and writes.

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions after ``after``, in id order (as Python sorts ``str``),
        with their counts and write times from the catalog: one more statement. They are
        None where no catalog is kept (counting would read every row)."""
        after = None if after is None else check_session_id(after)
        ids = yield from self.statements.listing.pages(after, check_limit(limit))
        kept = yield from self._summaries(ids)
        return [SessionInfo(session_id, kept[session_id].messages, kept[session_id].updated_at)
                if session_id in kept else SessionInfo(session_id) for session_id in ids]

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        """Every record of each session that has any, oldest first: :meth:`fetch_many_text`."""
        texts = yield from self.statements.fetch_many(_ids(session_ids))
        return {session_id: decode_records(stored) for session_id, stored in texts.items()}

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        """:meth:`fetch_many`, each record as the JSON text stored: a statement per 500."""
        return (yield from self.statements.fetch_many(_ids(session_ids)))

    @operation(write=True, transaction=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                    ) -> Operation[None]:
        """Append each session's records after its others: one transaction, all or nothing."""
        if not isinstance(batches, Mapping):
            raise TypeError("batches must map each session id to its records")
        # Every record of every session is encoded before any I/O: all or nothing.
        yield from self._append_texts({session_id: encode_records(records)
                                       for session_id, records in batches.items()})

    @operation(write=True, transaction=True)
    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        """:meth:`append_many` of records given as JSON text (stored as given)."""
        check_record_texts(batches)
        yield from self._append_texts(batches)

    def _append_texts(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        rows = [self.statements.rows(check_session_id(session_id), list(texts))
                for session_id, texts in batches.items() if texts]
        yield from self.statements.claim({session_id: len(texts)
                                          for session_id, texts in batches.items()})
        yield from self.statements.insert_many(self.client.dialect, rows)

    def _summaries(self, session_ids: Sequence[str]) -> Operation[dict[str, SessionSummary]]:
        """The catalog's entries of ``session_ids`` (not of others with the same hash); none
        where no catalog is kept."""
        catalog = self.statements.catalog
        if catalog is None:
            return {}
        rows: list[Any] = []
        for part in catalog.chunks(session_ids):
            rows += yield catalog.by_hashes, part
        wanted = set(session_ids)
        return {row[0]: catalog.summary(row) for row in rows if row[0] in wanted}


# -- the session catalog: <table>_sessions, kept in the appends' transactions ---------------

def keeps_catalog(config: SQLAlchemyConfig) -> bool:
    """Whether a backend of ``config`` keeps the catalog: the layout and dialect allow it."""
    from chathistory_sqlalchemy.sql import CATALOG_DIALECTS

    return config.layout == "chathistory" and _dialect_name(config) in CATALOG_DIALECTS


def _dialect_name(config: SQLAlchemyConfig) -> str:
    from chathistory_sqlalchemy.client import parse_url

    if config.url is not None:
        return parse_url(config.url.get_secret_value(), "url").get_backend_name()
    engine = config.engine if config.engine is not None else config.async_engine
    return str(getattr(getattr(engine, "dialect", None), "name", ""))


class SQLAlchemyCatalogBackend(SQLAlchemyBackend):
    """:class:`SQLAlchemyBackend` where it keeps the session catalog, ``<table>_sessions``.

    ``SQLAlchemyBackend(config)`` builds one where :func:`keeps_catalog` holds: the
    ``chathistory`` layout on MySQL/MariaDB, SQLite and PostgreSQL. A
    ``langchain_community`` table is written by the peer class too, which this
    backend cannot count without altering the peer's table: there it declares no
    catalog. Besides the base's capabilities it declares ``KeepsCatalog``,
    ``TracksWriteTimes`` and ``PrunesSessions`` (with ``owner=``).
    """

    def __init__(self, config: SQLAlchemyConfig) -> None:
        super().__init__(config)
        if self.statements.catalog is None:
            self.client.close()
            raise ConfigError(
                f"backend 'sqlalchemy' keeps no session catalog for layout={config.layout!r} "
                f"on {self.client.dialect.name}: only the 'chathistory' layout on "
                "MySQL/MariaDB, SQLite and PostgreSQL does (build SQLAlchemyBackend instead)")
        self.catalog: Catalog = self.statements.catalog

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        """A page of summaries by ``(updated_at, session_id)``: one index range of the
        owner's (or everyone's) entries; a metadata filter is applied to the rows read."""
        owner = check_text("owner", owner)
        wanted = check_where(where)
        limit = check_limit(limit)
        after = read_cursor(cursor, newest_first, (int, str, str))
        catalog = self.catalog
        batch = limit + 1 if not wanted else max(limit + 1, _FILTERED_BATCH)
        found: list[Any] = []
        while True:
            rows = yield catalog.page(owner=owner, newest_first=newest_first, after=after,
                                      limit=batch)
            found += [row for row in rows
                      if (owner is None or row[1] == owner)
                      and (not wanted or metadata_matches(json.loads(row[3]), wanted))]
            if len(found) > limit or len(rows) < batch:
                break
            after = catalog.position(rows[-1])
        return summary_page(found, limit, newest_first, catalog.summary, catalog.position)

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        """The summaries of those ids that have one: a statement per 500 ids."""
        return (yield from self._summaries(_ids(session_ids)))

    @operation(write=True, transaction=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        """Set the owner, title or metadata: the entry is read (locked) and upserted."""
        check_session_id(session_id)
        check_update(owner, title, metadata)
        catalog = self.catalog
        (digest,) = catalog.chunks([session_id])
        rows = yield catalog.by_hashes.with_for_update(), digest
        stored_owner, stored_title, stored_metadata = updated_entry(
            rows[0][1:4] if rows else None, owner, title, metadata, replace_metadata,
            only_if_unset)
        now = datetime.now(UTC)
        yield catalog.describe, catalog.row(session_id, created_at=now, updated_at=now,
                                            owner=stored_owner, title=stored_title,
                                            metadata=stored_metadata)
        (row,) = yield catalog.by_hashes, digest
        return catalog.summary(row)

    @operation(write=True, transaction=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        """Delete these sessions' messages and entries: one transaction, 500 ids a statement."""
        catalog = self.catalog
        receipt = ErasureReceipt(dry_run=dry_run)
        for part in catalog.chunks(_ids(session_ids)):
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
        rows = []
        for entry in summaries:
            owner, title, metadata = checked_entry(entry)
            rows.append(catalog.row(check_session_id(entry.session_id),
                                    created_at=entry.created_at, updated_at=entry.updated_at,
                                    owner=owner, title=title, metadata=metadata))
        if rows:
            yield catalog.restore, rows

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        """When messages were last appended to ``session_id``: its entry's ``updated_at``."""
        kept = yield from self._summaries([check_session_id(session_id)])
        summary = kept.get(session_id)
        return summary.updated_at if summary is not None and summary.messages > 0 else None

    @operation(write=True, transaction=True)
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        """Delete the sessions (of ``owner``) last updated before ``cutoff``: one transaction."""
        count, messages, entries, params = self.catalog.prune(check_cutoff(cutoff),
                                                           check_text("owner", owner))
        ((found,),) = yield count, params
        if found and not dry_run:
            yield messages, params
            yield entries, params
        return int(found)


def _ids(session_ids: Sequence[str]) -> list[str]:
    return [check_session_id(session_id) for session_id in check_session_ids(session_ids)]


