"""``edge`` backend: Qdrant Edge (``qdrant-edge-py``), Qdrant's engine in process.

Layout under ``root``: ``collections/<name>/`` is one Edge shard plus ``rag-meta.json``;
``aliases.json`` maps alias → collection and is replaced atomically (``os.replace``).
A shard can be open in one process only; other processes ask that one (daemon control API).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.core.diskspace import allocate_holes, megabytes, unallocated_bytes
from rag.core.errors import DiskFullError
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

__all__ = ["EdgeStore"]

log = logging.getLogger(__name__)

_META = "rag-meta.json"


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _edge_value(value: str | int | bool) -> Any:
    """``value`` as qdrant-edge's ``MatchValue`` must be given it. Its bindings read a Python
    ``bool`` as an integer (``True`` is 1), so ``{"ocr": True}`` matched no boolean and
    ``{"page": True}`` matched page 1; numpy's bool is read as a boolean, as Qdrant means it."""
    if isinstance(value, bool):
        import numpy as np

        return np.bool_(value)
    return value


class EdgeStore(VectorStore):
    name = "edge"

    def __init__(self, root: str | Path, indexing_threshold_kb: int | None = None):
        self.root = Path(root)
        self.indexing_threshold_kb = indexing_threshold_kb
        self._shards: dict[str, Any] = {}
        self._lock = threading.RLock()

    # -- helpers -------------------------------------------------------------------
    def _cdir(self, name: str) -> Path:
        return self.root / "collections" / name

    def _shard(self, name: str) -> Any:
        import qdrant_edge as q

        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                path = self._cdir(name)
                if not (path / _META).exists():
                    raise StoreError(f"collection '{name}' does not exist under {self.root}")
                try:
                    # The threshold is the only setting that may change after creation.
                    override = None
                    if self.indexing_threshold_kb is not None:
                        override = self._config(int(self.collection_metadata(name)["dimension"]))
                    self._check_room_to_open(path / "shard")
                    shard = q.EdgeShard.load(str(path / "shard"), override)
                    self._index_fields(shard)
                except DiskFullError:
                    raise
                except Exception as exc:
                    if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                        raise StoreError(
                            f"the index at {path} is open in another process (a running `rag watch` or "
                            "`rag serve`): stop it, or run this command while it runs so it is asked instead"
                        ) from exc
                    raise
                self._shards[name] = shard
            return shard

    @staticmethod
    def _index_fields(shard: Any) -> None:
        """Payload indexes a collection made before a field was indexed lacks (``groups``)."""
        import qdrant_edge as q

        have = set(shard.info().payload_schema)
        missing = [k for k in INDEXED_FIELDS if k not in have]
        for key in missing:
            shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Keyword))
        if missing:
            shard.flush()

    def _config(self, dimension: int) -> Any:
        import qdrant_edge as q

        threshold = self.indexing_threshold_kb
        return q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            optimizers=q.EdgeOptimizersConfig(indexing_threshold=threshold)
            if threshold is not None
            else None,
        )

    @staticmethod
    def _filter(flt: Filter | None) -> Any:
        import qdrant_edge as q

        return build_filter(
            flt,
            lambda key, value: q.FieldCondition(key=key, match=q.MatchValue(_edge_value(value))),
            lambda key, values: q.FieldCondition(key=key, match=q.MatchAny(values)),
            lambda must: q.Filter(must=must),
            lambda should: q.Filter(should=should),
        )

    @staticmethod
    def _populated(shard: Path) -> list[Path]:
        """The files loading a shard populates (writes into, on tmpfs): the dense vectors and
        the payload indexes of each segment (measured on qdrant-edge 0.9: the WAL, payload and
        sparse-vector pages are left as they are)."""
        segments = shard / "segments"
        return [
            p
            for segment in (segments.iterdir() if segments.is_dir() else ())
            for p in (segment / f"vector_storage-{DENSE}", segment / "payload_index")
        ]

    def _check_room_to_open(self, shard: Path) -> None:
        """``DiskFullError`` when the volume has less free space than loading the shard may
        take: its populated files are sparse until loaded, and on a full tmpfs loading was a
        SIGBUS at every restart while the volume stayed full (seen). ``claim_space`` after
        each sync keeps those holes filled, so this refuses only an index never claimed."""
        holes = unallocated_bytes(self._populated(shard))
        if not holes:
            return
        free = shutil.disk_usage(shard).free
        if free < holes:
            raise DiskFullError(
                f"opening the index needs up to {megabytes(holes)} free on the data dir's "
                f"volume (its memory-mapped files are sparse until loaded) and {megabytes(free)} "
                "are: free space there and start again"
            )

    def claim_space(self, collection: str) -> None:
        shard = self._cdir(collection) / "shard"
        with self._lock:
            try:
                allocate_holes(self._populated(shard))
            except OSError as exc:  # no room now: the next sync tries again
                log.info("could not allocate the index's files ahead (%s)", exc)

    # -- collections and aliases -----------------------------------------------------
    def list_collections(self) -> list[str]:
        base = self.root / "collections"
        if not base.exists():
            return []
        return sorted(p.name for p in base.iterdir() if (p / _META).exists())

    def create_collection(self, name: str, dimension: int, metadata: dict[str, Any]) -> None:
        import qdrant_edge as q

        with self._lock:
            path = self._cdir(name)
            if (path / _META).exists():
                raise StoreError(f"collection '{name}' already exists")
            if path.exists():  # a half-created collection from a crash: start it again
                shutil.rmtree(path)
            path.mkdir(parents=True)
            shard = q.EdgeShard.create(str(path / "shard"), self._config(dimension))
            for key in INDEXED_FIELDS:
                shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Keyword))
            shard.flush()
            self._shards[name] = shard
            _atomic_write_json(path / _META, {"dimension": dimension, **metadata})

    def delete_collection(self, name: str) -> None:
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._cdir(name), ignore_errors=True)

    def collection_metadata(self, name: str) -> dict[str, Any]:
        path = self._cdir(name) / _META
        if not path.exists():
            raise StoreError(f"collection '{name}' does not exist under {self.root}")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _aliases(self) -> dict[str, str]:
        path = self.root / "aliases.json"
        if not path.exists():
            return {}
        data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def get_alias(self, alias: str) -> str | None:
        return self._aliases().get(alias)

    def switch_alias(self, alias: str, collection: str) -> None:
        with self._lock:
            if collection not in self.list_collections():
                raise StoreError(
                    f"cannot point alias '{alias}' at missing collection '{collection}'"
                )
            aliases = self._aliases()
            aliases[alias] = collection
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write_json(self.root / "aliases.json", aliases)

    # -- points ----------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[StoredPoint]) -> None:
        import qdrant_edge as q

        if not points:
            return
        edge_points = [q.Point(p.id, point_vector(p, q.SparseVector), p.payload) for p in points]
        with self._lock:
            self._shard(collection).update(q.UpdateOperation.upsert_points(edge_points))

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        import qdrant_edge as q

        if not ids:
            return
        with self._lock:
            self._shard(collection).update(q.UpdateOperation.delete_points(list(ids)))

    def set_payload(self, collection: str, payload: dict[str, Any], filter: Filter) -> None:
        import qdrant_edge as q

        with self._lock:
            self._shard(collection).update(
                q.UpdateOperation.set_payload_by_filter(self._filter(filter), payload)
            )

    def retrieve(
        self, collection: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]:
        if not ids:
            return []
        with self._lock:
            recs = self._shard(collection).retrieve(
                list(ids), with_payload=True, with_vector=with_vectors
            )
        return [to_point(r, with_vectors) for r in recs]

    def scroll(
        self,
        collection: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
    ) -> Iterator[StoredPoint]:
        import qdrant_edge as q

        flt = self._filter(filter)

        def page(offset: Any) -> tuple[list[Any], Any]:
            request = q.ScrollRequest(
                offset=offset,
                limit=batch_size,
                filter=flt,
                with_payload=True,
                with_vector=with_vectors,
            )
            with self._lock:
                recs, after = self._shard(collection).scroll(request)
            return recs, after

        return scroll_points(page, with_vectors)

    def count(self, collection: str, filter: Filter | None = None) -> int:
        import qdrant_edge as q

        with self._lock:
            return int(
                self._shard(collection).count(
                    q.CountRequest(filter=self._filter(filter), exact=True)
                )
            )

    def field_values(self, collection: str, key: str) -> set[Any]:
        import qdrant_edge as q

        if key not in INDEXED_FIELDS:  # a facet needs a payload index: scan the payloads
            return super().field_values(collection, key)
        with self._lock:
            resp = self._shard(collection).facet(
                q.FacetRequest(key=key, limit=10_000_000, exact=True)
            )
        return {h.value for h in resp.hits}

    def _query(
        self,
        collection: str,
        query: Any,
        limit: int,
        filter: Filter | None,
        params: Any = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        import qdrant_edge as q

        with self._lock:
            res = self._shard(collection).query(
                q.QueryRequest(
                    limit=limit,
                    query=query,
                    filter=self._filter(filter),
                    with_payload=with_payload,
                    params=params,
                )
            )
        return [to_hit(r) for r in res]

    def search_dense(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        import qdrant_edge as q

        query = q.Query.Nearest(list(map(float, vector)), using=DENSE)
        return self._query(collection, query, limit, filter, with_payload=with_payload)

    def search_sparse(
        self,
        collection: str,
        vector: SparseVec,
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        import qdrant_edge as q

        if not vector.indices:
            return []
        sv = q.SparseVector(vector.indices, vector.values)
        # IDF over the live points. The engine's global statistics come from the sparse index,
        # which goes on counting deleted and overwritten points until a vacuum rebuilds the
        # segment (every re-synced document leaves some): scores drifted from the collection's
        # real term rarity, and from the qdrant backend's local mode. An everything-corpus is
        # counted over live points.
        live = q.SearchParams(idf=q.IdfParams(corpus=q.Filter()))
        query = q.Query.Nearest(sv, using=SPARSE)
        return self._query(collection, query, limit, filter, live, with_payload)

    def flush(self, collection: str) -> None:
        with self._lock:
            self._shard(collection).flush()

    def optimize(self, collection: str) -> bool:
        # Edge has no background optimizer: until this runs, new points are searched by brute
        # force (19 ms instead of 7 ms per dense search at 100k chunks). Qdrant's planner decides
        # what to build; with nothing past its indexing threshold this returns at once. It holds
        # the GIL while it builds, so callers log it.
        with self._lock:
            return bool(self._shard(collection).optimize())

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                try:
                    shard.flush()
                finally:
                    shard.close()
            self._shards.clear()
