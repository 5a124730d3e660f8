"""Concurrent query encodes are batched, results go to the right caller, errors to every waiter."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rag.indexing.embedding import Embedder, QueryBatcher


def _slow_encoder(calls: list[list[str]]) -> object:
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        time.sleep(0.05)  # long enough for the other callers to queue up behind the first batch
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts])

    return encode


def test_concurrent_callers_share_batches_and_get_their_own_vectors() -> None:
    calls: list[list[str]] = []
    batcher = QueryBatcher(_slow_encoder(calls), max_batch=64)  # type: ignore[arg-type]
    texts = [f"question number {i}" * (1 + i % 3) for i in range(24)]
    start = threading.Barrier(len(texts))

    def ask(t: str) -> np.ndarray:
        start.wait()
        return batcher(t)

    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(ask, texts))
    for t, v in zip(texts, results, strict=True):
        assert v.tolist() == [float(len(t)), float(sum(map(ord, t)))]
    assert sorted(t for batch in calls for t in batch) == sorted(texts), (
        "each text encoded exactly once"
    )
    assert len(calls) < len(texts) / 2, f"callers were not batched: {[len(c) for c in calls]}"


def test_an_encoder_error_reaches_every_waiter_and_the_batcher_recovers() -> None:
    fail = threading.Event()
    fail.set()

    def encode(texts: list[str]) -> np.ndarray:
        time.sleep(0.02)
        if fail.is_set():
            raise RuntimeError("model crashed")
        return np.ones((len(texts), 2))

    batcher = QueryBatcher(encode)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher, f"q{i}") for i in range(8)]
        errors = [f.exception(timeout=10) for f in futures]
    assert all(isinstance(e, RuntimeError) for e in errors)
    fail.clear()
    assert batcher("again").tolist() == [1.0, 1.0]


def test_embed_query_equals_embedding_alone(embedder: Embedder) -> None:
    q = "How long are backups kept?"
    # Batched with others, a query gets the vector it gets alone (padding does not leak in).
    others = ["a much longer question about the restore drill and the second region " * 3, "x"]
    with ThreadPoolExecutor(3) as pool:
        vectors = list(pool.map(embedder.embed_query, [q, *others]))
    assert np.allclose(vectors[0], embedder.embed([q])[0], atol=2e-2)
    assert float(np.dot(vectors[0], embedder.embed([q])[0])) > 0.99


def test_the_scorers_lone_questions_share_batches_and_get_their_vector_alone(
    embedder: Embedder,
) -> None:
    """The answer path embeds each question with the document encoder (the one that made the
    stored sentence vectors): concurrent requests' questions of one token length go through
    it together, and each gets exactly the vector it gets alone (no padding: an answer does
    not depend on who else asked meanwhile)."""
    calls: list[list[str]] = []
    real = embedder.embed_documents

    def counted(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        time.sleep(0.05)  # the first batch is still running when the others arrive
        return real(texts)

    same = [f"How long are backups of system {i} kept?" for i in range(10)]
    longer = ["How long are the nightly database backups of the billing system kept?"] * 2
    texts = [*same, *longer, "Who?"]
    embedder.embed_documents = counted  # type: ignore[method-assign]
    try:
        start = threading.Barrier(len(texts))

        def ask(t: str) -> np.ndarray:
            start.wait()
            return embedder.embed_documents_batched([t])

        with ThreadPoolExecutor(len(texts)) as pool:
            results = list(pool.map(ask, texts))
    finally:
        del embedder.embed_documents
    assert len(calls) < len(texts) / 2, f"not batched: {[len(c) for c in calls]}"
    assert all(len({len(t) for t in batch}) == 1 for batch in calls), calls  # one length each
    for text, got in zip(texts, results, strict=True):
        assert got.shape == (1, embedder.dimension)
        assert np.array_equal(got[0], real([text])[0]), text
