import importlib
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from chathistory import (
    BackendLoadError,
    BackendNotFoundError,
    ChatHistory,
    DuplicateBackendError,
    available_backends,
    get_backend,
)
from chathistory.registry import Registry

GROUP = "chathistory.test_backends"

GOOD_PLUGIN = """
from chathistory import hookimpl

@hookimpl
def chathistory_backend():
    from chathistory.backends.memory import MemoryBackend
    return MemoryBackend
"""

MakeDistribution = Callable[..., None]


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeDistribution:
    """Write a real installed distribution (dist-info + module) onto sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, backends: dict[str, str], version: str = "1.0") -> None:
        dist_info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = [f"[{GROUP}]"]
        for backend_name, source in backends.items():
            module = f"{name.replace('-', '_')}_{backend_name}_{tmp_path.name}"
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            lines.append(f"{backend_name} = {module}")
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()

    return make


def test_builtins_come_through_the_entry_point_group() -> None:
    found = {info.name: info for info in available_backends()}
    assert found["memory"].distribution == "chathistory"
    assert found["sqlite"].distribution == "chathistory"
    assert found["memory"].error is None and found["memory"].version


def test_a_pip_installed_third_party_backend_is_found_by_name(tmp_path: Path) -> None:
    found = {info.name: info for info in available_backends()}
    assert found["jsonl"].distribution == "chathistory-example"
    backend = get_backend("jsonl", directory=tmp_path / "histories")
    assert type(backend).__module__ == "chathistory_example.backend"
    history = ChatHistory("s", backend="jsonl", directory=str(tmp_path / "histories"))
    history.add_user_message("hello from a plugin")
    assert [m.content for m in history.messages] == ["hello from a plugin"]


def test_an_unknown_name_lists_the_installed_backends() -> None:
    with pytest.raises(BackendNotFoundError, match=r"no backend named 'nope'; installed "
                                                   r"backends: .*memory.*sqlite"):
        get_backend("nope")


def test_a_misspelt_name_suggests_the_closest_installed_ones(
        make_distribution: MakeDistribution) -> None:
    make_distribution("chathistory-postgres", {"postgres": GOOD_PLUGIN})
    make_distribution("chathistory-other", {"redis": GOOD_PLUGIN, "sqlite": GOOD_PLUGIN})
    registry = Registry(GROUP)
    with pytest.raises(BackendNotFoundError) as caught:
        registry.get_backend("postgress")
    assert str(caught.value) == ("no backend named 'postgress'; did you mean 'postgres'? "
                                 "(installed backends: postgres, redis, sqlite)")
    assert "chathistory-postgress" not in str(caught.value)
    with pytest.raises(BackendNotFoundError, match="did you mean 'sqlite'"):
        registry.get_backend("sqlit")


def test_a_broken_plugin_is_reported_with_its_distribution(make_distribution: MakeDistribution
                                                           ) -> None:
    make_distribution("chathistory-broken", {"broken": "raise RuntimeError('boom at import')\n"})
    make_distribution("chathistory-fine", {"fine": GOOD_PLUGIN})
    registry = Registry(GROUP)
    infos = {info.name: info for info in registry.available()}
    assert infos["broken"].distribution == "chathistory-broken"
    assert "chathistory-broken" in (infos["broken"].error or "")
    assert "RuntimeError: boom at import" in (infos["broken"].error or "")
    assert infos["fine"].error is None
    assert registry.get_backend("fine") is not None
    with pytest.raises(BackendLoadError, match="chathistory-broken"):
        registry.get_backend("broken")


def test_a_missing_sdk_says_what_to_install(make_distribution: MakeDistribution) -> None:
    make_distribution("chathistory-needs-sdk", {"needy": """
        from chathistory import hookimpl

        @hookimpl
        def chathistory_backend():
            import not_installed_sdk_xyz
    """})
    with pytest.raises(BackendLoadError, match=r"backend 'needy' from chathistory-needs-sdk "
                                               r"cannot be used: .*not_installed_sdk_xyz"):
        Registry(GROUP).get_backend("needy")


def test_a_hook_returning_no_class_is_a_load_error(make_distribution: MakeDistribution) -> None:
    make_distribution("chathistory-odd", {"odd": """
        from chathistory import hookimpl

        @hookimpl
        def chathistory_backend():
            return "not a class"
    """})
    with pytest.raises(BackendLoadError, match="returned 'not a class'"):
        Registry(GROUP).get_backend("odd")


def test_two_distributions_claiming_one_name_is_an_error_naming_both(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution("chathistory-first", {"twin": GOOD_PLUGIN, "solo": GOOD_PLUGIN})
    make_distribution("chathistory-second", {"twin": GOOD_PLUGIN})
    registry = Registry(GROUP)
    with pytest.raises(DuplicateBackendError,
                       match="chathistory-first and chathistory-second"):
        registry.get_backend("twin")
    assert registry.get_backend("solo") is not None


def test_load_plugins_variable_restricts_what_is_loaded(make_distribution: MakeDistribution,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution("chathistory-broken", {"broken": "raise RuntimeError('boom')\n"})
    make_distribution("chathistory-fine", {"fine": GOOD_PLUGIN})
    monkeypatch.setenv("CHATHISTORY_LOAD_PLUGINS", "fine")
    registry = Registry(GROUP)
    assert [info.name for info in registry.available()] == ["fine"]
    # It said "no backend named 'broken'; installed backends: fine", of an installed one.
    with pytest.raises(BackendNotFoundError) as left_out:
        registry.get_backend("broken")
    assert str(left_out.value) == (
        "backend 'broken' (from chathistory-broken) is installed but not loaded: "
        "CHATHISTORY_LOAD_PLUGINS='fine' leaves it out (add it there, or unset the "
        "variable); loaded backends: fine")
    with pytest.raises(BackendNotFoundError, match="installed backends: fine"):
        registry.get_backend("nowhere")


def test_importing_chathistory_scans_no_plugins() -> None:
    code = ("import sys, chathistory; "
            "print(sorted(m for m in sys.modules if m.startswith('chathistory_') "
            "or m.startswith('chathistory.backends.')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "[]"


SLOW_PLUGIN = """
import threading

from chathistory import hookimpl

importing, release = threading.Event(), threading.Event()

@hookimpl
def chathistory_backend():
    importing.set()  # as if importing a heavy SDK
    release.wait(timeout=30)
    from chathistory.backends.memory import MemoryBackend
    return MemoryBackend
"""


def test_a_slow_first_load_holds_up_only_its_own_backend(
        make_distribution: MakeDistribution, tmp_path: Path) -> None:
    make_distribution("chathistory-slow", {"slow": SLOW_PLUGIN})
    make_distribution("chathistory-quick", {"quick": GOOD_PLUGIN})
    registry = Registry(GROUP)
    registry.available()  # the scan; the hooks are called on first use
    slow = sys.modules[f"chathistory_slow_slow_{tmp_path.name}"]  # imported by the scan
    loader = threading.Thread(target=registry.backend_class, args=("slow",))
    loader.start()
    try:
        assert slow.importing.wait(timeout=30)
        registry.backend_class("quick")  # a lock held for the slow load would hold this up
        assert loader.is_alive(), "the quick backend waited for the slow one's first load"
    finally:
        slow.release.set()
        loader.join()
    assert registry.backend_class("slow") is registry.backend_class("quick")
