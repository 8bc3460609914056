"""The Rockset backend's options: names and meanings of langchain_community's class.

Nothing here imports the ``rockset`` SDK, so options can be validated (by the
fake swap, for example) where the SDK is not even installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from chathistory import BackendConfig

__all__ = [
    "MESSAGES_KEY_PATTERN",
    "NAME_PATTERN",
    "MessagesKey",
    "RocksetConfig",
    "RocksetName",
    "is_rockset_host",
]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$"
"""Workspace and collection names: letters, digits, ``_`` and ``-`` (no dots), at most 100."""

MESSAGES_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
"""The messages field: a plain field name. Rockset reserves names starting with ``_``."""

RocksetName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
MessagesKey = Annotated[str, StringConstraints(pattern=MESSAGES_KEY_PATTERN)]

# What RocksetClient itself accepts as a host, after it turns http:// into https://.
_ROCKSET_HOST = re.compile(r"^https://(\w|-|\.)+\.rockset\.com$")


def is_rockset_host(host: str) -> bool:
    """Whether the SDK accepts ``host`` as is (a ``*.rockset.com`` API server)."""
    if host.startswith("http://"):
        host = "https://" + host[len("http://"):]
    elif not host.startswith("https://"):
        host = "https://" + host
    return _ROCKSET_HOST.match(host.rstrip("/")) is not None


class RocksetConfig(BackendConfig):
    """Options of ``backend="rockset"``.

    Give either ``client`` (a ``rockset.RocksetClient`` you built) or
    ``api_key`` (and optionally ``host``) for the backend to build one.
    """

    client: Any = Field(
        None, description="A rockset.RocksetClient to use (give this or api_key, not both).")
    api_key: SecretStr | None = Field(
        None, description="An API key; the backend builds its own client with it.")
    host: str | None = Field(
        None, description="The API server for api_key: a *.rockset.com URL (default: the "
                          "SDK's), or http(s)://host:port of a compatible server.")
    collection: RocksetName = Field(description="The collection holding one document per session.")
    workspace: RocksetName = Field("commons", description="The collection's workspace.")
    messages_key: MessagesKey = Field(
        "messages", description="The document field holding the session's records.")
    last_write_key: MessagesKey = Field(
        "last_write", description="The document field where the backend keeps the time of "
                                  "its last append to the session (UTC, ISO 8601).")
    sync: bool = Field(
        False, description="Wait, after each write, until Rockset reports it queryable.")
    message_uuid_method: Callable[[], str | int] | None = Field(
        None, description="If set, records without data.additional_kwargs.id get one from it.")
    create_timeout: float = Field(
        20.0, gt=0, description="Seconds create_collection waits for the collection to be READY.")
    sync_timeout: float = Field(
        5.0, gt=0, description="Seconds a sync write waits for Rockset to make it queryable.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request.")
    retry_attempts: int = Field(
        4, ge=1, le=20, description="Tries per request on 429, 5xx or a dropped connection.")

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str | None) -> str | None:
        if host is None or is_rockset_host(host):
            return host
        try:
            parts = urlsplit(host)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
            valid = (parts.scheme in ("http", "https") and bool(parts.hostname)
                     and parts.username is None and parts.password is None
                     and parts.path in ("", "/") and not parts.query and not parts.fragment)
        except ValueError:
            valid = False
        if not valid:
            # The value is not repeated: it might hold credentials.
            raise ValueError(
                "must be a *.rockset.com API server or a URL like http://127.0.0.1:3000 "
                "(scheme, host and port only)"
            )
        return host.rstrip("/")

    @model_validator(mode="after")
    def _one_client_source(self) -> RocksetConfig:
        if (self.client is None) == (self.api_key is None):
            raise ValueError("give exactly one of 'client' (a RocksetClient) and 'api_key'")
        if self.client is not None and self.host is not None:
            raise ValueError("'host' goes with 'api_key'; a given 'client' has its own host")
        return self

    @model_validator(mode="after")
    def _distinct_fields(self) -> RocksetConfig:
        if self.last_write_key == self.messages_key:
            raise ValueError("'last_write_key' must differ from 'messages_key'")
        return self
