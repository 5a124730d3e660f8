"""``qdrant`` backend: ``qdrant-client`` against a server URL, or its local mode (a folder).

Same collection layout as the edge backend: dense + sparse (IDF) slots, payload indexes,
collection metadata holding the embedding identity, and real Qdrant aliases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from rag.store._convert import build_filter, point_vector, scroll_points, to_hit, to_point
from rag.store.base import (
    DENSE,
    INDEXED_FIELDS,
    SPARSE,
    Filter,
    Hit,
    SparseVec,
    StoredPoint,
    StoreError,
    VectorStore,
)

__all__ = ["QdrantStore"]


class QdrantStore(VectorStore):
    name = "qdrant"

    def __init__(self, url: str | None = None, path: str | None = None, api_key: str | None = None):
        if not url and not path:
            raise StoreError(
                "the qdrant backend needs store.url (a server) or store.path (local mode)"
            )
        self.url = url
        self.path = path
        self.api_key = api_key
        self._client: Any = None
        self._lock = threading.RLock()
        self._corpus_idf = True  # until a server says it has no corpus IDF

    @property
    def client(self) -> Any:
        if self._client is None:
            from qdrant_client import QdrantClient

            try:
                if self.url:
                    self._client = QdrantClient(url=self.url, api_key=self.api_key, timeout=30)
                else:
                    self._client = QdrantClient(path=self.path)
            except RuntimeError as exc:
                if "already accessed" in str(exc):
                    raise StoreError(
                        f"the local Qdrant folder {self.path} is open in another process (a running "
                        "`rag watch` or `rag serve`): stop it, or let the command ask it instead"
                    ) from exc
                raise
        return self._client

    @staticmethod
    def _filter(flt: Filter | None) -> Any:
        from qdrant_client import models

        return build_filter(
            flt,
            lambda key, value: models.FieldCondition(key=key, match=models.MatchValue(value=value)),
            lambda key, values: models.FieldCondition(key=key, match=models.MatchAny(any=values)),
            lambda must: models.Filter(must=must),
            lambda should: models.Filter(should=should),
        )

    # -- collections and aliases -----------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def create_collection(self, name: str, dimension: int, metadata: dict[str, Any]) -> None:
        from qdrant_client import models

        with self._lock:
            if self.client.collection_exists(name):
                raise StoreError(f"collection '{name}' already exists")
            self.client.create_collection(
                name,
                vectors_config={
                    DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                metadata={"dimension": dimension, **metadata},
            )
            if self.url:  # local mode has no payload indexes (and warns about them)
                for key in INDEXED_FIELDS:
                    self.client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD)

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self.client.delete_collection(name)

    def collection_metadata(self, name: str) -> dict[str, Any]:
        if not self.client.collection_exists(name):
            raise StoreError(f"collection '{name}' does not exist")
        meta = self.client.get_collection(name).config.metadata
        return dict(meta or {})

    def get_alias(self, alias: str) -> str | None:
        for a in self.client.get_aliases().aliases:
            if a.alias_name == alias:
                return str(a.collection_name)
        return None

    def switch_alias(self, alias: str, collection: str) -> None:
        from qdrant_client import models

        with self._lock:
            if not self.client.collection_exists(collection):
                raise StoreError(
                    f"cannot point alias '{alias}' at missing collection '{collection}'"
                )
            ops: list[Any] = []
            if self.get_alias(alias) is not None:
                ops.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
            # One request: Qdrant applies the alias operations atomically.
            self.client.update_collection_aliases(change_aliases_operations=ops)

    # -- points ----------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[StoredPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        structs = [
            models.PointStruct(
                id=p.id,
                vector=point_vector(
                    p, lambda indices, values: models.SparseVector(indices=indices, values=values)
                ),
                payload=p.payload,
            )
            for p in points
        ]
        with self._lock:
            self.client.upsert(collection, points=structs, wait=True)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if not ids:
            return
        with self._lock:
            self.client.delete(
                collection, points_selector=models.PointIdsList(points=list(ids)), wait=True
            )

    def set_payload(self, collection: str, payload: dict[str, Any], filter: Filter) -> None:
        from qdrant_client import models

        with self._lock:
            self.client.set_payload(
                collection,
                payload=payload,
                points=models.FilterSelector(filter=self._filter(filter)),
                wait=True,
            )

    def retrieve(
        self, collection: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]:
        if not ids:
            return []
        with self._lock:
            recs = self.client.retrieve(
                collection, ids=list(ids), with_payload=True, with_vectors=with_vectors
            )
        return [to_point(r, with_vectors) for r in recs]

    def scroll(
        self,
        collection: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
    ) -> Iterator[StoredPoint]:
        flt = self._filter(filter)

        def page(offset: Any) -> tuple[list[Any], Any]:
            with self._lock:
                recs, after = self.client.scroll(
                    collection,
                    scroll_filter=flt,
                    limit=batch_size,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            return recs, after

        return scroll_points(page, with_vectors)

    def count(self, collection: str, filter: Filter | None = None) -> int:
        with self._lock:
            return int(
                self.client.count(collection, count_filter=self._filter(filter), exact=True).count
            )

    def _query(
        self,
        collection: str,
        query: Any,
        using: str,
        limit: int,
        filter: Filter | None,
        search_params: Any = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        with self._lock:
            res = self.client.query_points(
                collection,
                query=query,
                using=using,
                limit=limit,
                query_filter=self._filter(filter),
                search_params=search_params,
                with_payload=with_payload,
            )
        return [to_hit(r) for r in res.points]

    def _live_idf(self) -> Any:
        """Search params that count IDF over the live points, where that takes asking.

        A server's global IDF statistics come from its sparse index, which goes on counting
        deleted and overwritten points until a vacuum; an everything-corpus (Qdrant 1.19+) is
        counted over live points, as local mode always counts (so it needs nothing)."""
        from qdrant_client import models

        if not self.url or not self._corpus_idf or not hasattr(models, "IdfCorpusParams"):
            return None
        return models.SearchParams(idf=models.IdfCorpusParams(corpus=models.Filter()))

    def search_dense(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        vec = list(map(float, vector))
        return self._query(collection, vec, DENSE, limit, filter, with_payload=with_payload)

    def search_sparse(
        self,
        collection: str,
        vector: SparseVec,
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        if not vector.indices:
            return []
        query = models.SparseVector(indices=vector.indices, values=vector.values)
        params = self._live_idf()
        if params is None:
            return self._query(collection, query, SPARSE, limit, filter, None, with_payload)
        try:
            return self._query(collection, query, SPARSE, limit, filter, params, with_payload)
        except UnexpectedResponse as exc:  # a server before 1.19 refuses the `idf` param
            if exc.status_code != 400 or "idf" not in str(exc).lower():
                raise
            self._corpus_idf = False
            return self._query(collection, query, SPARSE, limit, filter, None, with_payload)

    def flush(self, collection: str) -> None:
        # Server writes are acknowledged with wait=True (WAL-durable); local mode persists per op.
        return None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
