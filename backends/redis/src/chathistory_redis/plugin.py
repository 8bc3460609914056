"""The ``chathistory.backends`` entry point ``redis``. Cheap to import: redis-py loads later."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory import hookimpl

if TYPE_CHECKING:
    from chathistory_redis.backend import RedisBackend

__all__ = ["chathistory_backend"]


@hookimpl
def chathistory_backend() -> type[RedisBackend]:
    from chathistory_redis.backend import RedisBackend

    return RedisBackend
