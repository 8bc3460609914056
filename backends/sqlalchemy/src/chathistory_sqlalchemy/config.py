"""The options of the ``sqlalchemy`` backend.

This module does not import SQLAlchemy: the fake swap of ``chathistory.testing``
validates options against :class:`SQLAlchemyConfig` without loading it. The URL
is parsed (and an application's engine type-checked) when the backend is built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, StringConstraints, model_validator

from chathistory import BackendConfig

__all__ = ["DEFAULT_TABLES", "TABLE_PATTERN", "Layout", "SQLAlchemyConfig"]

TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,47}$"
"""Letters, digits and ``_``, at most 48 characters (stricter than
:data:`chathistory.IDENTIFIER_PATTERN`), so that ``<table>_session_key_idx`` and
``<table>_migrations`` fit MySQL's 64 characters too."""

Layout = Literal["chathistory", "langchain_community"]
DEFAULT_TABLES: dict[Layout, str] = {"chathistory": "chathistory_messages",
                                     "langchain_community": "message_store"}


class SQLAlchemyConfig(BackendConfig):
    """Options of the ``sqlalchemy`` backend. See docs/backends/sqlalchemy.md for each one.

    Give a ``url`` (the backend builds its engines), or the application's own
    ``engine`` and/or ``async_engine`` (``close()`` leaves those alone).
    """

    url: SecretStr | None = Field(
        None, description="A SQLAlchemy URL, e.g. mysql+pymysql://app:secret@db/chat; "
                          "the password in it is secret.")
    async_url: SecretStr | None = Field(
        None, description="The URL of the async engine; derived from url when not given "
                          "(mysql+pymysql -> mysql+aiomysql, sqlite -> sqlite+aiosqlite).")
    engine: Any = Field(None, description="A sqlalchemy.engine.Engine the application owns.")
    async_engine: Any = Field(
        None, description="A sqlalchemy.ext.asyncio.AsyncEngine the application owns.")
    native_async: bool = Field(
        True, description="Use the dialect's async driver for the async methods when one "
                          "is installed; False runs the sync methods in worker threads.")
    table: Annotated[str, StringConstraints(pattern=TABLE_PATTERN)] | None = Field(
        None, description="The table's name; default chathistory_messages, or message_store "
                          "with layout='langchain_community'.")
    layout: Layout = Field(
        "chathistory", description="'chathistory' (this backend's table) or "
                                   "'langchain_community' (an SQLChatMessageHistory table).")
    pool_size: int = Field(5, ge=1, description="Connections each own engine's pool keeps.")
    max_overflow: int = Field(10, ge=0, description="Connections beyond pool_size, "
                                                    "opened under load and closed after.")
    pool_timeout: float = Field(30.0, gt=0, description="Seconds a call waits for a pooled "
                                                         "connection.")
    pool_recycle: int = Field(3600, ge=-1, description="Replace connections older than this "
                                                       "many seconds (-1: never).")
    pool_pre_ping: bool = Field(True, description="Check a pooled connection before lending "
                                                  "it (reconnects after a server restart).")
    connect_args: dict[str, Any] = Field(
        default_factory=dict, repr=False,
        description="Extra keyword arguments for the DBAPI's connect().")

    @property
    def table_name(self) -> str:
        return self.table or DEFAULT_TABLES[self.layout]

    @model_validator(mode="after")
    def _a_source(self) -> Self:
        if self.url is None and self.engine is None and self.async_engine is None:
            raise ValueError("give url (a SQLAlchemy URL), or an application's engine "
                             "and/or async_engine")
        if self.url is not None and self.engine is not None:
            raise ValueError("give either url or engine, not both")
        if self.async_url is not None and self.async_engine is not None:
            raise ValueError("give either async_url or async_engine, not both")
        return self
