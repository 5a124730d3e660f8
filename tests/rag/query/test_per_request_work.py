"""Work a request no longer does twice (issue 29, throughput; py-spy flame graphs in
benchmarks/results/): with ``generation.verify.question_vector: retrieval`` a full answer
embeds its question once (retrieval's query vector is the one the answer path compares with
the passages' sentence vectors: the document encoder took ~30 ms more per answer to embed it
again), and retrieval converts the payloads of the hits it
keeps only, not of its 2 x 100 candidates. Real MiniLM (its short-text path as configured),
real Qdrant Edge, the sample documents of examples/docs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.core.access import cli_reader, read_filter
from rag.core.config import DEFAULT_CONFIG, load_settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.query.pipeline import QueryPipeline
from rag.query.retrieve import Retriever, weighted_fuse
from rag.store import Hit

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "docs"
QUESTIONS = [
    "How long do we keep database backups?",
    "How  quickly must the primary on-call\nacknowledge a page?",  # spaces as a user types them
    "What is the rate limit of the free tier?",
    "What is the capital of Mongolia?",
]


@pytest.fixture()
def index(tmp_path: Path, embedder: Embedder) -> Iterator[Index]:
    docs = tmp_path / "docs"
    shutil.copytree(EXAMPLES, docs)
    settings = load_settings(
        DEFAULT_CONFIG,
        {
            "data_dir": str(tmp_path / "data"),
            "cache": {"enabled": False},
            "pii": {"enabled": False},
        },
    )
    idx = Index(settings, embedder=embedder)
    idx.open(create=True)
    Ingestor(idx).sync_folder(docs)
    yield idx
    idx.close()


def test_a_full_answer_embeds_its_question_once_with_the_retrieval_vector(index: Index) -> None:
    embedder = index.embedder
    texts: list[str] = []
    embed, embed_documents = embedder.embed, embedder.embed_documents

    def counting_embed(batch: list[str]) -> np.ndarray:
        texts.extend(batch)
        return embed(batch)

    def counting_embed_documents(batch: list[str]) -> np.ndarray:
        texts.extend(batch)
        return embed_documents(batch)

    embedder.embed = counting_embed  # type: ignore[method-assign,assignment]
    embedder.embed_documents = counting_embed_documents  # type: ignore[method-assign,assignment]
    try:
        # generation.verify.question_vector: retrieval (the default embeds it again: near ties)
        settings = index.settings.model_copy(deep=True)
        settings.generation.verify.question_vector = "retrieval"
        pipeline = QueryPipeline(index, settings)
        answers = [pipeline.run(q) for q in QUESTIONS]
    finally:
        del embedder.embed, embedder.embed_documents
    assert sum(not a.abstained for a in answers) >= 2  # answers were verified, not only abstained
    # Each question once (retrieval's query path); the passages' sentences are stored vectors.
    assert sorted(texts) == sorted(QUESTIONS), texts


def test_retrieval_fetches_the_payloads_of_the_hits_it_keeps_only(index: Index) -> None:
    store, settings = index.store, index.settings.retrieval
    assert settings.mode == "hybrid" and settings.fusion == "weighted"  # the reference below
    collection = index.collection
    assert collection is not None
    flt = read_filter(cli_reader(index.settings, None))
    with_payload: list[object] = []  # every hit or point that came back with its payload
    search_dense, search_sparse, retrieve = store.search_dense, store.search_sparse, store.retrieve

    def counted(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            with_payload.extend(x for x in out if x.payload)
            return out

        return call

    store.search_dense = counted(search_dense)  # type: ignore[method-assign]
    store.search_sparse = counted(search_sparse)  # type: ignore[method-assign]
    store.retrieve = counted(retrieve)  # type: ignore[method-assign]
    retriever = Retriever(index)
    try:
        for q in QUESTIONS:
            with_payload.clear()
            hits = retriever.run(q, top_k=5)
            assert len(hits) == 5 and all(h.payload.get("text") for h in hits)
            assert len(with_payload) <= 5, f"{len(with_payload)} payloads converted for 5 hits"
            # The same hits, scores and payloads as fusing the candidates searched with theirs.
            dense = search_dense(
                collection, index.embedder.embed_query(q).tolist(), settings.candidates, flt
            )
            sparse = search_sparse(
                collection, index.sparse.embed_query(q), settings.candidates, flt
            )
            want = weighted_fuse(
                [dense, sparse], [settings.dense_weight, settings.sparse_weight], 5
            )
            assert [_key(h) for h in hits] == [_key(h) for h in want]
    finally:
        del store.search_dense, store.search_sparse, store.retrieve


def _key(hit: Hit) -> tuple[str, float, dict[str, Any]]:
    return hit.id, round(hit.score, 6), hit.payload
