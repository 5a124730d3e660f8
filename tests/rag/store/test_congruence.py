"""One suite, every backend: the edge engine and qdrant-client (local mode, the server code path)
must give the same answers on the same data."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.store import SparseVec, StoredPoint, StoreError, VectorStore
from rag.store.edge import EdgeStore
from rag.store.qdrant import QdrantStore

DIM = 8
BACKENDS = ["edge", "qdrant-local"]


def make_store(kind: str, root: Path) -> VectorStore:
    if kind == "edge":
        return EdgeStore(root / "edge")
    return QdrantStore(path=str(root / "qdrant"))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = make_store(request.param, tmp_path)
    yield s
    s.close()


def _points(n: int, seed: int = 7) -> list[StoredPoint]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    out = []
    for i in range(n):
        vec = [rng.uniform(-1, 1) for _ in range(DIM)]
        terms = sorted({rng.randrange(1000) for _ in range(3)})
        out.append(
            StoredPoint(
                id=f"00000000-0000-0000-0000-{i:012d}",
                payload={
                    "doc_id": f"d{i % 5}",
                    "text_hash": f"h{i}",
                    "tenant": "t1" if i % 2 else "t2",
                    "text": words[i % 6],
                },
                dense=vec,
                sparse=SparseVec(terms, [1.0 + (i % 3)] * len(terms)),
            )
        )
    return out


def test_collection_metadata_and_alias(store: VectorStore) -> None:
    store.create_collection("kb_v1", DIM, {"embedding": {"model": "m", "dimension": DIM}})
    assert store.list_collections() == ["kb_v1"]
    assert store.collection_metadata("kb_v1")["embedding"] == {"model": "m", "dimension": DIM}
    assert store.get_alias("kb") is None
    store.switch_alias("kb", "kb_v1")
    assert store.get_alias("kb") == "kb_v1"
    store.create_collection("kb_v2", DIM, {})
    store.switch_alias("kb", "kb_v2")
    assert store.get_alias("kb") == "kb_v2"
    with pytest.raises(StoreError):
        store.create_collection("kb_v2", DIM, {})
    with pytest.raises(StoreError):
        store.switch_alias("kb", "missing")
    store.delete_collection("kb_v1")
    assert store.list_collections() == ["kb_v2"]


def test_upsert_is_idempotent_and_filters_work(store: VectorStore) -> None:
    store.create_collection("c", DIM, {})
    pts = _points(20)
    store.upsert("c", pts)
    store.upsert("c", pts)  # same ids again: no duplicates
    store.flush("c")
    assert store.count("c") == 20
    assert store.count("c", {"tenant": "t1"}) == 10
    assert store.count("c", {"doc_id": ["d0", "d1"]}) == 8
    assert sorted(store.ids_where("c", {"doc_id": "d3"})) == sorted(
        p.id for p in pts if p.payload["doc_id"] == "d3"
    )
    assert store.field_values("c", "doc_id") == {"d0", "d1", "d2", "d3", "d4"}
    got = store.retrieve("c", [pts[3].id], with_vectors=True)[0]
    assert got.payload == pts[3].payload
    assert got.sparse is not None and got.sparse.indices == pts[3].sparse.indices  # type: ignore[union-attr]
    assert got.dense is not None and len(got.dense) == DIM
    store.delete("c", [p.id for p in pts[:5]])
    assert store.count("c") == 15
    assert store.retrieve("c", [pts[0].id]) == []
    assert len(list(store.scroll("c", batch_size=4))) == 15


def test_backends_agree_on_search(tmp_path: Path) -> None:
    pts = _points(60, seed=3)
    rng = random.Random(11)
    queries = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(5)]
    results: dict[str, list[list[str]]] = {}
    sparse_results: dict[str, list[list[str]]] = {}
    for kind in BACKENDS:
        s = make_store(kind, tmp_path / kind)
        s.create_collection("c", DIM, {})
        s.upsert("c", pts)
        s.flush("c")
        results[kind] = [
            [h.id for h in s.search_dense("c", q, 10, {"tenant": "t1"})] for q in queries
        ]
        sparse_results[kind] = [
            [h.id for h in s.search_sparse("c", SparseVec(pts[i].sparse.indices, [1.0] * 3), 5)]  # type: ignore[union-attr]
            for i in (0, 7, 21)
        ]
        assert all(
            h.payload["tenant"] == "t1"
            for h in s.search_dense("c", queries[0], 10, {"tenant": "t1"})
        )
        s.close()
    assert results["edge"] == results["qdrant-local"]
    # Sparse scores tie often on this tiny corpus: compare as sets of the top hits.
    for a, b in zip(sparse_results["edge"], sparse_results["qdrant-local"], strict=False):
        assert a[0] == b[0] or set(a) & set(b)


def test_sparse_search_uses_idf(store: VectorStore) -> None:
    """A rare term must outrank a common one: IDF is applied by the engine."""
    store.create_collection("c", DIM, {})
    common, rare = 1, 2
    pts = [
        StoredPoint(
            id=f"00000000-0000-0000-0000-{i:012d}",
            payload={"i": i},
            dense=[1.0] * DIM,
            sparse=SparseVec([common], [1.0]),
        )
        for i in range(10)
    ]
    pts.append(
        StoredPoint(
            id="00000000-0000-0000-0000-000000000099",
            payload={"i": 99},
            dense=[1.0] * DIM,
            sparse=SparseVec([rare], [1.0]),
        )
    )
    store.upsert("c", pts)
    hits = store.search_sparse("c", SparseVec([common, rare], [1.0, 1.0]), 3)
    assert hits[0].payload["i"] == 99
    assert store.search_sparse("c", SparseVec([], []), 3) == []
