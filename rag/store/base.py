"""The vector store interface every backend implements (and the congruence tests exercise),
defined in :mod:`rag.contracts` and gathered here for backends.

A store holds *collections* (physical, versioned: ``kb_v1``, ``kb_v2``) and *aliases* (``kb``)
that point at one of them; switching an alias is atomic. Each collection has a dense slot
(``dense``, cosine) and a sparse slot (``sparse``, IDF applied by the engine) and carries the
metadata it was created with (the embedding identity it is locked to).
"""

from __future__ import annotations

from rag.contracts import (
    DENSE,
    INDEXED_FIELDS,
    SPARSE,
    Filter,
    Hit,
    SparseVec,
    StoredPoint,
    VectorStore,
)
from rag.core.errors import StoreError

__all__ = [
    "DENSE",
    "INDEXED_FIELDS",
    "SPARSE",
    "Filter",
    "Hit",
    "SparseVec",
    "StoreError",
    "StoredPoint",
    "VectorStore",
]
