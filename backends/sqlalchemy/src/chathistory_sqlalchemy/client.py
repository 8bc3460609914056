"""The driver the core's runner uses: SQLAlchemy engines, from the config or the application.

SQLAlchemy's own machinery does the work: its engines' pools, ``pool_pre_ping`` (a
connection the server dropped is replaced) and ``pool_recycle``. A request is a
statement and its parameters (the reply: its rows), or a function of a sync
``Connection`` (run through ``run_sync`` on an async one).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chathistory import Call, CollectionMissingError, ConfigError, Driver
from chathistory_sqlalchemy import errors
from chathistory_sqlalchemy.config import SQLAlchemyConfig
from chathistory_sqlalchemy.sql import MYSQL_DIALECTS

__all__ = ["ASYNC_DRIVERS", "SQLAlchemyDriver", "async_url_for", "parse_url"]

ASYNC_DRIVERS: dict[str, tuple[str, ...]] = {
    "mysql": ("aiomysql", "asyncmy"),
    "mariadb": ("aiomysql", "asyncmy"),
    "sqlite": ("aiosqlite",),
    "postgresql": ("psycopg", "asyncpg"),
}
ACTIONS = {"create_collection": "create the table", "clear": "clear", "append": "append",
           "append_many": "append", "append_many_text": "append",
           "update_session": "update a session", "erase_sessions": "erase sessions",
           "restore_summaries": "restore summaries",
           "delete_sessions_before": "prune"}  # in errors; others "read"


def parse_url(secret: str, option: str) -> URL:
    """The URL of option ``option``, checked: a ``ConfigError`` that hides the password."""
    try:
        url = make_url(secret)
    except (sa_exc.ArgumentError, ValueError):
        # SQLAlchemy's message repeats the whole string, password included.
        raise ConfigError(f"backend 'sqlalchemy': option {option!r} is not a SQLAlchemy URL "
                          "(dialect+driver://user:password@host:port/database)") from None
    dialect = url.get_backend_name()
    if dialect in MYSQL_DIALECTS:
        charset = url.query.get("charset")
        if charset is None:
            return url.update_query_dict({"charset": "utf8mb4"})
        if charset != "utf8mb4":
            raise ConfigError(
                f"backend 'sqlalchemy': option {option!r} sets charset={charset}; use "
                "charset=utf8mb4 (or leave it out) so every character, emoji included, "
                "can be stored")
    if dialect == "sqlite" and (url.database in (None, "", ":memory:")
                                or url.query.get("mode") == "memory"):
        raise ConfigError(
            f"backend 'sqlalchemy': option {option!r} names an in-memory SQLite database, "
            "which lives in one connection; give a file (sqlite:///path/chat.db), or use "
            "backend 'memory'")
    return url


def async_url_for(url: URL) -> URL | None:
    """The URL of ``url``'s database through an installed async driver, if there is one."""
    dialect = url.get_backend_name()
    for driver in ASYNC_DRIVERS.get(dialect, ()):
        if find_spec(driver) is not None:
            return url.set(drivername=f"{dialect}+{driver}")
    return None


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names, or None: another dialect, in memory, or a ``file:`` URI."""
    database = url.database
    if (url.get_backend_name() != "sqlite" or not database or database == ":memory:"
            or database.startswith("file:") or url.query.get("uri") in ("true", "1")):
        return None
    return Path(database)


def _one_tls_context(engine: Engine) -> None:
    """Connect as PyMySQL's default TLS mode (PREFERRED) does, with one SSL context.

    PyMySQL builds a context per new connection to try TLS (about 50 ms of CPU
    here: most of a reconnect). The first connection shows whether the server
    offers TLS; later ones get one context with PREFERRED's settings, or none.
    Connections given any TLS option (or an option file) are left as they are.
    """
    from pymysql.constants import CLIENT  # type: ignore[import-untyped]

    learned: dict[str, Any] = {}  # the connect() arguments of later connections

    @event.listens_for(engine, "connect")
    def learn(dbapi_connection: Any, record: Any) -> None:
        if learned:
            return
        if dbapi_connection.server_capabilities & CLIENT.SSL:
            learned["ssl"] = context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        else:
            learned["ssl_disabled"] = True

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, args: Any, options: dict[str, Any]) -> None:
        if not any(option.startswith(("ssl", "read_default")) for option in options):
            options.update(learned)


class SQLAlchemyDriver(Driver[Connection, AsyncEngine, AsyncConnection]):
    """The backend's engines: its own, built from ``url``, or the application's.

    ``server`` is the URL with its password hidden; ``native_async``: the async methods
    run natively. Connecting to a SQLite file that does not exist creates it, so every
    call but ``create_collection`` first checks that the file is there (until seen).
    """

    def __init__(self, config: SQLAlchemyConfig) -> None:
        for option, expected, what in (("engine", Engine, "sqlalchemy.engine.Engine"), (
                "async_engine", AsyncEngine, "sqlalchemy.ext.asyncio.AsyncEngine")):
            value = getattr(config, option)
            if value is not None and not isinstance(value, expected):
                raise ConfigError(f"backend 'sqlalchemy': option {option!r} must be a {what}, "
                                  f"not {type(value).__name__}")
        self.config = config
        self._engine: Engine | None = config.engine
        async_url = (None if config.async_url is None
                     else parse_url(config.async_url.get_secret_value(), "async_url"))
        if config.url is not None:
            url = parse_url(config.url.get_secret_value(), "url")
            self._engine = self._build(create_engine, url)
            async_url = async_url or async_url_for(url)
        # The application's async engine is used as given; else the URL's, if wanted.
        self.async_url = async_url if config.native_async and config.async_engine is None \
            else None
        shown = self._engine or config.async_engine
        assert shown is not None  # the config requires url, engine or async_engine
        self.server: str = shown.url.render_as_string(hide_password=True)
        self.dialect: Dialect = shown.dialect
        self.native_async = config.async_engine is not None or self.async_url is not None
        self._unseen_database = sqlite_file(shown.url)  # None once seen

    def _build(self, build: Callable[..., Any], url: URL) -> Any:
        config = self.config
        try:
            # No reset on return: every try ends its transaction itself (a commit, or the
            # rollback of closing), so the pool's ROLLBACK after a commit is a wasted trip.
            engine = build(url, pool_size=config.pool_size, max_overflow=config.max_overflow,
                           pool_timeout=config.pool_timeout, pool_recycle=config.pool_recycle,
                           pool_pre_ping=config.pool_pre_ping, pool_reset_on_return=None,
                           connect_args=dict(config.connect_args))
            if url.get_driver_name() == "pymysql":
                _one_tls_context(engine)
            return engine
        except (sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
            raise ConfigError(
                f"backend 'sqlalchemy' cannot load the driver of "
                f"{url.render_as_string(hide_password=True)}: {exc} (install it, e.g. "
                "pip install 'chathistory-sqlalchemy[mysql]' for MySQL/MariaDB)") from None
        except (sa_exc.ArgumentError, TypeError) as exc:
            raise ConfigError(f"backend 'sqlalchemy': {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}") from None

    def require_database(self, path: Path) -> None:
        """Raise ``CollectionMissingError`` if the SQLite file ``path`` does not exist."""
        if not path.is_file():
            raise CollectionMissingError(
                f"backend 'sqlalchemy': no database at {str(path)!r} "
                "(nothing was created; create_collection() creates it; check the path)")
        self._unseen_database = None

    def engine(self) -> Engine:
        if self._engine is None:
            raise ConfigError(
                "backend 'sqlalchemy' was given only an async_engine: its sync methods need "
                "url or engine")
        return self._engine

    @contextmanager
    def connection(self, call: Call) -> Iterator[Connection]:
        """A pooled connection; with ``call.transaction``, committed at the end."""
        engine, database = self.engine(), self._unseen_database
        if database is not None and call.operation != "create_collection":
            self.require_database(database)
        with engine.connect() as connection:  # closing rolls back what was not committed
            yield connection
            if call.transaction:
                connection.commit()

    def send(self, connection: Connection, request: Any) -> Any:
        if callable(request):
            return request(connection)
        result = connection.execute(*request)
        return result.all() if result.returns_rows else []

    async def open_pool(self) -> AsyncEngine:
        if self.config.async_engine is not None:
            return self.config.async_engine  # type: ignore[no-any-return]
        assert self.async_url is not None
        # In a worker thread: building one imports the driver and, for SQLite, resolves
        # the file's path (blocking calls).
        return await asyncio.to_thread(self._build, create_async_engine, self.async_url)

    @asynccontextmanager
    async def async_connection(self, pool: AsyncEngine, call: Call
                               ) -> AsyncIterator[AsyncConnection]:
        database = self._unseen_database
        if database is not None and call.operation != "create_collection":
            await asyncio.to_thread(self.require_database, database)
        async with pool.connect() as connection:  # closing rolls back what was not committed
            yield connection
            if call.transaction:
                await connection.commit()

    async def asend(self, connection: AsyncConnection, request: Any) -> Any:
        if callable(request):
            return await connection.run_sync(request)
        result = await connection.execute(*request)
        return result.all() if result.returns_rows else []

    async def close_pool(self, pool: AsyncEngine) -> None:
        if pool is not self.config.async_engine:
            await pool.dispose()

    def forget_pool(self, pool: AsyncEngine) -> None:
        if pool is not self.config.async_engine:
            pool.sync_engine.dispose(close=False)  # its loop has ended: drop, do not close

    is_transient = staticmethod(errors.is_transient)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return errors.translate(error, action=ACTIONS.get(call.operation, "read"),
                                server=self.server)

    def close(self) -> None:
        if self._engine is not None and self._engine is not self.config.engine:
            self._engine.dispose()
