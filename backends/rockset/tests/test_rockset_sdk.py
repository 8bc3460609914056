"""Where the rockset SDK's public API falls short, and the one function that works around each.

Each test fails in one of two ways: the workaround no longer works, or the SDK
changed so that it is no longer needed (then use the SDK's own way instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import urllib3  # type: ignore[import-untyped]
from chathistory_rockset.backend import RocksetBackend
from chathistory_rockset.client import Request, RocksetDriver, open_client, set_field
from chathistory_rockset.config import RocksetConfig
from rockset import Configuration, RocksetClient  # type: ignore[import-untyped]
from rockset.exceptions import (  # type: ignore[import-untyped]
    ApiTypeError,
    ApiValueError,
    InitializationException,
)
from rockset.models import PatchOperation  # type: ignore[import-untyped]
from rockset_emulator import RocksetEmulator

from chathistory import get_backend
from chathistory.driver import Call
from chathistory.testing import wait_until

API_KEY = "test-key"  # the shared emulator's (conftest.py)
CALL = Call("rockset", "test")


def config(emu: RocksetEmulator, **options: object) -> RocksetConfig:
    return RocksetConfig.model_validate({"api_key": API_KEY, "host": emu.url,
                                         "collection": "chat", **options})


def test_open_client_reaches_a_host_the_sdk_refuses(emu: RocksetEmulator) -> None:
    with pytest.raises(InitializationException):
        RocksetClient(api_key=API_KEY, host=emu.url)
    with pytest.raises(InitializationException):
        RocksetClient(config=Configuration(api_key=API_KEY, host=emu.url))
    client = open_client(config(emu))
    client.Collections.list()
    assert emu.requests == [("GET", "/v1/orgs/self/collections")]


def test_a_rockset_host_goes_through_the_sdk_itself() -> None:
    backend = get_backend("rockset", collection="chat", api_key=API_KEY,
                          host="api.usw2a1.rockset.com")
    assert isinstance(backend, RocksetBackend)
    # Read to check what the SDK made of it: "https://" added by its own rules.
    assert backend.driver.client.api_client.configuration.host == (
        "https://api.usw2a1.rockset.com")
    assert backend.driver.server == "https://api.usw2a1.rockset.com"  # what errors name
    backend.close()


def test_set_field_sends_a_string_the_sdk_types_as_an_object(
        emu: RocksetEmulator, make_backend: Callable[..., RocksetBackend]) -> None:
    with pytest.raises((ApiTypeError, ApiValueError)):
        PatchOperation(op="ADD", path="/title", value="a string")
    backend = make_backend()
    backend.append("s", [{"type": "human", "data": {"content": "hi"}}])
    backend.driver.client.Documents.patch_documents(
        collection=backend.config.collection,
        data=[{"id": "s", "patch": [set_field("/title", "a string")]}])
    assert emu.documents("commons", backend.config.collection)["s"]["title"] == "a string"


def test_send_bounds_each_request_the_sdk_leaves_unbounded(emu: RocksetEmulator) -> None:
    driver = RocksetDriver(config(emu, request_timeout=0.1))
    emu.set_latency(0.3)
    started = time.monotonic()
    driver.client.Collections.list()  # the SDK's own call: no timeout at all
    assert time.monotonic() - started >= 0.3
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        driver.send(driver.client, Request("Collections", "list", {}))
    emu.set_latency(0.0)
    emu.wait_idle()


def test_close_drops_the_client_and_its_connections() -> None:
    assert not hasattr(RocksetClient, "close")  # when the SDK has one, call it instead
    with RocksetEmulator(api_key=API_KEY) as emu:  # its own: no other test's connections
        driver = RocksetDriver(config(emu))
        with driver.connection(CALL) as client:
            driver.send(client, Request("Collections", "list", {}))
        assert emu.open_connections == 1
        del client
        driver.close()
        wait_until(lambda: emu.open_connections == 0, "the client's connections are closed")
        with driver.connection(CALL) as client:  # a new client, built on use
            driver.send(client, Request("Collections", "list", {}))
        assert emu.open_connections == 1


def test_a_given_client_is_never_closed() -> None:
    with RocksetEmulator(api_key=API_KEY) as emu:
        given = emu.client()
        driver = RocksetDriver(RocksetConfig(client=given, collection="chat"))
        driver.send(driver.client, Request("Collections", "list", {}))
        driver.close()
        assert driver.client is given
        assert emu.open_connections == 1
        given.Collections.list()
        assert emu.requests == [("GET", "/v1/orgs/self/collections")] * 2
