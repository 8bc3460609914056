"""Find backends through the ``chathistory.backends`` entry points, and pick one by name.

The scan happens on first use, never at ``import chathistory``. A plugin that
fails to import is remembered with its distribution's name and does not stop
the others from loading.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points
from importlib.metadata import version as installed_version
from typing import Any

import pluggy

from chathistory import hookspecs
from chathistory.backend import Backend, BackendConfig, validate_options
from chathistory.errors import (
    BackendLoadError,
    BackendNotFoundError,
    ChatHistoryError,
    DuplicateBackendError,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_VARIABLE",
    "BackendInfo",
    "LoadPluginsWarning",
    "NamedBackend",
    "Registry",
    "available_backends",
    "backend_class",
    "default_registry",
    "get_backend",
]

ENTRY_POINT_GROUP = "chathistory.backends"
LOAD_PLUGINS_VARIABLE = "CHATHISTORY_LOAD_PLUGINS"


class LoadPluginsWarning(UserWarning):
    """``CHATHISTORY_LOAD_PLUGINS`` names a backend that no installed distribution provides."""


@dataclass(frozen=True)
class BackendInfo:
    """One installed backend, as ``chathistory backends`` shows it."""

    name: str
    distribution: str
    version: str
    error: str | None = None


@dataclass
class _Plugin:
    info: BackendInfo
    error_class: type[ChatHistoryError] = BackendLoadError
    backend_class: type[Any] | None = None
    requires: tuple[str, ...] = ()
    """The distribution's requirements, as its metadata lists them."""
    # Serializes this plugin's first hook call (it imports the backend and its SDK), and
    # only this plugin's: a slow import never holds up the first use of another backend.
    loading: threading.Lock = field(default_factory=threading.Lock)


def _missing(requires: tuple[str, ...]) -> list[str]:
    """The requirements that apply here and that no installed distribution meets.

    One for an extra, or for another platform, does not apply (its marker is false).
    """
    # Only `chathistory backends` asks: building a backend need not pay for the parser.
    from packaging.requirements import Requirement

    missing = []
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = installed_version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{requirement.name}, which is not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{requirement.name}{requirement.specifier}, "
                           f"where {installed} is installed")
    return missing


def _unusable(name: str, distribution_name: str, reason: str) -> str:
    return (f"backend {name!r} from {distribution_name} cannot be used: {reason}. "
            f"Reinstall {distribution_name} with its dependencies.")


def _distribution_of(entry_point: EntryPoint) -> tuple[str, str]:
    dist = entry_point.dist
    if dist is None:
        return "(unknown distribution)", ""
    return dist.metadata["Name"] or dist.name, dist.version


class Registry:
    """The backends one process can use. Most code uses the module-level functions."""

    def __init__(self, entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        self.entry_point_group = entry_point_group
        self._lock = threading.RLock()
        self._manager: pluggy.PluginManager | None = None
        self._plugins: dict[str, _Plugin] = {}
        self._substitutes: dict[str, Callable[[str, BackendConfig], Backend]] = {}
        # Installed backends that CHATHISTORY_LOAD_PLUGINS left out, by their distribution,
        # and its value then (the scan is once; the environment may change since).
        self._left_out: dict[str, str] = {}
        self._load_plugins = ""

    def _scan(self) -> pluggy.PluginManager:
        with self._lock:
            if self._manager is not None:
                return self._manager
            manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            manager.add_hookspecs(hookspecs)
            allowed = _allowed_names()
            self._load_plugins = os.environ.get(LOAD_PLUGINS_VARIABLE, "")
            claims: dict[str, dict[str, EntryPoint]] = {}
            installed: set[str] = set()
            for entry_point in entry_points(group=self.entry_point_group):
                installed.add(entry_point.name)
                if allowed is not None and entry_point.name not in allowed:
                    self._left_out[entry_point.name] = _distribution_of(entry_point)[0]
                    continue
                distribution, _ = _distribution_of(entry_point)
                # One distribution can be seen twice on sys.path (say, an
                # editable install); only distinct distributions conflict.
                claims.setdefault(entry_point.name, {}).setdefault(distribution, entry_point)
            for name, by_distribution in sorted(claims.items()):
                if len(by_distribution) > 1:
                    both = " and ".join(sorted(by_distribution))
                    self._plugins[name] = _Plugin(BackendInfo(
                        name, both, "",
                        f"backend name {name!r} is registered by both {both}; "
                        "uninstall one of them",
                    ), DuplicateBackendError)
                    continue
                (entry_point,) = by_distribution.values()
                self._plugins[name] = self._load(manager, name, entry_point)
            unmatched = sorted((allowed or set()) - installed)
            if unmatched:
                warnings.warn(
                    f"{LOAD_PLUGINS_VARIABLE} names {', '.join(map(repr, unmatched))}, which no "
                    f"installed backend provides (installed: {', '.join(sorted(installed))})",
                    LoadPluginsWarning, stacklevel=3)
            self._manager = manager
            return manager

    def _load(self, manager: pluggy.PluginManager, name: str, entry_point: EntryPoint) -> _Plugin:
        distribution, version = _distribution_of(entry_point)
        try:
            module = entry_point.load()
            manager.register(module, name=name)
        except Exception as exc:
            return _Plugin(BackendInfo(
                name, distribution, version,
                f"plugin {entry_point.value!r} from {distribution} failed to load: "
                f"{type(exc).__name__}: {exc}",
            ))
        requires = tuple(entry_point.dist.requires or []) if entry_point.dist else ()
        return _Plugin(BackendInfo(name, distribution, version), requires=requires)

    def available(self) -> list[BackendInfo]:
        """Every backend found, with its distribution, version and load error if any."""
        self._scan()
        return [plugin.info for _, plugin in sorted(self._plugins.items())]

    def backend_class(self, name: str) -> type[Any]:
        """The class behind backend ``name``; raises the errors of :func:`get_backend`."""
        manager = self._scan()
        plugin = self._plugins.get(name)
        if plugin is None:
            raise BackendNotFoundError(self._not_found(name))
        if plugin.backend_class is not None:
            return plugin.backend_class
        if plugin.info.error is not None:
            raise plugin.error_class(plugin.info.error)
        with plugin.loading:
            if plugin.backend_class is None:
                plugin.backend_class = self._call_hook(manager, name, plugin.info)
            return plugin.backend_class

    def _not_found(self, name: str) -> str:
        """No backend ``name``: the closest installed names, or where one would come from."""
        installed = sorted(self._plugins)
        listed = ", ".join(installed) or "none"
        if name in self._left_out:
            return (f"backend {name!r} (from {self._left_out[name]}) is installed but not "
                    f"loaded: {LOAD_PLUGINS_VARIABLE}={self._load_plugins!r} leaves it out (add it "
                    f"there, or unset the variable); loaded backends: {listed}")
        close = difflib.get_close_matches(name, installed, n=3, cutoff=0.6)
        if close:
            return (f"no backend named {name!r}; did you mean "
                    f"{' or '.join(map(repr, close))}? (installed backends: {listed})")
        return (f"no backend named {name!r}; installed backends: {listed}. A backend "
                f"{name!r} would come from a distribution of its own, such as "
                f"chathistory-{name}, once installed.")

    def _call_hook(self, manager: pluggy.PluginManager, name: str, info: BackendInfo
                   ) -> type[Any]:
        module = manager.get_plugin(name)
        implementations = [impl for impl in manager.hook.chathistory_backend.get_hookimpls()
                           if impl.plugin is module]
        if not implementations:
            raise BackendLoadError(
                f"plugin for backend {name!r} from {info.distribution} does not implement "
                "the chathistory_backend hook"
            )
        try:
            found = implementations[0].function()
        except ImportError as exc:
            raise BackendLoadError(_unusable(name, info.distribution, str(exc))) from exc
        if not isinstance(found, type) or not hasattr(found, "Config"):
            raise BackendLoadError(
                f"the chathistory_backend hook of {info.distribution} returned {found!r}, "
                "not a backend class with a Config"
            )
        return found

    def get_backend(self, name: str, **options: Any) -> Backend:
        """Build backend ``name`` from ``options``, validated by the class's ``Config``."""
        config = validate_options(name, self.backend_class(name).Config, options)
        substitute = self.substitute(name, config)
        return substitute if substitute is not None else self.build(name, config)

    def build(self, name: str, config: BackendConfig) -> Backend:
        """Build backend ``name`` from an already validated ``config``."""
        backend_class = self.backend_class(name)
        try:
            # A backend imports its driver when built, so a missing one shows here.
            backend: Backend = backend_class(config)
        except ImportError as exc:
            raise BackendLoadError(
                _unusable(name, self._plugins[name].info.distribution, str(exc))) from exc
        return backend

    def check_requirements(self, name: str) -> None:
        """Raise :class:`BackendLoadError` if backend ``name`` cannot be built for want
        of a distribution its own requires (its driver, installed with ``--no-deps``,
        uninstalled since, or at a version outside the range it requires). Reads
        installed metadata only: it imports nothing.
        """
        self.backend_class(name)
        plugin = self._plugins[name]
        missing = _missing(plugin.requires)
        if missing:
            raise BackendLoadError(_unusable(
                name, plugin.info.distribution, f"it requires {'; '.join(missing)}"))

    def substitute(self, name: str, config: BackendConfig) -> Backend | None:
        """The stand-in for backend ``name`` while one is active (the fake swap), else None."""
        factory = self._substitutes.get(name)
        return None if factory is None else factory(name, config)

    @contextmanager
    def substituted(self, names: list[str], factory: Callable[[str, BackendConfig], Backend]
                    ) -> Iterator[None]:
        """While active, ``get_backend(name)`` for ``names`` validates, then calls ``factory``."""
        with self._lock:
            previous = {name: self._substitutes.get(name) for name in names}
            for name in names:
                self._substitutes[name] = factory
        try:
            yield
        finally:
            with self._lock:
                for name, old in previous.items():
                    if old is None:
                        self._substitutes.pop(name, None)
                    else:
                        self._substitutes[name] = old


class NamedBackend:
    """A backend chosen by name: options validated now, built on first use, once.

    The building block behind every way a backend is built by name
    (``ChatHistory(..., backend="x")``, :func:`~chathistory.history_factory`,
    the agent middleware). Each use first asks the registry for a substitute,
    so while the fake swap is active the fake wins, even for an object built
    at import time, before the swap began.

    Args:
        name: The backend's name.
        options: Its options, validated at once by the class's ``Config``.
        registry: Where to find the backend (default: the process's registry).

    Raises:
        chathistory.errors.ConfigError: an option is missing, unknown or invalid.
        chathistory.errors.BackendNotFoundError: no backend of that name is installed.
    """

    def __init__(self, name: str, options: Mapping[str, Any],
                 registry: Registry | None = None) -> None:
        self.name = name
        self.registry = registry or default_registry
        self.config: BackendConfig = validate_options(
            name, self.registry.backend_class(name).Config, options)
        self._built: Backend | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NamedBackend({self.name!r}, {self.config!r})"

    @property
    def built(self) -> Backend | None:
        """The real backend once it was built (never the substitute), else ``None``."""
        return self._built

    def get(self) -> Backend:
        """The backend to use now: the substitute while the fake swap is on, else the real one."""
        substitute = self.registry.substitute(self.name, self.config)
        if substitute is not None:
            return substitute
        built = self._built
        if built is None:
            with self._lock:
                if self._built is None:
                    self._built = self.registry.build(self.name, self.config)
                built = self._built
        return built

    async def aget(self) -> Backend:
        """Async :meth:`get`: a first build (it may connect) runs in a worker thread."""
        if self._built is not None or self.registry.substitute(self.name, self.config) is not None:
            return self.get()
        return await asyncio.to_thread(self.get)

    def close(self) -> None:
        """Close the real backend if it was built; a substitute is the swap's to keep."""
        if self._built is not None:
            self._built.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        if self._built is not None:
            await self._built.aclose()


def _allowed_names() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_VARIABLE)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


default_registry = Registry()


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend registered as ``name``, validating ``options`` with its ``Config``.

    Raises:
        BackendNotFoundError: no such backend is installed (the message lists those that are).
        BackendLoadError: its plugin failed to import.
        DuplicateBackendError: two distributions claim the name.
        ConfigError: an option is missing, unknown or of the wrong type.

    Example::

        backend = get_backend("sqlite", path="chat.sqlite3")
    """
    return default_registry.get_backend(name, **options)


def backend_class(name: str) -> type[Any]:
    """The class registered as ``name``, without building it."""
    return default_registry.backend_class(name)


def available_backends() -> list[BackendInfo]:
    """Every installed backend: name, distribution, version and load error (or ``None``)."""
    return default_registry.available()
