"""The backend's ``rockset.RocksetClient``: the one the application gave, or one built here.

The SDK is imported when a client is built, never when this module is imported.
"""

from __future__ import annotations

from typing import Any

from chathistory import ConfigError
from chathistory_rockset.config import RocksetConfig, is_rockset_host
from chathistory_rockset.errors import BACKEND

__all__ = ["close_client", "open_client"]


def _build(config: RocksetConfig) -> Any:
    from rockset import Configuration, RocksetClient  # type: ignore[import-untyped]

    assert config.api_key is not None  # the Config guarantees it when no client is given
    # retries=False: urllib3 must never re-send a request by itself; every retry
    # is decided by the backend, which checks for a write before re-sending it.
    configuration = Configuration(api_key=config.api_key.get_secret_value(), retries=False)
    host = config.host
    try:
        if host is not None and is_rockset_host(host):
            return RocksetClient(host=host, config=configuration)
        client = RocksetClient(config=configuration)
    except Exception as exc:  # InitializationException; its message holds no key
        raise ConfigError(f"backend {BACKEND!r}: cannot build a RocksetClient: {exc}") from None
    if host is not None:
        # RocksetClient only accepts *.rockset.com; any other server (an
        # emulator on 127.0.0.1) is set on its configuration.
        client.api_client.configuration.host = host
    return client


def open_client(config: RocksetConfig) -> Any:
    """The config's ``client``, or a new one from ``api_key`` and ``host``.

    Raises:
        ConfigError: the given ``client`` is not a RocksetClient, or the SDK
            refused to build one.
    """
    client = _build(config) if config.client is None else config.client
    if not all(hasattr(client, part) for part in ("Collections", "Documents", "Queries")):
        raise ConfigError(f"backend {BACKEND!r}: option 'client' must be a "
                          f"rockset.RocksetClient, not {type(client).__name__}")
    return client


def close_client(client: Any) -> None:
    """Release a built client's connections and worker threads (safe to call twice)."""
    client.api_client.rest_client.pool_manager.clear()
    client.api_client.executor.shutdown(wait=False)
