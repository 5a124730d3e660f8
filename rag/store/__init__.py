"""Vector store backends behind one interface; ``open_store`` picks one from settings.

:data:`STORES` maps a ``store.backend`` name to a factory ``(Settings) -> VectorStore``.
Built in: ``edge`` (Qdrant Edge in process, under ``<data_dir>/index``) and ``qdrant``
(qdrant-client: a server at ``store.url``, else local mode under ``store.path``). Another is
one call, before the index is opened::

    STORES.register("mine", lambda settings: MyStore(settings.resolved_data_dir() / "mine"))

and ``store.backend: mine`` in the settings. The factory is called once per ``Index`` (cheap:
connect lazily, or at most open a folder); the congruence suite
(``tests/rag/store/test_congruence.py``) runs against every registered backend.
"""

from __future__ import annotations

from collections.abc import Callable

from rag.core.config import Settings
from rag.core.registry import Registry
from rag.store.base import (
    DENSE,
    SPARSE,
    Filter,
    Hit,
    SparseVec,
    StoredPoint,
    StoreError,
    VectorStore,
)

__all__ = [
    "DENSE",
    "SPARSE",
    "STORES",
    "Filter",
    "Hit",
    "SparseVec",
    "StoreError",
    "StoreFactory",
    "StoredPoint",
    "VectorStore",
    "open_store",
]

# settings -> a store (not yet connected, or cheaply so).
StoreFactory = Callable[[Settings], VectorStore]

STORES: Registry[StoreFactory] = Registry("store backend", "store.backend")


def open_store(settings: Settings) -> VectorStore:
    """The store ``store.backend`` names; ConfigError naming the key when none is registered."""
    return STORES.get(settings.store.backend)(settings)


def _open_edge(settings: Settings) -> VectorStore:
    from rag.store.edge import EdgeStore

    return EdgeStore(
        settings.resolved_data_dir() / "index",
        indexing_threshold_kb=settings.store.indexing_threshold_kb,
    )


def _open_qdrant(settings: Settings) -> VectorStore:
    from rag.store.qdrant import QdrantStore

    cfg = settings.store
    path = cfg.path
    if not cfg.url and not path:
        path = str(settings.resolved_data_dir() / "qdrant-local")
    return QdrantStore(url=cfg.url, path=path, api_key=cfg.api_key)


STORES.register("edge", _open_edge)
STORES.register("qdrant", _open_qdrant)
