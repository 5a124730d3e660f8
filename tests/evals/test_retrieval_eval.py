"""Retrieval evals end to end on tiny datasets: real ingestion, real MiniLM, real Qdrant Edge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evals.datasets import load_beir, open_dataset_index
from evals.metrics import average
from evals.retrieval import collapse_to_documents, evaluate_retrieval
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.store import Hit
from tests.evals.conftest import TINY_QUERIES


def test_collapse_keeps_each_document_at_its_best_chunk() -> None:
    hits = [
        Hit("c1", 0.9, {"source": "a.txt"}),
        Hit("c2", 0.8, {"source": "b.txt"}),
        Hit("c3", 0.7, {"source": "a.txt"}),
        Hit("c4", 0.6, {"source": "c.txt"}),
    ]
    docs, scores = collapse_to_documents(hits, lambda s: s.removesuffix(".txt"), limit=10)
    assert docs == ["a", "b", "c"] and scores == [0.9, 0.8, 0.6]
    assert collapse_to_documents(hits, lambda s: s, limit=2)[0] == ["a.txt", "b.txt"]


def test_corpus_jsonl_is_ingested_once_then_cached(
    tiny_beir: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    settings = tmp_settings()
    ds = load_beir(tiny_beir)
    first = open_dataset_index(settings, ds, embedder)
    try:
        assert not first.cached and first.documents == 8 and not first.failed
        result = evaluate_retrieval(
            first.index, ds.judged_queries(), ds.qrels, first.to_doc, top_k=5, mode="dense"
        )
    finally:
        first.close()
    # Queries were written to match one document each: MiniLM puts it first.
    assert result["queries"] == len(TINY_QUERIES)
    assert result["recall@1"] == 1.0 and result["ndcg@10"] == pytest.approx(1.0)
    by_id = {q["id"]: q for q in result["per_query"]}
    assert by_id["q2"]["ranked"][0] == "Volcano 2"  # ids with spaces and slashes map back
    assert by_id["q1"]["ranked"][0] == "photo/1"
    assert len(by_id["q1"]["ranked"]) == 5 and len(set(by_id["q1"]["ranked"])) == 5
    assert result["mrr@10"] == pytest.approx(average(q["mrr@10"] for q in result["per_query"]))
    assert result["latency_ms"]["p50"] > 0 and result["config"]["mode"] == "dense"
    assert set(result["recall_curve"]) == {"1", "2", "3", "5"}
    # Second open: same key, nothing embedded, nothing re-ingested.
    embedded_before = embedder.texts_embedded
    again = open_dataset_index(settings, ds, embedder)
    try:
        assert again.cached and again.cache_dir == first.cache_dir
        hybrid = evaluate_retrieval(
            again.index, ds.judged_queries(), ds.qrels, again.to_doc, top_k=5, mode="hybrid"
        )
    finally:
        again.close()
    assert embedder.texts_embedded - embedded_before == len(TINY_QUERIES)  # the queries only
    assert hybrid["recall@5"] == 1.0
    # Another chunking config is another index.
    other = open_dataset_index(
        tmp_settings(chunking={"chunk_tokens": 64, "overlap_tokens": 8}), ds, embedder
    )
    try:
        assert not other.cached and other.cache_dir != first.cache_dir
    finally:
        other.close()


def test_docs_folder_is_synced_incrementally(
    tiny_docs: Callable[[], tuple[Path, Path]],
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
) -> None:
    root, docs = tiny_docs()
    settings = tmp_settings()
    ds = load_beir(root, docs=docs)
    dsi = open_dataset_index(settings, ds, embedder)
    try:
        assert not dsi.cached and dsi.documents == 8
        result = evaluate_retrieval(dsi.index, ds.judged_queries(), ds.qrels, dsi.to_doc, top_k=10)
    finally:
        dsi.close()
    assert result["recall@10"] == 1.0
    assert all(q["ranked"][0].endswith(".md") for q in result["per_query"])
    (docs / "misc" / "knitting.md").write_text(
        "# Knitting\n\nCrochet uses a single hook instead.\n"
    )
    again = open_dataset_index(settings, ds, embedder)
    try:
        assert not again.cached  # the edited file was re-embedded...
        assert again.cache_dir == dsi.cache_dir  # ...in the same index
    finally:
        again.close()
    third = open_dataset_index(settings, ds, embedder)
    third.close()
    assert third.cached


def test_cli_eval_retrieval_json(
    tiny_beir: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import app
    from app.cli import eval as cli_eval

    # The CLI's own model loader, handed the session's warmed model (a second load costs ~25 s).
    monkeypatch.setattr(cli_eval, "load_embedder", lambda settings: embedder)
    runner = CliRunner()
    data_dir = tmp_path / "cli-data"
    args = [
        "--data-dir",
        str(data_dir),
        "eval",
        "retrieval",
        "--dataset",
        str(tiny_beir),
        "--top-k",
        "5",
    ]
    out = runner.invoke(app, [*args, "--json", "--per-query", "--report"])
    assert out.exit_code == 0, out.output
    data: dict[str, Any] = json.loads(out.stdout)
    for key in (
        "ndcg@10",
        "recall@1",
        "recall@5",
        "recall@10",
        "recall@100",
        "mrr@10",
        "queries",
        "latency_ms",
        "config",
    ):
        assert key in data
    assert data["queries"] == 5 and {"p50", "p95"} <= set(data["latency_ms"])
    assert data["per_query"][0]["ranked"] and data["per_query"][0]["scores"]
    assert data["index"]["cached"] is False
    assert Path(data["report"]).is_file()
    second = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert second["index"]["cached"] is True and "per_query" not in second
    assert second["ndcg@10"] == data["ndcg@10"]
    last = runner.invoke(app, ["--data-dir", str(data_dir), "eval", "last", "--json"])
    assert (
        last.exit_code == 0
        and json.loads(last.stdout)["metrics"]["tiny.ndcg@10"] == data["ndcg@10"]
    )
    bad = runner.invoke(app, [*args, "--split", "dev"])
    assert bad.exit_code == 2 and "available splits: test" in bad.output


def test_cli_eval_answers_runs_the_query_pipeline(
    tiny_beir: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import app
    from app.cli import eval as cli_eval

    monkeypatch.setattr(cli_eval, "load_embedder", lambda settings: embedder)
    # The extractive generator: the real query path without an LLM (seconds, not minutes, here).
    monkeypatch.setenv("RAG_GENERATION__CHAIN", '["extractive"]')
    out = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "d"),
            "eval",
            "answers",
            "--dataset",
            str(tiny_beir),
            "--json",
            "--per-query",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["questions"] == 6 and data["answerable"] == 5 and data["unanswerable"] == 1
    assert not data["errors"]
    for key in (
        "answer_contains_gold",
        "gold_cited",
        "citation_precision",
        "abstention_rate_unanswerable",
        "false_abstention_rate_answerable",
    ):
        assert key in data
    # Consistency of the aggregates with what each question got back.
    answerable = [q for q in data["per_query"] if q["answerable"]]
    assert data["false_abstention_rate_answerable"] == pytest.approx(
        sum(q["abstained"] for q in answerable) / len(answerable), abs=1e-6
    )
    cited = [q for q in answerable if not q["abstained"]]
    assert cited, "the extractive generator answered nothing"
    assert all(
        set(q["cited"])
        <= {"photo/1", "Volcano 2", "3", "tcp", "aqueduct", "bees", "blackhole", "knit"}
        for q in cited
    )
    assert data["gold_cited"] > 0 and data["latency_ms"]["p50"] > 0
