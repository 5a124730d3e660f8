"""Vector store backends behind one interface; ``open_store`` picks one from settings."""

from __future__ import annotations

from rag.core.config import Settings
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
    "Filter",
    "Hit",
    "SparseVec",
    "StoreError",
    "StoredPoint",
    "VectorStore",
    "open_store",
]


def open_store(settings: Settings) -> VectorStore:
    cfg = settings.store
    if cfg.backend == "edge":
        from rag.store.edge import EdgeStore

        return EdgeStore(
            settings.resolved_data_dir() / "index", indexing_threshold_kb=cfg.indexing_threshold_kb
        )
    from rag.store.qdrant import QdrantStore

    path = cfg.path
    if not cfg.url and not path:
        path = str(settings.resolved_data_dir() / "qdrant-local")
    return QdrantStore(url=cfg.url, path=path, api_key=cfg.api_key)
