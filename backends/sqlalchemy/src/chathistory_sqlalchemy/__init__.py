"""chathistory-sqlalchemy: the ``sqlalchemy`` backend of chathistory (SQLAlchemy Core).

MySQL, MariaDB, SQLite and any database SQLAlchemy reaches by URL, sync and,
where the dialect has an async driver (aiomysql, asyncmy, aiosqlite), native
async. Use it by name, ``ChatHistory("s", backend="sqlalchemy", url="mysql+pymysql://...")``,
or build it: ``SQLAlchemyBackend.from_options(url=...)``. Importing the package
(as the plugin loader does) loads neither the backend nor SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory_sqlalchemy.backend import SQLAlchemyBackend
    from chathistory_sqlalchemy.config import SQLAlchemyConfig

__all__ = ["SQLAlchemyBackend", "SQLAlchemyConfig"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"SQLAlchemyBackend": "backend", "SQLAlchemyConfig": "config"})
