"""Options, secrets, errors, the entry point and the fake swap."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import traceback
from collections.abc import Callable

import pytest
import redis
import redis.asyncio
from chathistory_redis import RedisBackend, RedisConfig
from langchain_core.messages import HumanMessage

from chathistory import (
    BackendUnavailableError,
    ChatHistory,
    ConfigError,
    available_backends,
    get_backend,
)
from chathistory.testing import fake_backends, numbered_records

MakeBackend = Callable[..., RedisBackend]
SECRET = "s3cr3t-Pa55"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _everything_said(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize(("layout", "key_prefix", "why"), [
    ("chathistory", "a{b", "Redis Cluster hashes"),
    ("chathistory", "a}b", "Redis Cluster hashes"),
    ("chathistory", "{tag}:", "Redis Cluster hashes"),
    ("langchain_community", "", "must not be empty"),
    ("langchain_community", "c", "start of the sessions index's key"),
    ("langchain_community", "chathistory-index:{", "start of the sessions index's key"),
])
def test_a_key_prefix_that_would_break_keys_is_refused_saying_why(layout: str, key_prefix: str,
                                                                  why: str) -> None:
    with pytest.raises(ConfigError, match=rf"'redis'.*'key_prefix'.*{why}"):  # not "unavailable"
        get_backend("redis", url=NOWHERE, layout=layout, key_prefix=key_prefix)


@pytest.mark.parametrize("key_prefix", [
    "@", ":", "myapp:", "app:chat:", "has space", "é", "a*?[b]\\", "a\n", "a/b", "x" * 1000,
])
def test_any_other_key_prefix_is_accepted_in_both_layouts(key_prefix: str) -> None:
    community = RedisBackend.from_options(layout="langchain_community", key_prefix=key_prefix)
    assert community.key("s") == (key_prefix + "s").encode()
    ours = RedisBackend.from_options(key_prefix=key_prefix)
    base = key_prefix if key_prefix.endswith(":") else key_prefix + ":"
    assert ours.key("s") == (base + "{s}").encode()


def test_a_conventional_prefix_with_its_colon_gives_the_same_keys() -> None:
    for key_prefix in ("myapp", "myapp:"):
        backend = RedisBackend.from_options(key_prefix=key_prefix)
        assert backend.key("user-42") == b"myapp:{user-42}"
        assert backend.index_keys == (b"myapp:sessions:{myapp:}:by-id",
                                      b"myapp:sessions:{myapp:}:by-time")
    with pytest.raises(ConfigError, match="'layout'"):
        RedisBackend.from_options(layout="langchain")


@pytest.mark.parametrize("ttl", [0, None])
def test_ttl_0_and_none_mean_no_expiry_in_the_langchain_layout(ttl: int | None) -> None:
    assert RedisConfig(layout="langchain_community", ttl=ttl).ttl is None
    with pytest.raises(ConfigError, match=r"'ttl'.*only with layout 'langchain_community'"):
        RedisBackend.from_options(ttl=0)


def test_defaults() -> None:
    config = RedisConfig()
    assert config.url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert (config.layout, config.effective_key_prefix, config.ttl) == (
        "chathistory", "chathistory", None)
    assert (config.max_connections, config.pool_timeout, config.health_check_interval) == (
        50, 20.0, 30.0)


@pytest.mark.parametrize(("option", "value"), [
    ("max_connections", 0), ("max_connections", 2.5), ("pool_timeout", 0),
    ("pool_timeout", -1), ("health_check_interval", -1), ("socket_timeout", 0),
])
def test_bad_pool_options_are_refused(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{option}'"):
        get_backend("redis", **{option: value})


def test_pool_options_reach_the_pools(make_backend: MakeBackend) -> None:
    backend = make_backend(max_connections=3, pool_timeout=None, health_check_interval=0)
    backend.append("s", numbered_records(1))  # a pool with these options works
    assert backend.config.pool_timeout is None
    assert RedisConfig(layout="langchain_community").effective_key_prefix == "message_store:"


@pytest.mark.parametrize("url", [f"http://:{SECRET}@host", f"{SECRET}", f"redis://:{SECRET}@h:x1"])
def test_bad_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ConfigError, match="'url'") as caught:
        get_backend("redis", url=url)
    assert SECRET not in _everything_said(caught.value)
    with pytest.raises(ValueError) as direct:
        RedisConfig(url=url)
    assert SECRET not in str(direct.value)


def test_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'prefix'.*key_prefix"):
        get_backend("redis", prefix="app")


def test_password_never_shows() -> None:
    url = f"redis://app:{SECRET}@127.0.0.1:1/0"
    backend = get_backend("redis", url=url, socket_connect_timeout=1)
    history = ChatHistory("s", backend=backend)
    assert SECRET not in repr(backend) + repr(history) + str(backend.config)
    assert SECRET not in str(backend.config.model_dump()) + backend.config.model_dump_json()
    for call in (lambda: history.messages,
                 lambda: history.add_messages([HumanMessage("hi")]),
                 lambda: asyncio.run(history.aget_messages())):
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        said = _everything_said(caught.value)
        assert "127.0.0.1:1" in str(caught.value)
        assert SECRET not in said


# Refused credentials: test_redis_auth.py, on a private server that requires them.


def test_an_unreachable_server_is_unavailable_for_every_operation() -> None:
    backend = get_backend("redis", url=NOWHERE)
    for call in (lambda: backend.fetch("s"), lambda: backend.append("s", numbered_records(1)),
                 lambda: backend.clear("s"), lambda: asyncio.run(backend.afetch("s")),
                 lambda: asyncio.run(backend.aappend("s", numbered_records(1))),
                 lambda: asyncio.run(backend.aclear("s"))):
        with pytest.raises(BackendUnavailableError, match=re.escape("127.0.0.1:1")) as caught:
            call()
        assert "after 4 attempts" in str(caught.value)
    backend.close()


def test_get_backend_finds_it_through_its_entry_point(redis_url: str, prefix: str) -> None:
    (info,) = [info for info in available_backends() if info.name == "redis"]
    assert (info.distribution, info.error) == ("chathistory-redis", None)
    backend = get_backend("redis", url=redis_url, key_prefix=prefix, ttl=60)
    assert isinstance(backend, RedisBackend)
    with ChatHistory("s", backend="redis", url=redis_url, key_prefix=prefix) as history:
        assert isinstance(history.backend, RedisBackend)
        history.add_messages([HumanMessage("hi")])
    assert ChatHistory("s", backend=backend).messages == [HumanMessage("hi")]
    assert backend.config.ttl == 60
    backend.close()


def test_plugin_and_fake_swap_do_not_import_redis() -> None:
    script = """
import sys
import chathistory_redis.plugin
assert "redis" not in sys.modules, "plugin imported redis"
from langchain_core.messages import HumanMessage
from chathistory import ChatHistory, ConfigError
from chathistory.testing import fake_backends
with fake_backends("redis") as fakes:
    history = ChatHistory("s", backend="redis", url="redis://:pw@cache:6379/1",
                          key_prefix="app", ttl=60)
    history.add_messages([HumanMessage("hi")])
    assert history.messages == [HumanMessage("hi")]
    assert fakes["redis"].calls["append"] == 1
    try:
        ChatHistory("s", backend="redis", key_prefix="a{b}")
    except ConfigError:
        pass
    else:
        raise AssertionError("a bad key_prefix passed the fake swap")
assert "redis" not in sys.modules, "the fake swap imported redis"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_fake_swap_stands_in_for_redis() -> None:
    with fake_backends("redis") as fakes:
        history = ChatHistory("s", backend="redis", key_prefix="app", ttl=60)
        history.add_messages([HumanMessage("hi")])
        assert history.messages == [HumanMessage("hi")]
        assert "redis" in fakes
        with pytest.raises(ConfigError, match="'ttl'"):
            ChatHistory("s", backend="redis", ttl=0)


def test_client_of_the_wrong_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'client'"):
        RedisBackend.from_options(client="redis://localhost")
    with pytest.raises(ConfigError, match="'async_client'"):
        RedisBackend.from_options(async_client=redis.Redis())
    # One path a cluster, the other not: an operation would not know which keys to touch.
    cluster = redis.asyncio.RedisCluster(host="127.0.0.1", port=7000)  # connects on first use
    with pytest.raises(ConfigError, match="both be Redis Cluster clients, or neither"):
        RedisBackend.from_options(client=redis.Redis(), async_client=cluster)


@pytest.mark.parametrize(("options", "why"), [
    ({"client": redis.Redis()}, "leave 'cluster' out"),
    ({"async_client": redis.asyncio.RedisCluster(host="127.0.0.1", port=7000)},
     "leave 'cluster' out"),
    ({"url": "unix:///tmp/redis.sock"}, "takes no unix:// sockets"),
    ({"url": "redis://127.0.0.1:7000/2"}, "database 0"),
    ({"url": "redis://127.0.0.1:7000?db=1"}, "database 0"),
])
def test_cluster_with_an_application_client_or_a_url_it_cannot_take_is_a_config_error(
        options: dict[str, object], why: str) -> None:
    with pytest.raises(ConfigError, match=rf"'redis': option 'cluster' .*{why}"):
        RedisBackend.from_options(cluster=True, **options)
    RedisBackend.from_options(cluster=True, url="redis://127.0.0.1:1/0?db=0")  # no connection
    # validated without redis-py, as the other options are
    with fake_backends("redis"), pytest.raises(ConfigError, match="option 'cluster'"):
        get_backend("redis", cluster=True, url="unix:///tmp/redis.sock")


def test_application_async_client_is_used_and_left_open(make_backend: MakeBackend,
                                                         redis_url: str) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            backend = make_backend(async_client=client)
            await backend.aappend("s", numbered_records(3))
            assert await backend.afetch("s", limit=2) == numbered_records(3)[1:]
            await backend.aclose()
            assert await client.ping()  # still open
            assert backend.fetch("s") == numbered_records(3)  # the sync side: our own pool
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_application_client_is_left_open(make_backend: MakeBackend, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        backend = make_backend(client=client)
        backend.append("s", numbered_records(1))
        backend.close()
        assert client.ping()
        assert asyncio.run(backend.afetch("s")) == numbered_records(1)
    finally:
        client.close()


def test_close_is_idempotent_and_the_backend_reconnects(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    asyncio.run(backend.aappend("s", numbered_records(1)))
    backend.close()
    backend.close()
    asyncio.run(backend.aclose())
    assert len(backend.fetch("s")) == 2
    assert len(asyncio.run(backend.afetch("s"))) == 2


# One backend on several event loops, each loop's pool closed with it:
# test_redis_connections.py, which counts the connections on a private server.


def test_negative_limit_is_refused(make_backend: MakeBackend) -> None:
    with pytest.raises(ValueError, match="limit"):
        make_backend().fetch("s", limit=-1)
