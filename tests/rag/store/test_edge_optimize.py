"""Edge has no background optimizer: a finished sync must build the HNSW index, or every search
stays a brute-force scan. A tiny indexing threshold makes the real engine build one here."""

from __future__ import annotations

import random
from pathlib import Path

from rag.core.config import load_settings
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.store import StoredPoint
from rag.store.edge import EdgeStore

DIM = 16


def _points(n: int) -> list[StoredPoint]:
    rng = random.Random(3)
    return [
        StoredPoint(
            id=f"00000000-0000-0000-0000-{i:012d}",
            payload={"doc_id": f"d{i}", "text_hash": f"h{i}", "tenant": "t"},
            dense=[rng.gauss(0, 1) for _ in range(DIM)],
        )
        for i in range(n)
    ]


def test_optimize_builds_the_index_and_keeps_results(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge", indexing_threshold_kb=1)
    store.create_collection("c", DIM, {})
    points = _points(400)
    store.upsert("c", points)
    queries = [p.dense for p in points[:20]]
    assert all(q is not None for q in queries)
    before = [[h.id for h in store.search_dense("c", q or [], 5)] for q in queries]

    assert store.optimize("c") is True  # 400 x 16 floats = 25 KB > 1 KB: an index is built
    assert store.optimize("c") is False  # nothing left to do
    after = [[h.id for h in store.search_dense("c", q or [], 5)] for q in queries]
    assert [a[0] for a in after] == [p.id for p in points[:20]]  # each point finds itself first
    overlap = sum(len(set(a) & set(b)) for a, b in zip(after, before, strict=False)) / (
        5 * len(queries)
    )
    assert overlap >= 0.95
    store.close()

    reopened = EdgeStore(tmp_path / "edge", indexing_threshold_kb=1)  # the override loads too
    assert reopened.count("c") == 400
    assert reopened.optimize("c") is False
    reopened.close()


def test_default_threshold_leaves_small_collections_alone(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge")
    store.create_collection("c", DIM, {})
    store.upsert("c", _points(400))
    assert store.optimize("c") is False  # below Qdrant's threshold brute force is as fast
    store.close()


def test_a_finished_sync_optimizes(tmp_path: Path, monkeypatch: object) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"d{i}.md").write_text(
            f"# Doc {i}\n\nPayments retry {i} times before paging the on-call engineer.\n"
        )
    settings = load_settings(
        overrides={"data_dir": str(tmp_path / "data"), "store": {"indexing_threshold_kb": 1}}
    )
    index = Index(settings)
    index.open(create=True)
    calls: list[bool] = []
    real = index.store.optimize
    index.store.optimize = lambda c: calls.append(real(c)) or calls[-1]  # type: ignore[method-assign]
    ingestor = Ingestor(index)
    ingestor.sync_folder(docs)
    assert calls == [True]  # 3 x 384 floats = 4.5 KB > 1 KB
    ingestor.sync_folder(docs)  # unchanged: no optimize call at all
    assert calls == [True]
    index.close()
