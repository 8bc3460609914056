"""The entry point of backend ``sqlalchemy``: cheap to import, SQLAlchemy loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory import hookimpl

if TYPE_CHECKING:
    from chathistory_sqlalchemy.backend import SQLAlchemyBackend


@hookimpl
def chathistory_backend() -> type[SQLAlchemyBackend]:
    from chathistory_sqlalchemy.backend import SQLAlchemyBackend

    return SQLAlchemyBackend
