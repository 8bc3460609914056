"""The engines: built from the config (or the application's), lent, and disposed.

Everything here is SQLAlchemy's own machinery: ``create_engine`` and
``create_async_engine`` with their pools (``QueuePool`` and its async twin),
``pool_pre_ping`` to replace a connection the server dropped, and
``pool_recycle`` for MySQL's idle timeout.

An async engine's connections belong to the event loop that opened them, so
the backend keeps one async engine per running loop (built on its first async
call in that loop); the engines of loops that have ended are dropped.

Connecting to a SQLite file that does not exist creates it, so every call but
``create_collection`` first checks that the file is there (once: after it has
been seen, or created, the check costs nothing).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chathistory import CollectionMissingError, ConfigError
from chathistory_sqlalchemy.config import SQLAlchemyConfig
from chathistory_sqlalchemy.sql import MYSQL_DIALECTS

__all__ = ["ASYNC_DRIVERS", "Client", "async_url_for"]

T = TypeVar("T")

ASYNC_DRIVERS: dict[str, tuple[str, ...]] = {
    "mysql": ("aiomysql", "asyncmy"),
    "mariadb": ("aiomysql", "asyncmy"),
    "sqlite": ("aiosqlite",),
    "postgresql": ("psycopg", "asyncpg"),
}
"""The async drivers SQLAlchemy has for each dialect, in the order they are preferred."""


def _parse(secret: str, option: str) -> URL:
    try:
        return make_url(secret)
    except (sa_exc.ArgumentError, ValueError):
        # SQLAlchemy's message repeats the whole string, password included.
        raise ConfigError(f"backend 'sqlalchemy': option {option!r} is not a SQLAlchemy URL "
                          "(dialect+driver://user:password@host:port/database)") from None


def _checked(url: URL, option: str) -> URL:
    """``url`` made ready: utf8mb4 on MySQL/MariaDB; an in-memory SQLite refused."""
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


def _check_type(option: str, value: object, expected: type, what: str) -> None:
    if value is not None and not isinstance(value, expected):
        raise ConfigError(f"backend 'sqlalchemy': option {option!r} must be {what}, "
                          f"not {type(value).__name__}")


async def _dispose_at_loop_shutdown(engine: AsyncEngine) -> AsyncGenerator[None]:
    """Started once, and finalized by the loop's ``shutdown_asyncgens`` (or by aclose):
    disposes of ``engine``'s connections inside their own loop, before it closes."""
    try:
        yield
        yield  # never resumed: only finalized
    finally:
        await engine.dispose()


class Client:
    """The backend's engines: its own, built from ``url``, or the application's.

    Attributes:
        server: The database's URL with its password hidden, for messages.
        dialect: The SQLAlchemy dialect (``dialect.name`` is "mysql", "sqlite"...).
        has_async: Whether the async methods run natively (an async engine exists or
            can be built), rather than in worker threads.
    """

    def __init__(self, config: SQLAlchemyConfig) -> None:
        _check_type("engine", config.engine, Engine, "a sqlalchemy.engine.Engine")
        _check_type("async_engine", config.async_engine, AsyncEngine,
                    "a sqlalchemy.ext.asyncio.AsyncEngine")
        self.config = config
        self._lock = threading.Lock()
        # Per loop: our async engine, and the generator that disposes of it at shutdown.
        self._async_engines: dict[asyncio.AbstractEventLoop,
                                  tuple[AsyncEngine, AsyncGenerator[None]]] = {}
        self.owns_engine = config.url is not None
        self._engine: Engine | None = config.engine
        self.async_url: URL | None = None
        if config.async_url is not None:
            self.async_url = _checked(_parse(config.async_url.get_secret_value(), "async_url"),
                                      "async_url")
        if config.url is not None:
            url = _checked(_parse(config.url.get_secret_value(), "url"), "url")
            self._engine = self._build(url)
            if self.async_url is None and config.async_engine is None and config.native_async:
                self.async_url = async_url_for(url)
        if not config.native_async and config.async_engine is None:
            self.async_url = None
        shown = self._engine or config.async_engine
        assert shown is not None  # the config requires url, engine or async_engine
        self.server: str = shown.url.render_as_string(hide_password=True)
        self.dialect: Dialect = (self._engine.dialect if self._engine is not None
                                 else config.async_engine.sync_engine.dialect)
        self.has_async = config.async_engine is not None or self.async_url is not None
        self._database_file = sqlite_file(shown.url)
        self._database_seen = self._database_file is None

    def require_database(self) -> None:
        """Refuse a SQLite file that does not exist, before a connection would create it.

        Raises:
            chathistory.CollectionMissingError: there is no such file (nothing was created).
        """
        if self._database_seen:
            return
        assert self._database_file is not None
        if not self._database_file.is_file():
            raise CollectionMissingError(
                f"backend 'sqlalchemy': no database at {str(self._database_file)!r} "
                "(nothing was created; create_collection() creates it; check the path)")
        self._database_seen = True

    def _options(self) -> dict[str, Any]:
        config = self.config
        return {"pool_size": config.pool_size, "max_overflow": config.max_overflow,
                "pool_timeout": config.pool_timeout, "pool_recycle": config.pool_recycle,
                "pool_pre_ping": config.pool_pre_ping, "connect_args": dict(config.connect_args)}

    def _build(self, url: URL) -> Engine:
        try:
            return create_engine(url, **self._options())
        except (sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
            raise ConfigError(
                f"backend 'sqlalchemy' cannot load the driver of "
                f"{url.render_as_string(hide_password=True)}: {exc} (install it, e.g. "
                "pip install 'chathistory-sqlalchemy[mysql]' for MySQL/MariaDB)") from None
        except (sa_exc.ArgumentError, TypeError) as exc:
            raise ConfigError(f"backend 'sqlalchemy': {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}") from None

    # -- sync -----------------------------------------------------------------------------

    def engine(self) -> Engine:
        """The engine of the sync calls."""
        if self._engine is None:
            raise ConfigError(
                "backend 'sqlalchemy' was given only an async_engine: its sync methods need "
                "url or engine")
        return self._engine

    def run(self, work: Callable[[Connection], T], *, transaction: bool, create: bool = False
            ) -> T:
        """Run ``work`` on a pooled connection, in a transaction committed at the end if asked.

        Only with ``create`` may the connection create a SQLite file that is not there.
        """
        engine = self.engine()
        if not create:
            self.require_database()
        with engine.begin() if transaction else engine.connect() as connection:
            result = work(connection)
        self._database_seen = True
        return result

    # -- async ----------------------------------------------------------------------------

    async def async_engine(self) -> AsyncEngine:
        """The async engine of the running event loop: the application's, or one of ours.

        Ours is built in a worker thread (building one imports the driver and, for
        SQLite, resolves the file's path: blocking calls). It is disposed of when the
        loop shuts down (``asyncio.run`` finalizes async generators, and one of ours
        holds the engine), by :meth:`aclose`, or dropped once its loop has ended.
        """
        if self.config.async_engine is not None:
            return self.config.async_engine  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        held = self._async_engines.get(loop)
        if held is not None:
            return held[0]
        assert self.async_url is not None
        engine = await asyncio.to_thread(create_async_engine, self.async_url, **self._options())
        with self._lock:
            self._forget_ended_loops()
            held = self._async_engines.get(loop)
            if held is not None:
                engine.sync_engine.dispose(close=False)  # another task built one first
                return held[0]
            guard = _dispose_at_loop_shutdown(engine)
            self._async_engines[loop] = (engine, guard)
        await anext(guard)  # the loop now finalizes it at shutdown
        return engine

    async def arun(self, work: Callable[[AsyncConnection], Awaitable[T]], *,
                   transaction: bool, create: bool = False) -> T:
        """Async :meth:`run`, on the running loop's async engine."""
        if not create and not self._database_seen:
            await asyncio.to_thread(self.require_database)
        engine = await self.async_engine()
        async with engine.begin() if transaction else engine.connect() as connection:
            result = await work(connection)
        self._database_seen = True
        return result

    def _forget_ended_loops(self) -> None:
        """Drop the engines of loops that have ended (their connections cannot be closed)."""
        for loop in [loop for loop in self._async_engines if loop.is_closed()]:
            self._async_engines.pop(loop)[0].sync_engine.dispose(close=False)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Dispose of the backend's own sync engine's pool, and the async engines of ended
        loops. The application's engines are left alone; a later call reconnects."""
        if self.owns_engine and self._engine is not None:
            self._engine.dispose()
        with self._lock:
            self._forget_ended_loops()

    async def aclose(self) -> None:
        """:meth:`close`, in a worker thread, and dispose of this loop's own async engine."""
        if self.owns_engine:
            await asyncio.to_thread(self.close)
        loop = asyncio.get_running_loop()
        with self._lock:
            self._forget_ended_loops()
            held = self._async_engines.pop(loop, None)
        if held is not None:
            await held[1].aclose()  # disposes of the engine
