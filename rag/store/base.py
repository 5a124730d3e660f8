"""The vector store interface every backend implements (and the congruence tests exercise).

A store holds *collections* (physical, versioned: ``kb_v1``, ``kb_v2``) and *aliases* (``kb``)
that point at one of them; switching an alias is atomic. Each collection has a dense slot
(``dense``, cosine) and a sparse slot (``sparse``, IDF applied by the engine) and carries the
metadata it was created with (the embedding identity it is locked to).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.errors import StoreError

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

DENSE = "dense"
SPARSE = "sparse"
# Payload fields with an index: lookups by document, dedup by text, tenant isolation.
INDEXED_FIELDS = ("doc_id", "text_hash", "tenant", "source")

FilterValue = str | int | bool | Sequence[str] | Sequence[int]
# key -> value (exact match) or list of values (match any). All keys must match.
Filter = Mapping[str, FilterValue]


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass
class StoredPoint:
    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: SparseVec | None = None


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorStore(abc.ABC):
    """Small, synchronous interface; callers serialise writes (one writer per data dir)."""

    name: str = "base"

    # -- collections and aliases -------------------------------------------------------
    @abc.abstractmethod
    def list_collections(self) -> list[str]: ...

    @abc.abstractmethod
    def create_collection(self, name: str, dimension: int, metadata: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def delete_collection(self, name: str) -> None: ...

    @abc.abstractmethod
    def collection_metadata(self, name: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def get_alias(self, alias: str) -> str | None: ...

    @abc.abstractmethod
    def switch_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic step."""

    # -- points ----------------------------------------------------------------------
    @abc.abstractmethod
    def upsert(self, collection: str, points: Sequence[StoredPoint]) -> None: ...

    @abc.abstractmethod
    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def retrieve(
        self, collection: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]: ...

    @abc.abstractmethod
    def scroll(
        self,
        collection: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
    ) -> Iterator[StoredPoint]: ...

    @abc.abstractmethod
    def count(self, collection: str, filter: Filter | None = None) -> int: ...

    @abc.abstractmethod
    def search_dense(
        self, collection: str, vector: Sequence[float], limit: int, filter: Filter | None = None
    ) -> list[Hit]: ...

    @abc.abstractmethod
    def search_sparse(
        self, collection: str, vector: SparseVec, limit: int, filter: Filter | None = None
    ) -> list[Hit]: ...

    @abc.abstractmethod
    def flush(self, collection: str) -> None:
        """Make every acknowledged write durable before returning."""

    def optimize(self, collection: str) -> bool:
        """Build what search needs to stay fast (vector indexes) after writes; True if work was done.
        Servers do this in the background, so the default does nothing."""
        return False

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- derived helpers (same for every backend) ------------------------------------
    def ids_where(self, collection: str, filter: Filter) -> list[str]:
        return [p.id for p in self.scroll(collection, filter=filter)]

    def field_values(self, collection: str, key: str) -> set[Any]:
        """Distinct values of a payload field (e.g. every ``doc_id`` in the collection). A list
        field contributes its elements (every heading in ``section``), as filters match them."""
        values: set[Any] = set()
        for p in self.scroll(collection):
            value = p.payload.get(key)
            values.update(value if isinstance(value, list) else [value])
        return values - {None}

    def resolve(self, alias_or_name: str) -> str:
        return self.get_alias(alias_or_name) or alias_or_name
