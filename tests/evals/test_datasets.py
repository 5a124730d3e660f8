"""Dataset loading, corpus → files, golden sets and answer scoring (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.answers import contains_gold, evaluate_answers, normalize_answer
from evals.datasets import DatasetError, load_beir, materialize_corpus, safe_file_stem
from evals.golden import golden_dataset, load_golden
from tests.evals.conftest import TINY_CORPUS, TINY_QUERIES, write_beir


def test_load_beir_reads_queries_qrels_answers(tiny_beir: Path) -> None:
    ds = load_beir(tiny_beir, "test")
    assert set(ds.queries) == {"q1", "q2", "q3", "q4", "q5", "q6"}
    assert ds.qrels["q2"] == {"Volcano 2": 1}
    # q6 has no judgement: retrieval metrics must not average over it.
    assert set(ds.judged_queries()) == set(TINY_QUERIES)
    assert ds.answers is not None and ds.answers["q6"].answerable is False
    assert ds.corpus == tiny_beir.resolve() / "corpus.jsonl"
    assert ds.content_hash and len(ds.content_hash) == 16


def test_load_beir_errors_say_what_to_do(tmp_path: Path, tiny_beir: Path) -> None:
    with pytest.raises(DatasetError, match="available splits: test"):
        load_beir(tiny_beir, "dev")
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")
    no_corpus = write_beir(tmp_path / "nocorpus")
    with pytest.raises(DatasetError, match="--docs FOLDER"):
        load_beir(no_corpus)
    assert load_beir(no_corpus, docs=tmp_path).docs == tmp_path.resolve()
    (tiny_beir / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:2"):
        load_beir(tiny_beir)


def test_a_docs_dataset_reads_its_exclusions(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "site", corpus=TINY_CORPUS)
    docs = tmp_path / "html"
    docs.mkdir()
    plain = load_beir(root, docs=docs)
    assert plain.docs_exclude == []
    (root / "docs_exclude.txt").write_text("# build output\n_sources/\n\ngenindex*.html\n")
    ds = load_beir(root, docs=docs)
    assert ds.docs_exclude == ["_sources/", "genindex*.html"]
    assert ds.describe()["docs_exclude"] == ["_sources/", "genindex*.html"]
    assert ds.content_hash != plain.content_hash, "what the corpus leaves out changes the scores"
    assert load_beir(root).docs_exclude == [], "only a --docs folder is filtered"
    (root / "docs_exclude.txt").write_text("!keep.html\n")
    with pytest.raises(DatasetError, match=r"docs_exclude\.txt.*negated"):
        load_beir(root, docs=docs)


def test_safe_file_stems_are_unique_and_plain() -> None:
    assert safe_file_stem("4983") == "4983"
    assert safe_file_stem("doc-1.v2") == "doc-1.v2"
    odd = ["a/b", "a_b", "../etc/passwd", "Ünïcode id", ".hidden", "x" * 300, "trailing."]
    stems = [safe_file_stem(i) for i in odd]
    assert len(set(stems)) == len(stems)
    for s in stems:
        assert "/" not in s and not s.startswith(".") and len(s) <= 100 and s.isascii()


def test_materialize_corpus_round_trips_ids(tmp_path: Path, tiny_beir: Path) -> None:
    dest = tmp_path / "docs"
    renamed = materialize_corpus(tiny_beir / "corpus.jsonl", dest)
    files = sorted(p.name for p in dest.iterdir())
    assert len(files) == len(TINY_CORPUS)
    # Every file maps back to exactly its corpus id.
    back = {renamed.get(f[:-4], f[:-4]) for f in files}
    assert back == {d["_id"] for d in TINY_CORPUS}
    assert "photo/1" in renamed.values() and "tcp" not in renamed.values()
    text = (dest / "tcp.txt").read_text()
    assert text.startswith("TCP congestion control\n\nTCP senders halve")


def test_materialize_rejects_duplicate_ids(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(DatasetError, match="appears twice"):
        materialize_corpus(corpus, tmp_path / "out")


def test_golden_jsonl_and_yaml(tmp_path: Path) -> None:
    jl = tmp_path / "golden.jsonl"
    jl.write_text(
        "# comments and blank lines are fine\n\n"
        + json.dumps({"id": "a", "question": "Q1?", "sources": ["./x.md"], "answers": "42"})
        + "\n"
        + json.dumps({"question": "Q2?", "sources": []})
        + "\n"
    )
    items = load_golden(jl)
    assert [i.id for i in items] == ["a", "4"]
    assert items[0].sources == ["x.md"] and items[0].answers == ["42"]
    ds = golden_dataset(items, jl)
    assert ds.qrels == {"a": {"x.md": 1}}
    assert ds.answers is not None and ds.answers["4"].answerable is False
    yml = tmp_path / "golden.yaml"
    yml.write_text("questions:\n  - question: Q1?\n    sources: [x.md]\n")
    assert load_golden(yml)[0].sources == ["x.md"]
    yml.write_text("- question: Q1?\n  source: x.md\n")
    with pytest.raises(DatasetError, match="unknown key"):
        load_golden(yml)


def test_repository_golden_set_names_real_files() -> None:
    from rag.indexing.parsing import parse_bytes

    root = Path(__file__).resolve().parents[2]
    items = load_golden(root / "evals" / "golden.jsonl")
    assert len(items) >= 30
    unanswerable = [i for i in items if not i.sources]
    assert len(unanswerable) >= 8 and all(not i.answers for i in unanswerable)
    for item in items:
        for source in item.sources:
            path = root / "examples" / "docs" / source
            assert path.is_file(), f"{item.id}: {source} is not in examples/docs"
        if item.sources:
            # Every answerable question has expected answers, and one of its files says them.
            assert item.answers, f"{item.id}: no expected answers"
            texts = [
                normalize_answer(parse_bytes(p.read_bytes(), p.suffix.lower(), p.name).text)
                for p in (root / "examples" / "docs" / s for s in item.sources)
            ]
            assert any(normalize_answer(a) in t for a in item.answers for t in texts), (
                f"{item.id}: none of {item.answers} is in {item.sources}"
            )


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("The answer is 1685.", ["1685"], True),
        ("It was in 16850", ["1685"], False),
        ("A separate condenser!", ["the separate condenser"], True),
        ("no idea", ["condenser"], False),
        ("anything", [""], False),
    ],
)
def test_contains_gold(answer: str, gold: list[str], expected: bool) -> None:
    assert contains_gold(answer, gold) is expected


def test_normalize_answer_like_squad() -> None:
    assert normalize_answer("  The Eiffel-Tower, an icon. ") == "eiffeltower icon"


def test_answer_metrics_from_pipeline_results(tiny_beir: Path) -> None:
    # A stand-in for the query pipeline, with the result shape of QueryPipeline.run: the
    # scoring is what is under test here; the real pipeline runs in test_retrieval_eval.py.
    ds = load_beir(tiny_beir)
    assert ds.answers is not None
    scripted: dict[str, dict[str, Any]] = {
        "How do plants turn sunlight into chemical energy?": {
            "answer": "Plants make Glucose.",
            "abstained": False,
            "citations": [
                {"n": 1, "source": "photo/1", "verified": True},
                {"n": 2, "source": "3", "verified": False},
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10},
            "timings_ms": {"retrieve": 5.0},
        },
        "What happens when magma reaches the surface of the earth?": {
            "answer": "",
            "abstained": True,
            "citations": [],
            "usage": {"prompt_tokens": 50, "completion_tokens": 0},
        },
        "Who won the 1987 chess olympiad?": {
            "answer": "The documents do not say.",
            "abstained": True,
            "citations": [],
            "usage": {"prompt_tokens": 40, "completion_tokens": 6},
        },
    }

    def run(question: str) -> dict[str, Any]:
        if question not in scripted:
            raise RuntimeError("generator unavailable")
        return scripted[question]

    out = evaluate_answers(run, ds.queries, ds.answers, ds.qrels)
    assert out["questions"] == 3 and out["answerable"] == 2 and out["unanswerable"] == 1
    assert len(out["errors"]) == 3  # q3, q4, q5 raised; they are reported, not fatal
    assert out["answer_contains_gold"] == 0.5
    assert out["gold_cited"] == 0.5
    assert out["citation_precision"] == 0.5
    assert out["abstention_rate_unanswerable"] == 1.0
    assert out["false_abstention_rate_answerable"] == 0.5
    assert out["tokens_per_question"]["total"] == pytest.approx((110 + 50 + 46) / 3, abs=0.01)
    assert out["stage_ms_mean"] == {"retrieve": 5.0}
