"""The options of the ``postgres`` backend.

This module does not import psycopg: the fake swap of ``chathistory.testing``
validates options against :class:`PostgresConfig` without loading the driver.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, SecretStr, StringConstraints, model_validator

from chathistory import BackendConfig, Identifier

__all__ = ["TABLE_PATTERN", "Layout", "PostgresConfig", "TableName"]

TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,47}$"
"""A table name: letters, digits and ``_``, at most 48 characters, so that the names
derived from it (``<table>_sid_id_idx``, ``<table>_sessions``, langchain-postgres's
``idx_<table>_session_id``) fit PostgreSQL's 63 instead of being silently truncated."""

TableName = Annotated[str, StringConstraints(pattern=TABLE_PATTERN)]

Layout = Literal["chathistory", "langchain_postgres"]

SynchronousCommit = Literal["on", "off", "local", "remote_write", "remote_apply"]


class PostgresConfig(BackendConfig):
    """Options of the ``postgres`` backend. See docs/backends/postgres.md for each one.

    Give ``conninfo`` and the backend opens its own pools, or lend it open
    ``connection``/``pool`` (sync) and/or ``async_connection``/``async_pool``
    of the application's: ``close()`` leaves those open.
    """

    model_config = ConfigDict(validate_by_name=True)

    conninfo: SecretStr | None = Field(
        None, description="A libpq URL or key=value string; the password in it is secret. "
                          "'' means libpq's defaults and PG* environment variables.")
    connection: Any = Field(None, description="An open psycopg.Connection the app owns.")
    pool: Any = Field(None, description="An open psycopg_pool.ConnectionPool the app owns.")
    async_connection: Any = Field(None, description="An open psycopg.AsyncConnection.")
    async_pool: Any = Field(None, description="An open psycopg_pool.AsyncConnectionPool.")
    db_schema: Identifier = Field(
        "public", alias="schema", description="The schema holding the table (created if missing).")
    table: TableName = Field("chathistory_messages", description="The table's name.")
    layout: Layout = Field(
        "chathistory", description="'chathistory' (this backend's table) or "
                                   "'langchain_postgres' (a PostgresChatMessageHistory table).")
    min_size: int = Field(1, ge=0, description="Connections the own sync pool keeps open.")
    max_size: int = Field(10, ge=1, description="Connections the own sync pool may open.")
    async_pool_size: int = Field(
        4, ge=1, description="Connections of each own async pool (one per event loop), "
                             "all opened by the loop's first async call.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to establish a connection.")
    timeout: float = Field(
        10.0, gt=0, description="Seconds a call waits for a connection from a pool, "
                                "including while the pool reconnects after a restart.")
    prepared_statements: bool = Field(
        True, description="Prepare the hot statements; turn off behind a PgBouncer "
                          "older than 1.21 in transaction mode.")
    synchronous_commit: SynchronousCommit | None = Field(
        None, description="SET synchronous_commit on the backend's own connections; "
                          "None keeps the server's setting.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_size < self.min_size:
            raise ValueError("max_size must be at least min_size")
        if self.connection is not None and self.pool is not None:
            raise ValueError("give either connection or pool, not both")
        if self.async_connection is not None and self.async_pool is not None:
            raise ValueError("give either async_connection or async_pool, not both")
        lent = (self.connection, self.pool, self.async_connection, self.async_pool)
        if self.conninfo is None and all(source is None for source in lent):
            # The core puts "backend 'postgres': " in front: the one wording every
            # backend uses for a missing option, with what else would do.
            raise ValueError(
                "option 'conninfo' is required (a postgresql:// URL or a key=value string), "
                "unless an open connection, pool, async_connection or async_pool is given")
        return self
