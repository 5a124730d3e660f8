"""Rerankers: a real (tiny, randomly initialised, built here) CrossEncoder, and the embedding re-scorer."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.core.config import RerankSettings
from rag.indexing.embedding import Embedder
from rag.query.rerank import CrossEncoderReranker, EmbeddingReranker, RerankError, build_reranker
from rag.store import Hit

TEXTS = [
    "The Eiffel Tower was built between 1887 and 1889.",
    "Berlin is the capital of Germany.",
    "Backups are kept for 35 days in a second region.",
    "Laptops are replaced every three years.",
    "New employees receive 25 days of paid vacation.",
    "The tower is 330 metres tall.",
]


def _hits() -> list[Hit]:
    return [Hit(id=f"h{i}", score=1.0 - i * 0.1, payload={"text": t}) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A 2-layer BERT with a 1-logit head, random weights, MiniLM's tokenizer: no download."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(embedder.model_dir), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _reference_scores(folder: Path, query: str, texts: list[str]) -> list[float]:
    """The model's logits computed with plain transformers, independently of the reranker."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        batch = tok([query] * len(texts), texts, padding=True, truncation=True, return_tensors="pt")
        return [float(x) for x in model(**batch).logits[:, 0]]


def test_cross_encoder_orders_by_the_models_scores(tiny_cross_encoder: Path) -> None:
    query = "When was the tower built?"
    reranker = build_reranker(
        RerankSettings(backend="cross-encoder", model_path=str(tiny_cross_encoder), candidates=10)
    )
    assert isinstance(reranker, CrossEncoderReranker)
    out = reranker.rerank(query, _hits(), top_k=6)
    ref = _reference_scores(tiny_cross_encoder, query, TEXTS)
    expected = sorted(range(len(TEXTS)), key=lambda i: -ref[i])
    assert [h.id for h in out] == [f"h{i}" for i in expected]
    # A cross-encoder's raw logit activation may differ (sigmoid), never its order.
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)


def test_only_candidates_are_rescored_the_rest_keep_their_place(tiny_cross_encoder: Path) -> None:
    reranker = build_reranker(
        RerankSettings(backend="cross-encoder", model_path=str(tiny_cross_encoder), candidates=3)
    )
    out = reranker.rerank("tower", _hits(), top_k=5)
    assert {h.id for h in out[:3]} == {"h0", "h1", "h2"}
    assert [h.id for h in out[3:]] == ["h3", "h4"], (
        "beyond the candidates the retrieval order stays; top_k cuts"
    )


def test_cross_encoder_needs_a_local_folder(tmp_path: Path) -> None:
    with pytest.raises(RerankError, match="model_path is not set"):
        build_reranker(RerankSettings(backend="cross-encoder"))
    reranker = build_reranker(
        RerankSettings(backend="cross-encoder", model_path=str(tmp_path / "missing"))
    )
    with pytest.raises(RerankError, match="is not a folder"):
        reranker.warm_up()


def test_none_keeps_order_and_cuts() -> None:
    out = build_reranker(RerankSettings(backend="none")).rerank("q", _hits(), top_k=2)
    assert [h.id for h in out] == ["h0", "h1"]


def test_embedding_reranker_finds_the_answering_sentence_inside_a_long_chunk(
    embedder: Embedder,
) -> None:
    noise = " ".join(TEXTS[1:5])
    hits = [
        Hit(
            id="generic",
            score=0.9,
            payload={"text": "Opening hours of museums in Paris vary by season."},
        ),
        Hit(
            id="buried",
            score=0.5,
            payload={"text": f"{noise} The Eiffel Tower was completed in 1889. {noise}"},
        ),
    ]
    reranker = EmbeddingReranker(RerankSettings(backend="embedding", weight=0.7), embedder)
    out = reranker.rerank("In which year was the Eiffel Tower completed?", hits, top_k=2)
    assert [h.id for h in out] == ["buried", "generic"]
    keep = EmbeddingReranker(RerankSettings(backend="embedding", weight=0.0), embedder)
    assert [
        h.id for h in keep.rerank("In which year was the Eiffel Tower completed?", hits, top_k=2)
    ] == ["generic", "buried"]
