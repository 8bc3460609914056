"""How the backend reaches Rockset: its ``RocksetClient`` and the driver the core runs.

Operations yield :class:`Request` s, one SDK call each, which :class:`RocksetDriver`
sends. The SDK has no async API worth using (``async_req`` binds to a loop and
fails after sending), so the core runs the sync path in a worker thread.

Where the SDK's public API falls short, one function here works around it
(:func:`open_client`, :meth:`RocksetDriver.send`, :func:`set_field`; each says
why), and ``tests/test_rockset_sdk.py`` fails once it breaks or is no longer
needed. The SDK is imported when a client is built, not with this module.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

from chathistory import ConfigError
from chathistory.driver import Call, Driver
from chathistory_rockset import errors
from chathistory_rockset.config import RocksetConfig, is_rockset_host

__all__ = ["Request", "RocksetDriver", "open_client", "server_of", "set_field"]


class Request(NamedTuple):
    """One SDK call: ``client.<api>.<method>(**arguments)``."""

    api: str
    method: str
    arguments: dict[str, Any]


def open_client(config: RocksetConfig) -> Any:
    """The config's ``client``, or a new one from ``api_key`` and ``host``.

    ``RocksetClient`` refuses any host but ``*.rockset.com`` (an emulator on
    127.0.0.1, say), and offers no other way to set one. The client keeps the
    very ``Configuration`` it is given, so the host is set afterwards with that
    object's public ``host`` setter.

    Raises:
        ConfigError: the given ``client`` is not a RocksetClient, or the SDK
            refused to build one.
    """
    if config.client is not None:
        if not all(hasattr(config.client, api) for api in ("Collections", "Documents", "Queries")):
            raise ConfigError(f"backend {errors.BACKEND!r}: option 'client' must be a "
                              f"rockset.RocksetClient, not {type(config.client).__name__}")
        return config.client
    from rockset import Configuration, RocksetClient  # type: ignore[import-untyped]

    assert config.api_key is not None  # the Config guarantees it when no client is given
    # retries=False: urllib3 must never re-send a request by itself; the backend
    # decides every retry, and checks for a write before sending it again.
    configuration = Configuration(api_key=config.api_key.get_secret_value(), retries=False)
    host = config.host
    try:
        if host is not None and is_rockset_host(host):
            return RocksetClient(host=host, config=configuration)
        client = RocksetClient(config=configuration)
    except Exception as exc:  # InitializationException; its message holds no key
        raise ConfigError(f"backend {errors.BACKEND!r}: cannot build a RocksetClient: {exc}"
                          ) from None
    if host is not None:
        configuration.host = host
    return client


def server_of(client: Any) -> str:
    """The address ``client`` sends its requests to, for error messages.

    ``RocksetClient`` keeps its ``ApiClient`` (public attribute ``api_client``),
    whose ``configuration.host`` is the server; only read here, never set.
    """
    return str(client.api_client.configuration.host)


def set_field(path: str, value: str) -> Any:
    """A patch operation setting the field at ``path`` to the string ``value``.

    The SDK types ``PatchOperation.value`` as an object (the Go client fixed
    the same spec bug), so a string needs ``_check_type=False``.
    """
    from rockset.models import PatchOperation  # type: ignore[import-untyped]

    return PatchOperation(op="ADD", path=path, value=value, _check_type=False)


class RocksetDriver(Driver[Any, None, None]):
    """Sends requests on the backend's client, which pools its own connections (urllib3).

    A client the backend built is dropped on :meth:`close`: the SDK has no
    ``close()``, and the client holds no reference cycle, so dropping it closes
    its sockets at once; the next request builds a new one. A given client is
    the application's, and is never closed.
    """

    def __init__(self, config: RocksetConfig) -> None:
        self.config = config
        self._client: Any = open_client(config)
        self.server = server_of(self._client)  # the same after close(): same config
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The client requests go to (built again after :meth:`close`)."""
        with self._lock:
            if self._client is None:
                self._client = open_client(self.config)
            return self._client

    def connection(self, call: Call) -> AbstractContextManager[Any]:
        return nullcontext(self.client)

    def send(self, connection: Any, request: Request) -> Any:
        """Make the SDK call, bounded by ``request_timeout``: the SDK has no other timeout
        than the ``_request_timeout`` keyword its methods document (none by default)."""
        api = getattr(connection, request.api)
        return getattr(api, request.method)(**request.arguments,
                                            _request_timeout=self.config.request_timeout)

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        # Writes too: an append checks for a possibly applied try before sending
        # it again, and a clear or a create sent again asks for the same end state.
        return errors.is_transient(error)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return errors.translate(error, server=self.server)

    def close(self) -> None:
        if self.config.client is None:
            with self._lock:
                self._client = None
