"""A table of plug-ins by name: what a setting such as ``store.backend`` names is looked up here.

Each wing that owns a kind of plug-in keeps one :class:`Registry` and fills it with its
built-ins explicitly, in that module (nothing registers itself by being imported):

| table                                | key it is looked up by  | holds                       |
|--------------------------------------|-------------------------|-----------------------------|
| ``rag.indexing.parsing.PARSERS``     | ``ingestion.extensions`` | :class:`~rag.contracts.Parser` objects (by name; suffix index) |
| ``rag.store.STORES``                 | ``store.backend``       | factories ``(Settings) -> VectorStore`` |
| ``rag.generate.GENERATORS``          | ``generation.chain``    | factories ``(GeneratorContext) -> Generator`` |
| ``rag.query.rerank.RERANKERS``       | ``rerank.backend``      | factories ``(RerankSettings, Embedder | None) -> Reranker`` |

Adding one from outside the library is one call, before the settings are used::

    from rag.store import STORES
    STORES.register("mine", lambda settings: MyStore(settings.resolved_data_dir() / "mine"))

Settings name plug-ins as plain strings; the owning wing checks them against its table when
it builds the component, and :func:`rag.plugins.check_settings` checks every table at once
(the CLI runs it right after loading the configuration). An unknown name is a
:class:`~rag.core.errors.ConfigError` naming the key and the registered names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from rag.core.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → item, in registration order. ``kind`` ("store backend") and ``key`` (the setting
    that names one, "store.backend") make the errors read well. Thread-safe; lookups are
    cheap (a dict read), so callers consult the table at call time, never a copy of it."""

    def __init__(self, kind: str, key: str):
        self.kind = kind
        self.key = key
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``name`` and return it. A name already taken is an error unless
        ``replace`` (then ``item`` stands in for the one registered before)."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ConfigError(
                f"{self.kind} name {name!r} is not usable: give a non-empty name without "
                "surrounding spaces"
            )
        with self._lock:
            if name in self._items and not replace:
                raise ConfigError(
                    f"{self.kind} {name!r} is already registered: pick another name, or pass "
                    "replace=True to stand in for it"
                )
            self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it held (tests clean up with this)."""
        with self._lock:
            if name not in self._items:
                raise ConfigError(self._unknown(name, None))
            return self._items.pop(name)

    def get(self, name: str, *, key: str | None = None) -> T:
        """The item registered as ``name``; an unknown name is a :class:`ConfigError` naming
        the setting (``key``, default this table's) and every registered name."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(self._unknown(name, key or self.key)) from None

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items) or 'empty'})"

    def _unknown(self, name: object, key: str | None) -> str:
        where = f" ({key})" if key else ""
        registered = ", ".join(self._items) or "none"
        return f"unknown {self.kind} {name!r}{where}: registered are {registered}"
