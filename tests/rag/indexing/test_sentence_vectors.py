"""Sentence vectors stored at ingest (rag/indexing/sentence_vectors.py): the answer path looks
them up instead of embedding every context sentence per question. Real MiniLM, real Qdrant
Edge, the sample documents of examples/docs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.core.config import DEFAULT_CONFIG, load_settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex
from rag.indexing.sentence_vectors import SentenceVectorFile, identity, text_key
from rag.indexing.status import collect_status
from rag.query.pipeline import QueryPipeline

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "docs"
QUESTIONS = [
    "How long do we keep database backups?",
    "In which region are backup copies stored?",
    "How quickly must the primary on-call acknowledge a page?",
    "What is the rate limit of the free tier?",
    "Who approves access to production?",
    "What is the capital of Mongolia?",
]


class CountingEmbedder:
    """The session's real embedder, counting the texts it is asked to embed (either way)."""

    def __init__(self, inner: Embedder):
        self._embed, self._embed_documents = inner.embed, inner.embed_documents
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self._embed(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self._embed_documents(texts)


def _index(tmp: Path, embedder: Embedder, name: str = "data") -> Index:
    settings = load_settings(
        DEFAULT_CONFIG,
        {"data_dir": str(tmp / name), "cache": {"enabled": False}, "pii": {"enabled": False}},
    )
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    return index


def _answers(index: Index, counter: CountingEmbedder) -> list[tuple[str, list[str], bool]]:
    """Each question's answer, cited quotes and abstention; the embedder counted meanwhile."""
    index.embedder.embed = counter.embed  # type: ignore[method-assign]
    index.embedder.embed_documents = counter.embed_documents  # type: ignore[method-assign]
    try:
        pipeline = QueryPipeline(index, index.settings)
        out = []
        for q in QUESTIONS:
            a = pipeline.run(q)
            out.append((a.answer, [c.quote for c in a.citations], a.abstained))
        return out
    finally:
        del index.embedder.embed, index.embedder.embed_documents


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(EXAMPLES, folder)
    return folder


def test_answers_with_stored_vectors_equal_computed_ones_and_embed_only_the_question(
    tmp_path: Path, docs: Path, embedder: Embedder
) -> None:
    index = _index(tmp_path, embedder)
    report = Ingestor(index).sync_folder(docs)
    assert report.sentences_embedded > report.embedded  # several sentences a chunk
    # Each step's time (benchmarks/ingest.py reports them per 1,000 chunks).
    steps = {"read", "parse", "chunk", "injection", "embed", "sentence_vectors", "upsert"}
    assert steps <= report.steps.keys() and all(v >= 0 for v in report.steps.values())
    stored = CountingEmbedder(embedder)
    with_stored = _answers(index, stored)
    # The same index without its sentence vectors: every context sentence embedded per question.
    assert index.collection is not None
    index.sentence_vectors.drop(index.collection)
    computed = CountingEmbedder(embedder)
    without = _answers(index, computed)
    assert with_stored == without
    assert sum(not abstained for _, _, abstained in with_stored) >= 4
    # Only the questions were embedded (for retrieval, and for the answer's similarities);
    # without stored vectors every sentence of every passage was, on every question.
    assert set(stored.texts) == set(QUESTIONS), stored.texts
    assert len(computed.texts) > 5 * len(QUESTIONS)
    index.close()


def test_an_older_index_answers_meanwhile_says_so_and_the_next_sync_fills_it(
    tmp_path: Path, docs: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    index = _index(tmp_path, embedder)
    Ingestor(index).sync_folder(docs)
    assert index.collection is not None
    complete = collect_status(index)["sentence_vectors"]
    assert complete["complete"] and complete["chunks"] == complete["of"] > 0
    # An index built before sentence vectors were stored: no file at all.
    index.sentence_vectors.drop(index.collection)
    status = collect_status(index)["sentence_vectors"]
    assert not status["complete"] and status["chunks"] == 0
    assert "rag reindex" in status["note"] and "next sync" in status["note"]
    counter = CountingEmbedder(embedder)
    answers = _answers(index, counter)  # still answered, by embedding per question
    assert sum(not abstained for _, _, abstained in answers) >= 4
    with caplog.at_level(logging.WARNING, logger="rag.indexing.ingest"):
        report = Ingestor(index).sync_folder(docs)
    assert report.embedded == 0 and report.sentences_embedded > 0
    assert any("no stored sentence vectors" in r.getMessage() for r in caplog.records)
    assert collect_status(index)["sentence_vectors"]["complete"]
    again = CountingEmbedder(embedder)
    assert _answers(index, again) == answers
    assert set(again.texts) == set(QUESTIONS)
    assert len(counter.texts) > 5 * len(QUESTIONS)
    # Nothing left to fill: the next sync embeds nothing.
    assert Ingestor(index).sync_folder(docs).sentences_embedded == 0
    index.close()


def test_reindex_stores_them_for_the_new_collection_and_drops_the_old_file(
    tmp_path: Path, docs: Path, embedder: Embedder
) -> None:
    index = _index(tmp_path, embedder)
    Ingestor(index).sync_folder(docs)
    first = index.collection
    assert first is not None and index.sentence_vectors.path(first).exists()
    second = reindex(index)["collection"]
    assert second != first and not index.sentence_vectors.path(first).exists()
    assert collect_status(index)["sentence_vectors"]["complete"]
    # An index built before they were stored: `rag reindex` builds them too.
    index.sentence_vectors.drop(second)
    assert not collect_status(index)["sentence_vectors"]["complete"]
    reindex(index)
    assert collect_status(index)["sentence_vectors"]["complete"]
    index.close()


def test_a_deleted_document_takes_its_sentence_vectors_along(
    tmp_path: Path, docs: Path, embedder: Embedder
) -> None:
    index = _index(tmp_path, embedder)
    Ingestor(index).sync_folder(docs)
    assert index.collection is not None
    file = index.sentence_vectors.file(index.collection)
    assert file is not None
    before = file.vector_count()
    (docs / "onboarding.md").unlink()
    Ingestor(index).sync_folder(docs)
    status = collect_status(index)["sentence_vectors"]
    assert status["complete"] and status["chunks"] == status["of"]
    assert 0 < file.vector_count() < before
    index.close()


def test_a_file_made_by_another_model_or_cutting_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "kb_v1.sqlite"
    first = SentenceVectorFile(path, identity("weights-a"))
    first.put({"c1": [text_key("A sentence here.")]}, {text_key("A sentence here."): np.ones(4)})
    assert first.get([text_key("A  sentence\nhere.")])  # whitespace runs read alike
    first.close()
    same = SentenceVectorFile(path, identity("weights-a"))
    assert same.chunk_count() == 1
    same.close()
    other = SentenceVectorFile(path, identity("weights-b"))
    assert other.chunk_count() == 0 and not other.get([text_key("A sentence here.")])
    other.close()
