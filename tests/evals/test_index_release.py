"""Index releases: ``rag reindex`` switches the alias only when the new collection is no worse.

Real parts throughout: the example documents indexed in a Qdrant Edge store with the MiniLM
embedder, the golden set (``evals/golden.jsonl``) answered by the extractive chain. The worse
setting is 16-token chunks without overlap: retrieval still finds the right files (doc-level
recall stays 1.0 here) but the answers lose their sentences (answer_contains_gold 0.907 ->
0.791 measured when this was written), far past ``evals.regression_threshold`` 0.02.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from evals.releases import index_gate
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "docs"
WORSE = {"chunk_tokens": 16, "overlap_tokens": 0}
# The after-reindex suite is another test's matter; the gate runs whatever this says.
QUIET = {"evals": {"after_sync": False, "verify": False}}


def _index(settings: Settings, embedder: Embedder) -> Index:
    index = Index(settings, embedder=embedder)
    index.open()
    return index


def test_a_worse_index_is_refused_and_an_equal_one_promoted(
    tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    first = _index(tmp_settings(**QUIET), embedder)
    try:
        Ingestor(first).sync_folder(EXAMPLES)
        live = first.collection
    finally:
        first.close()

    worse = _index(tmp_settings(chunking=WORSE, **QUIET), embedder)
    try:
        messages: list[str] = []
        result = reindex(worse, gate=index_gate(echo=messages.append))
        assert result["promoted"] is False
        assert worse.store.get_alias(worse.alias) == live, "the old collection keeps serving"
        assert result["collection"] == live and result["candidate"] != live
        assert result["candidate"] not in worse.store.list_collections(), "candidate dropped"
        regressed = {r["metric"] for r in result["regressions"]}
        assert "answers.answer_contains_gold" in regressed, result["regressions"]
        assert "answers.answer_contains_gold" in result["reason"]
        assert "evals.regression_threshold" in result["reason"]
        # the report of the gate holds both collections side by side, and says why
        report = json.loads(Path(result["gate"]["report"]).with_name("report.json").read_text())
        assert report["trigger"] == "reindex-gate"
        assert set(report["variants"]) == {
            f"collection:{live}",
            f"collection:{result['candidate']}",
        }
        assert any("refused" in n for n in report["notes"])
        assert any("refused" in m for m in messages)
        # the same reindex, forced: switched, its regressions still reported
        forced = reindex(worse, gate=index_gate(echo=messages.append), force=True)
        assert forced["promoted"] and forced["forced"] and forced["regressions"]
        assert worse.store.get_alias(worse.alias) == forced["collection"] != live
        forced_live = forced["collection"]
    finally:
        worse.close()

    # Back to the configured chunking: better than the forced 16-token index, promoted; and
    # once more (equal to the live one): promoted too.
    same = _index(tmp_settings(**QUIET), embedder)
    try:
        better = reindex(same, gate=index_gate())
        assert better["promoted"] and not better["regressions"] and not better["forced"]
        equal = reindex(same, gate=index_gate())
        assert equal["promoted"] and not equal["regressions"], equal
        assert same.store.get_alias(same.alias) == equal["collection"] != forced_live
    finally:
        same.close()


def test_cli_reindex_refused_exits_3_with_json(
    tmp_settings: Callable[..., Settings], embedder: Embedder, rag_cli: object, tmp_path: Path
) -> None:
    settings = tmp_settings(**QUIET)
    index = _index(settings, embedder)
    try:
        Ingestor(index).sync_folder(EXAMPLES)
        live = index.collection
    finally:
        index.close()
    env = {
        "RAG_CHUNKING__CHUNK_TOKENS": "16",
        "RAG_CHUNKING__OVERLAP_TOKENS": "0",
        "RAG_EVALS__AFTER_SYNC": "false",
    }
    data_dir = settings.resolved_data_dir()
    proc = rag_cli.run(  # type: ignore[attr-defined]
        "reindex", "--json", data_dir=data_dir, env=env, check=False, timeout=400
    )
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["promoted"] is False and out["collection"] == live
    assert "answers.answer_contains_gold" in {r["metric"] for r in out["regressions"]}
    status = rag_cli.json("status", "--json", data_dir=data_dir, env=env)  # type: ignore[attr-defined]
    assert status["collection"] == live
