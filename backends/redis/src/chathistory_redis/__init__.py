"""chathistory-redis: the ``redis`` backend of chathistory (redis-py, one server or a Cluster).

Use it by name, ``ChatHistory("s", backend="redis", url="redis://...")``, or build it:
``RedisBackend.from_options(url=...)``. Importing the package (as the plugin loader
does) loads neither the backend nor redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory_redis.backend import RedisBackend
    from chathistory_redis.config import RedisConfig

__all__ = ["RedisBackend", "RedisConfig"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"RedisBackend": "backend", "RedisConfig": "config"})
