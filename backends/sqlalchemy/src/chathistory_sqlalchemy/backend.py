"""The ``sqlalchemy`` backend: each operation written once, as the statements it yields to
the core's runner. Importing this module does not import SQLAlchemy; building a backend does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chathistory import BaseBackend, Operation, Runner, decode_record, encode_record, operation
from chathistory.capabilities import SessionInfo, check_page_limit, check_record_texts
from chathistory_sqlalchemy.config import SQLAlchemyConfig

if TYPE_CHECKING:
    from chathistory_sqlalchemy.client import SQLAlchemyDriver
    from chathistory_sqlalchemy.sql import Statements

__all__ = ["SQLAlchemyBackend", "check_session_id"]


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
    :class:`~chathistory_sqlalchemy.catalog.SQLAlchemyCatalogBackend`, which also
    keeps the session catalog (``KeepsCatalog``, ``TracksWriteTimes``, ``PrunesSessions``).

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
        if cls is SQLAlchemyBackend:
            from chathistory_sqlalchemy.catalog import SQLAlchemyCatalogBackend, keeps_catalog

            if keeps_catalog(config):
                cls = SQLAlchemyCatalogBackend
        return super().__new__(cls)

    def __init__(self, config: SQLAlchemyConfig) -> None:
        super().__init__(config)
        from chathistory_sqlalchemy.client import SQLAlchemyDriver
        from chathistory_sqlalchemy.sql import Statements

        self.client: SQLAlchemyDriver = SQLAlchemyDriver(config)
        self.statements: Statements = Statements.build(config.table_name, config.layout,
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

        statements = self.statements
        yield lambda connection: migrate(connection, statements)

    @operation(write=True, transaction=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        messages = [encode_record(record) for record in records]
        rows = self.statements.rows(check_session_id(session_id), messages)
        if rows:
            yield from self.statements.claim({session_id: len(rows)})
            yield self.statements.insert_batch(self.client.dialect, rows)

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
        return [decode_record(row[0]) for row in rows]

    @operation(write=True, transaction=True)
    def clear(self, session_id: str) -> Operation[None]:
        """Delete this session's rows (and its catalog entry, where one is kept)."""
        params = self.statements.session(check_session_id(session_id))
        yield self.statements.delete, params
        catalog = self.statements.catalog
        if catalog is not None:
            yield catalog.delete, {"hashes": [params["session_hash"]]}

    acreate_collection = create_collection.async_twin
    aappend = append.async_twin
    afetch = fetch.async_twin
    aclear = clear.async_twin

    # Optional capabilities: listing, bulk reads and writes.

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions after ``after``, in id order (as Python sorts ``str``):
        through the listing index, or the table where it has none yet. ``messages`` and
        ``last_write`` are None where no catalog is kept (counting would read every row)."""
        ids = yield from self.session_ids_page(after, limit)
        return [SessionInfo(session_id) for session_id in ids]

    def session_ids_page(self, after: str | None, limit: int) -> Operation[list[str]]:
        """The steps of :meth:`list_sessions` that read the ids of its page."""
        from chathistory_sqlalchemy.errors import index_missing

        after = None if after is None else check_session_id(after)
        limit = check_page_limit(limit)
        listing = self.statements.listing
        try:
            return (yield from listing.pages(after, limit))
        except Exception as error:
            if not index_missing(error):
                raise
            return (yield from listing.pages(after, limit, scan=True))

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        """Every record of each session that has any, oldest first: :meth:`fetch_many_text`."""
        texts = yield from self._fetch_texts(session_ids)
        return {session_id: [decode_record(text) for text in stored]
                for session_id, stored in texts.items()}

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        """:meth:`fetch_many`, each record as the JSON text stored: a statement per 500."""
        return (yield from self._fetch_texts(session_ids))

    def _fetch_texts(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        if isinstance(session_ids, str):
            raise TypeError("session_ids must be a sequence of session ids, not one str")
        wanted = [check_session_id(session_id) for session_id in session_ids]
        return (yield from self.statements.fetch_many(wanted)) if wanted else {}

    @operation(write=True, transaction=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                    ) -> Operation[None]:
        """Append each session's records after its others: one transaction, all or nothing."""
        if not isinstance(batches, Mapping):
            raise TypeError("batches must map each session id to its records")
        # Every record of every session is encoded before any I/O: all or nothing.
        yield from self._append_texts({session_id: [encode_record(record) for record in records]
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

    alist_sessions = list_sessions.async_twin
    afetch_many = fetch_many.async_twin
    afetch_many_text = fetch_many_text.async_twin
    aappend_many = append_many.async_twin
    aappend_many_text = append_many_text.async_twin


def check_session_id(session_id: str) -> str:
    """``session_id`` if it is a str SQL can bind (no lone surrogate), else a ValueError."""
    if not isinstance(session_id, str):
        raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("session_id is not valid Unicode (it has a lone surrogate)") from None
    return session_id
