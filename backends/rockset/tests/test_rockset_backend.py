"""RocksetBackend with the real rockset SDK over HTTP against the emulator: the contract
suite, options, collection creation, request counts, data layout and plugin wiring."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chathistory_rockset.backend import RocksetBackend
from langchain_core.messages import AIMessage, HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import (
    BackendUnavailableError,
    ChatHistory,
    ChatHistoryError,
    CollectionMissingError,
    CollectionTimeoutError,
    ConfigError,
    available_backends,
    get_backend,
    history_factory,
)
from chathistory.testing import BackendContract, fake_backends, numbered_records

API_KEY = "test-key"  # the shared emulator's (conftest.py)


def contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


# ---- the contract --------------------------------------------------------------------------


class OnTheEmulator(BackendContract):
    """What the reads-create-nothing tests compare: every collection, with its documents."""

    @pytest.fixture
    def store_snapshot(self, emu: RocksetEmulator) -> Callable[[], Any]:
        client = emu.client()

        def snapshot() -> dict[tuple[str, str], Any]:
            names = [(found.get("workspace"), found.get("name"))
                     for found in client.Collections.list().data]
            return {name: emu.documents(*name) for name in names}

        return snapshot


class TestRocksetBackend(OnTheEmulator):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., RocksetBackend]) -> RocksetBackend:
        return make_backend(workspace="contract")

    @pytest.fixture
    def uncreated_backend(self, make_backend: Callable[..., RocksetBackend]) -> RocksetBackend:
        return make_backend(workspace="contract", create=False)


class TestRocksetBackendWithGivenClient(OnTheEmulator):
    """The same suite through a RocksetClient the application built (urllib3 defaults)."""

    @pytest.fixture
    def backend(self, emu: RocksetEmulator, make_backend: Callable[..., RocksetBackend]
                ) -> RocksetBackend:
        return make_backend(client=emu.client(), messages_key="history")

    @pytest.fixture
    def uncreated_backend(self, emu: RocksetEmulator,
                          make_backend: Callable[..., RocksetBackend]) -> RocksetBackend:
        return make_backend(client=emu.client(), workspace="never_made", create=False)


@pytest.fixture(scope="module")
def separate_server() -> Iterator[tuple[str, str]]:
    """CHATHISTORY_ROCKSET_HOST/_API_KEY if set; else an emulator in its own process,
    started from the command line, with writes visible only after 50 ms."""
    host = os.environ.get("CHATHISTORY_ROCKSET_HOST")
    key = os.environ.get("CHATHISTORY_ROCKSET_API_KEY")
    if host and key:
        yield host, key
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "rockset_emulator", "--port", "0",
         "--api-key", API_KEY, "--visibility-delay", "0.05"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url, API_KEY
    finally:
        process.terminate()
        process.wait(10)


class TestRocksetBackendOnASeparateServer(BackendContract):
    """The suite with sync=True against a server in another process (or your own):
    a collection per test, deleted afterwards."""

    @pytest.fixture
    def backend(self, separate_server: tuple[str, str]) -> Iterator[RocksetBackend]:
        host, key = separate_server
        workspace = os.environ.get("CHATHISTORY_ROCKSET_WORKSPACE", "commons")
        backend = RocksetBackend.from_options(
            api_key=key, host=host, workspace=workspace,
            collection=f"chathistory_test_{uuid.uuid4().hex[:12]}", sync=True)
        backend.create_collection()
        yield backend
        cleaner = RocksetBackend.from_options(api_key=key, host=host, workspace=workspace,
                                              collection=backend.config.collection)
        cleaner.driver.client.Collections.delete(collection=backend.config.collection,
                                                 workspace=workspace)
        cleaner.close()
        backend.close()


# ---- options -------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"collection": 'chat"; DROP'},
    {"collection": "chat.messages"},
    {"collection": "chat messages"},
    {"collection": ""},
    {"collection": "c" * 101},
    {"workspace": "ws.nested"},
    {"workspace": 'w"s'},
    {"workspace": "commons/other"},
    {"messages_key": "_id"},
    {"messages_key": "messages/-"},
    {"messages_key": "a~1b"},
    {"messages_key": 'm" FROM x --'},
    {"messages_key": "data.content"},
])
def test_bad_names_are_rejected_before_any_request(emu: RocksetEmulator,
                                                   options: dict[str, Any]) -> None:
    settings = {"collection": "chat", "api_key": API_KEY, "host": emu.url} | options
    with pytest.raises(ConfigError) as raised:
        ChatHistory("s", backend="rockset", **settings).add_messages([HumanMessage("hi")])
    field = next(iter(options))
    assert f"'{field}'" in str(raised.value)
    assert emu.request_count == 0


@pytest.mark.parametrize("options, problem", [
    ({}, "exactly one of 'client'"),
    ({"api_key": API_KEY, "client": object()}, "exactly one of 'client'"),
    ({"api_key": API_KEY, "host": "http://user:pw@127.0.0.1:1"}, "'host'"),
    ({"api_key": API_KEY, "host": "http://127.0.0.1:1/v1/orgs"}, "'host'"),
    ({"api_key": API_KEY, "host": "ftp://127.0.0.1:1"}, "'host'"),
    ({"api_key": API_KEY, "host": "http://[::1"}, "'host'"),
    ({"api_key": API_KEY, "host": "http://127.0.0.1:99999"}, "'host'"),
    ({"api_key": API_KEY, "sync_timeout": 0}, "'sync_timeout'"),
    ({"api_key": API_KEY, "retry_attempts": 0}, "'retry_attempts'"),
    ({"api_key": API_KEY, "colection": "x"}, "unknown option 'colection'"),
])
def test_option_errors_are_clear_and_never_show_the_key(options: dict[str, Any], problem: str
                                                         ) -> None:
    with pytest.raises(ConfigError) as raised:
        get_backend("rockset", collection="chat", **options)
    message = str(raised.value)
    assert problem in message
    assert "backend 'rockset'" in message
    assert API_KEY not in message


def test_client_must_be_a_rockset_client() -> None:
    with pytest.raises(ConfigError, match=r"must be a rockset\.RocksetClient"):
        get_backend("rockset", collection="chat", client=object())


def test_the_key_stays_out_of_the_repr(make_backend: Callable[..., RocksetBackend]) -> None:
    backend = make_backend(create=False)
    assert API_KEY not in repr(backend)
    assert API_KEY not in repr(backend.config)


# ---- collection creation -------------------------------------------------------------------


def test_create_collection_in_the_configured_workspace_and_wait_until_ready() -> None:
    with RocksetEmulator(api_key=API_KEY, ready_delay=0.3) as emu:
        backend = RocksetBackend.from_options(api_key=API_KEY, host=emu.url,
                                              collection="chat", workspace="team_a")
        backend.create_collection()
        status = emu.client().Collections.get(collection="chat", workspace="team_a").data.status
        assert status == "READY"
        paths = {path for _, path in emu.requests}
        assert paths == {"/v1/orgs/self/ws/team_a/collections",
                         "/v1/orgs/self/ws/team_a/collections/chat"}
        emu.reset_request_count()
        backend.create_collection()  # already READY: one GET
        assert emu.requests == [("GET", "/v1/orgs/self/ws/team_a/collections/chat")]
        backend.close()


def test_create_collection_times_out_clearly() -> None:
    with RocksetEmulator(api_key=API_KEY, ready_delay=30) as emu:
        backend = RocksetBackend.from_options(api_key=API_KEY, host=emu.url,
                                              collection="slow", create_timeout=0.3)
        with pytest.raises(CollectionTimeoutError) as raised:
            backend.create_collection()
        assert isinstance(raised.value, BackendUnavailableError)
        assert "commons.slow is CREATED, not READY" in str(raised.value)
        assert "create_timeout=0.3" in str(raised.value)
        backend.close()


def test_a_concurrent_creator_winning_is_fine(make_backend: Callable[..., RocksetBackend],
                                              emu: RocksetEmulator) -> None:
    backend = make_backend()
    emu.reset_request_count()
    emu.fail_next(1, status=404)  # the GET misses the collection another client just made
    backend.create_collection()  # so the create answers 409 ALREADYEXISTS: fine
    assert [method for method, _ in emu.requests] == ["GET", "POST", "GET"]


def test_collections_made_concurrently_by_many_backends(emu: RocksetEmulator) -> None:
    errors: list[BaseException] = []

    def create() -> None:
        try:
            RocksetBackend.from_options(api_key=API_KEY, host=emu.url,
                                        collection="raced").create_collection()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# ---- requests and layout -------------------------------------------------------------------


def test_one_request_per_operation(make_backend: Callable[..., RocksetBackend],
                                   emu: RocksetEmulator) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    emu.reset_request_count()
    backend.append("s", numbered_records(10, prefix="n"))
    assert [method for method, _ in emu.requests] == ["PATCH"]
    emu.reset_request_count()
    assert len(backend.fetch("s")) == 11
    assert contents(backend.fetch("s", limit=2)) == ["n8", "n9"]
    assert backend.fetch("s", limit=0) == []
    backend.clear("s")
    assert [method for method, _ in emu.requests] == ["POST", "POST", "POST"]


def test_histories_for_existing_sessions_cost_no_request(emu: RocksetEmulator,
                                                         make_backend: Callable[..., Any]
                                                         ) -> None:
    backend = make_backend()
    factory = history_factory(backend)
    factory("s").add_messages([HumanMessage("first")])
    emu.reset_request_count()
    history = factory("s")
    assert emu.request_count == 0
    history.messages  # noqa: B018
    history.add_messages([HumanMessage("q"), AIMessage("a")])
    assert [method for method, _ in emu.requests] == ["POST", "PATCH"]


def test_data_layout_is_one_document_per_session(make_backend: Callable[..., RocksetBackend],
                                                 emu: RocksetEmulator) -> None:
    backend = make_backend(workspace="layout", messages_key="turns")
    backend.append("alice", numbered_records(2))
    backend.append("alice", numbered_records(1, prefix="x"))
    backend.append("bob", numbered_records(1))
    documents = emu.documents("layout", backend.config.collection)
    written = {session: document.pop("last_write") for session, document in documents.items()}
    created = {session: document.pop("_event_time") for session, document in documents.items()}
    assert created["bob"] == written["bob"]  # made by its first append, at that time
    assert created["alice"] < written["alice"]
    assert documents == {
        "alice": {"_id": "alice", "turns": numbered_records(2) + numbered_records(1, prefix="x")},
        "bob": {"_id": "bob", "turns": numbered_records(1)},
    }
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", time)
               for time in written.values())  # the write time: UTC, fixed width
    backend.clear("alice")
    cleared = emu.documents("layout", backend.config.collection)["alice"]
    assert cleared.pop("_event_time") > created["alice"]  # Rockset stamps the new document
    assert cleared == {"_id": "alice", "turns": []}


def test_first_appends_of_one_session_from_many_threads(make_backend: Callable[..., Any]
                                                        ) -> None:
    backend = make_backend()
    barrier = threading.Barrier(8)

    def write(writer: int) -> None:
        barrier.wait()
        backend.append("new", numbered_records(2, prefix=f"w{writer}-"))

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(contents(backend.fetch("new"))) == sorted(
        f"w{writer}-{n}" for writer in range(8) for n in range(2))


def test_a_document_clobbered_by_another_process_is_repaired(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    """Another process creates the same session's document just after ours: re-append."""
    backend = make_backend()
    other = emu.client()
    survivor = {"_id": "s", "messages": numbered_records(1, prefix="o")}
    emu.reset_request_count()
    # Our document is created (PATCH finds none, POST adds it); the other process's
    # creation lands just before our first fence check.
    emu.before_next("POST", "/offsets/commit", lambda: other.Documents.add_documents(
        collection=backend.config.collection, workspace="commons", data=[survivor]))
    backend.append("s", numbered_records(2))
    assert contents(backend.fetch("s")) == ["o0", "m0", "m1"]
    # PATCH (no document), POST docs (ours), POST fence (the other's POST docs runs first),
    # POST query (finds the survivor), PATCH (re-append), then the fetch's POST query
    paths = [path.rsplit("/", 2)[-2:] for _, path in emu.requests]
    assert paths[:5] == [[backend.config.collection, "docs"]] * 2 + [
        ["offsets", "commit"], [backend.config.collection, "docs"], ["self", "queries"]]
    assert [method for method, _ in emu.requests][:6] == ["PATCH", "POST", "POST", "POST",
                                                          "POST", "PATCH"]


def test_message_uuid_method_stamps_missing_ids(make_backend: Callable[..., RocksetBackend]
                                                ) -> None:
    ids = iter(["u1", "u2"])
    backend = make_backend(message_uuid_method=lambda: next(ids))
    given = HumanMessage("keeps its id", additional_kwargs={"id": "mine"})
    ChatHistory("s", backend=backend).add_messages([HumanMessage("a"), given, AIMessage("b")])
    stored = backend.fetch("s")
    assert [record["data"]["additional_kwargs"]["id"] for record in stored] == ["u1", "mine", "u2"]
    assert given.additional_kwargs == {"id": "mine"}


def test_errors_that_retrying_cannot_fix_are_raised_at_once(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    backend = make_backend()
    emu.client().Documents.add_documents(collection=backend.config.collection,
                                         data=[{"_id": "odd", "messages": "not a list"}])
    emu.reset_request_count()
    with pytest.raises(ChatHistoryError, match="refused the append"):
        backend.append("odd", numbered_records(1))
    with pytest.raises(ChatHistoryError, match="not an array"):
        backend.fetch("odd")
    assert emu.request_count == 2
    emu.client().Documents.add_documents(collection=backend.config.collection,
                                         data=[{"_id": "odd", "messages": [{}, "text"]}])
    with pytest.raises(ChatHistoryError, match="not an array of records"):
        backend.fetch("odd")
    emu.client().Collections.delete(collection=backend.config.collection)
    emu.reset_request_count()
    with pytest.raises(CollectionMissingError, match="does not exist") as raised:
        backend.fetch("s")
    assert not isinstance(raised.value, BackendUnavailableError)
    assert emu.request_count == 2  # the query, then a look at the collection


# ---- async ---------------------------------------------------------------------------------


def test_async_twins_work_from_any_running_loop(make_backend: Callable[..., RocksetBackend]
                                                ) -> None:
    backend = make_backend()
    results: list[list[str]] = []

    async def scenario(prefix: str) -> None:
        await backend.aappend(prefix, numbered_records(2, prefix=prefix))
        results.append(contents(await backend.afetch(prefix)))

    asyncio.run(scenario("main"))
    thread = threading.Thread(target=lambda: asyncio.run(scenario("thread")))
    thread.start()
    thread.join()
    asyncio.run(scenario("again"))  # a new loop after the first one closed
    assert results == [["main0", "main1"], ["thread0", "thread1"], ["again0", "again1"]]


def test_async_calls_do_not_block_the_event_loop(make_backend: Callable[..., RocksetBackend],
                                                 emu: RocksetEmulator) -> None:
    backend = make_backend()
    emu.set_latency(0.2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def scenario() -> None:
        task = asyncio.create_task(ticker())
        await backend.aappend("s", numbered_records(1))
        task.cancel()

    asyncio.run(scenario())
    assert ticks >= 10


# ---- plugin wiring -------------------------------------------------------------------------


def test_registered_through_the_entry_point(emu: RocksetEmulator) -> None:
    info = {backend.name: backend for backend in available_backends()}["rockset"]
    assert info.distribution == "chathistory-rockset"
    assert info.error is None
    backend = get_backend("rockset", api_key=API_KEY, host=emu.url, collection="via_ep")
    assert isinstance(backend, RocksetBackend)
    with ChatHistory("s", backend="rockset", api_key=API_KEY, host=emu.url,
                     collection="via_ep") as history:
        history.add_messages([HumanMessage("hi")])
        assert history.messages == [HumanMessage("hi")]
    backend.close()


def test_fake_swap_needs_no_server_and_still_checks_options() -> None:
    with fake_backends("rockset") as fakes:
        history = ChatHistory("s1", backend="rockset", collection="chat", api_key="k")
        history.add_messages([HumanMessage("hi")])
        assert ChatHistory("s1", backend="rockset", collection="chat",
                           api_key="k").messages == [HumanMessage("hi")]
        assert fakes["rockset"].calls["append"] == 1
        with pytest.raises(ConfigError, match="colection"):
            ChatHistory("s1", backend="rockset", colection="chat", api_key="k")
        with pytest.raises(ConfigError, match="'collection'"):
            ChatHistory("s1", backend="rockset", collection="bad name", api_key="k")


def test_sqlite_users_never_import_the_rockset_sdk(tmp_path: Any) -> None:
    script = textwrap.dedent(f"""
        import sys
        from chathistory import ChatHistory, available_backends, get_backend
        from langchain_core.messages import HumanMessage
        history = ChatHistory("s", backend="sqlite", path={str(tmp_path / "db")!r})
        history.add_messages([HumanMessage("hi")])
        assert history.messages == [HumanMessage("hi")]
        assert "rockset" in {{info.name for info in available_backends()}}
        assert "rockset" not in sys.modules, "using sqlite imported rockset"
        from chathistory.testing import fake_backends
        with fake_backends("rockset"):
            ChatHistory("s", backend="rockset", collection="c", api_key="k").messages
        assert "rockset" not in sys.modules, "validating rockset options imported rockset"
        import chathistory_rockset
        from chathistory_rockset import RocksetBackend, RocksetConfig, client, errors, plugin
        assert chathistory_rockset.__all__ == ["RocksetBackend", "RocksetConfig"]
        assert plugin.chathistory_backend() is RocksetBackend
        assert "rockset" not in sys.modules, "importing the package imported rockset"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
