"""The options of the redis backend. Importing this module does not import redis-py."""

from __future__ import annotations

from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from chathistory import BackendConfig
from chathistory_redis.keyspace import key_prefix_problem

__all__ = ["DEFAULT_KEY_PREFIXES", "RedisConfig", "server_address"]

# RedisChatMessageHistory's default: its key is this prefix + the session id.
DEFAULT_KEY_PREFIXES = {"chathistory": "chathistory", "langchain_community": "message_store:"}


def server_address(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL: what errors may show of it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    host = parts.hostname or "localhost"
    return f"[{host}]:{parts.port or 6379}" if ":" in host else f"{host}:{parts.port or 6379}"


class RedisConfig(BackendConfig):
    """Options of the ``redis`` backend.

    Example::

        get_backend("redis", url="redis://:password@cache:6379/2", key_prefix="myapp", ttl=86400)
    """

    # A rejected value (say, a URL holding a password) never appears in an error.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis://, rediss:// or unix:// URL; a password in it stays secret.")
    layout: Literal["chathistory", "langchain_community"] = Field(
        "chathistory",
        description="'chathistory': one list per session under a hash-tagged key, oldest "
        "first. 'langchain_community': the layout of langchain_community's "
        "RedisChatMessageHistory (key prefix + session id, newest first), read and "
        "written in place.")
    key_prefix: str | None = Field(
        None,
        description="Keeps applications apart: every key starts with it. Default: "
        "'chathistory' (keys 'chathistory:{<session>}'; 'myapp' and 'myapp:' both give "
        "'myapp:{<session>}'), or 'message_store:' with the langchain_community layout "
        "(keys '<key_prefix><session>').")
    ttl: int | None = Field(
        None, ge=0, strict=True,
        description="Seconds after its last write that a whole session expires; "
        "None keeps sessions forever (so does 0 with the langchain_community layout, "
        "as in RedisChatMessageHistory).")
    socket_timeout: float | None = Field(
        5.0, gt=0, description="Seconds to wait for a reply; None waits forever.")
    socket_connect_timeout: float | None = Field(
        5.0, gt=0, description="Seconds to wait for a connection; None waits forever.")
    max_connections: int = Field(
        50, gt=0, strict=True,
        description="Connections the backend opens at most: for the sync methods, and for "
        "each event loop that uses the async ones. Past it, a call waits for a free one.")
    pool_timeout: float | None = Field(
        20.0, gt=0,
        description="Seconds a call waits for a free connection when all max_connections "
        "are busy; None waits as long as it takes.")
    health_check_interval: float = Field(
        30.0, ge=0,
        description="A connection idle for longer than this many seconds is checked with a "
        "PING before a command is sent on it; 0 never checks.")
    cluster: bool = Field(
        False,
        description="Reach a Redis Cluster: the backend builds redis-py's RedisCluster "
        "clients from url, the address of any one of its nodes; max_connections is then "
        "per node, and pool_timeout does not apply.")
    client: Any = Field(
        None, repr=False, exclude=True,
        description="Your own redis.Redis (or RedisCluster) for the sync methods; the "
        "connection options above are then its own, and it is not closed by the backend.")
    async_client: Any = Field(
        None, repr=False, exclude=True,
        description="Your own redis.asyncio.Redis (or RedisCluster) for the async methods; "
        "not closed by the backend.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value()
        scheme = text.partition("://")[0].lower() if "://" in text else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        try:
            urlsplit(text).port  # noqa: B018 - parses the port, raising if it is not a number
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return url

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, key_prefix: str | None, info: ValidationInfo) -> str | None:
        layout = info.data.get("layout")
        if key_prefix is None or layout is None:
            return key_prefix
        problem = key_prefix_problem(layout, key_prefix)
        if problem is not None:
            raise ValueError(f"{problem} (layout {layout!r})")
        return key_prefix

    @field_validator("ttl")
    @classmethod
    def _check_ttl(cls, ttl: int | None, info: ValidationInfo) -> int | None:
        if ttl == 0:
            if info.data.get("layout") == "langchain_community":
                return None  # RedisChatMessageHistory sets no expiry for a ttl of 0
            raise ValueError("must be > 0, or None for no expiry (0 means no expiry only "
                             "with layout 'langchain_community', as in RedisChatMessageHistory)")
        return ttl

    @model_validator(mode="after")
    def _check_cluster(self) -> Self:
        if not self.cluster:
            return self
        if self.client is not None or self.async_client is not None:
            raise ValueError(
                "option 'cluster' builds the backend's own Redis Cluster clients from 'url'; "
                "with your own 'client' or 'async_client' leave 'cluster' out (a "
                "redis.RedisCluster given as 'client' reaches the cluster by itself)")
        parts = urlsplit(self.url.get_secret_value())
        if parts.scheme.lower() == "unix":
            raise ValueError("option 'cluster' needs a redis:// or rediss:// url of a node: "
                             "Redis Cluster takes no unix:// sockets")
        databases = {parts.path.strip("/") or "0", *parse_qs(parts.query).get("db", [])}
        if databases != {"0"}:
            raise ValueError("option 'cluster' needs a url of database 0: a Redis Cluster "
                             "has no other")
        return self

    @property
    def effective_key_prefix(self) -> str:
        """``key_prefix``, or the layout's default when it is not set."""
        return self.key_prefix if self.key_prefix is not None else DEFAULT_KEY_PREFIXES[self.layout]
