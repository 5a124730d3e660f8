"""The verify eval: the scripted OpenAI-compatible server, the cases, the judge, a small run.

The SQuAD generator is checked on a tiny SQuAD-layout set written here; the full sets run in
``rag eval verify`` (not in the suite: minutes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.chat_server import MODES, ChatRequest, ChatServer, by_question, parse_passages, resolve
from evals.verify import (
    KINDS,
    CaseSentence,
    VerifyCase,
    default_docs_cases,
    judge,
    load_cases,
    reword,
    run_verify,
    squad_cases,
    summarize,
)
from rag.core.config import Settings
from rag.indexing.embedding import Embedder

PROMPT = (
    "<passages>\n[1] Backup policy — Schedule\nBackups are retained for 35 days.\n\n"
    "[2] Security Handbook\nAPI keys are rotated every 90 days.\n</passages>\n\n"
    "Question: How long are backups kept?\nAnswer in one or two sentences."
)


def _request(prompt: str = PROMPT) -> ChatRequest:
    return ChatRequest.of({"messages": [{"role": "user", "content": prompt}]})


def test_the_server_reads_the_passages_and_the_question_it_was_sent() -> None:
    assert parse_passages(PROMPT) == {
        1: "[1] Backup policy — Schedule\nBackups are retained for 35 days.",
        2: "[2] Security Handbook\nAPI keys are rotated every 90 days.",
    }
    assert _request().question == "How long are backups kept?"


def test_placeholders_cite_the_passage_that_says_a_phrase_or_one_that_does_not() -> None:
    request = _request()
    assert resolve("Kept 35 days {cite:retained for 35  DAYS}.", request) == "Kept 35 days [1]."
    assert resolve("{cite_other:retained for 35 days}", request) == "[2]"
    assert resolve("{cite:35 days|rotated}{top} {n:rotated}", request) == "[1][2][1] 2"
    assert request.unresolved == []
    # a phrase no passage holds: passage 0 (none has it), and recorded as a retrieval miss
    assert resolve("{cite:tape archive}", request) == "[0]" and request.unresolved == [
        "tape archive"
    ]


def test_modes_are_functions_of_the_request() -> None:
    respond = by_question({"backups": "Backups: {cite:35 days}."}, default="No idea.")
    assert respond(_request()) == "Backups: [1]."
    assert respond(_request(PROMPT.replace("backups kept", "keys rotated"))) == "No idea."
    assert set(MODES) >= {"fixed", "by_question"}


@pytest.mark.parametrize("stream", [False, True])
def test_the_server_answers_streamed_and_not_over_http(stream: bool) -> None:
    with ChatServer(reply="Backups are retained for 35 days {cite:35 days}.") as server:
        body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
        r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=10)
        assert r.status_code == 200
        if stream:
            chunks = [
                json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")
            ]
            text = "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            )
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert text == "Backups are retained for 35 days [1]."
        assert server.last is not None and server.last.question == "How long are backups kept?"


def _case(kind: str, *sentences: CaseSentence) -> VerifyCase:
    return VerifyCase("c", "docs", "held_out", kind, "q?", list(sentences))


def _answer(text: str, sources: dict[int, str], **extra: Any) -> dict[str, Any]:
    citations = [{"n": n, "source": s} for n, s in sources.items()]
    return {"answer": text, "abstained": False, "citations": citations, **extra}


def test_the_judge_says_what_the_user_got() -> None:
    good = _case(
        "synthesis",
        CaseSentence("Backups are kept 35 days.", ["35 days"], source=["b.md"]),
        CaseSentence("They are encrypted.", ["encrypted"], source=["b.md"]),
    )
    whole = _answer("Backups are kept 35 days [1]. They are encrypted [1].", {1: "b.md"})
    assert judge(good, whole)["verdict"] == "kept_whole"
    half = _answer("Backups are kept 35 days [1].", {1: "b.md"})
    assert judge(good, half)["verdict"] == "partly"
    appended = _case(
        "appended",
        CaseSentence("Backups are kept 35 days.", ["35 days"], source=["b.md"]),
        CaseSentence("They go to tape.", ["35 days"], true=False),
    )
    shown = _answer("Backups are kept 35 days [1]. They go to tape.", {1: "b.md"})
    assert judge(appended, shown)["verdict"] == "shown", "shown uncited is still shown"
    marked = _answer("Backups are kept 35 days [1]. [unverified] They go to tape.", {1: "b.md"})
    assert judge(appended, marked)["verdict"] == "marked"
    assert judge(appended, half)["verdict"] == "stopped" and judge(appended, half)["true_part_kept"]
    wrong = _case("wrong_passage", CaseSentence("Keys rotate every 90 days.", source=["k.md"]))
    fixed = _answer("Keys rotate every 90 days [1].", {1: "k.md"})
    assert judge(wrong, fixed)["verdict"] == "fixed"
    assert judge(wrong, _answer("Keys rotate every 90 days [1].", {1: "b.md"}))["verdict"] == (
        "wrong_citation"
    )
    refused = {"answer": "The documents don't contain an answer to this.", "abstained": True}
    assert judge(wrong, refused)["verdict"] == "refused"


def test_the_hand_written_set_has_every_kind_in_both_halves() -> None:
    cases = load_cases(default_docs_cases())
    for kind in KINDS:
        halves = {c.half for c in cases if c.kind == kind}
        assert halves == {"tune", "held_out"}, kind
    assert len({c.id for c in cases}) == len(cases)
    # every placeholder phrase is the documents' own text
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    text = " ".join(
        " ".join(p.read_text(encoding="utf-8", errors="ignore").split())
        for p in docs.rglob("*")
        if p.suffix in (".md", ".txt", ".html")
    ).lower()
    phrases = [p for c in cases for s in c.sentences for p in [*s.cite, s.cite_other or ""] if p]
    plain = [p for p in phrases if "policies/" not in p]
    assert sum(p.lower() in text for p in plain) >= 0.7 * len(plain)  # the rest: pdf / docx


SQUAD_PARAGRAPHS = {
    "Towers-0": "The Eiffel Tower was built between 1887 and 1889 by Gustave Eiffel. "
    "It is 330 metres tall and stands in Paris. The tower was the tallest structure until 1930.",
    "Towers-1": "The tower has three levels for visitors. Tickets can be bought online.",
    "Bridges-0": "The Golden Gate Bridge opened in 1937. It spans the strait near San Francisco. "
    "The bridge was designed by Joseph Strauss and painted orange.",
    "Bridges-1": "Suspension bridges hang their deck from cables. Many were built in 1930s.",
}
SQUAD_QUESTIONS = [
    ("a1", "When was the Eiffel Tower built?", True, ["between 1887 and 1889"], "Towers-0"),
    ("a2", "How tall is the Eiffel Tower?", True, ["330 metres"], "Towers-0"),
    ("a3", "Who built the Eiffel Tower?", True, ["Gustave Eiffel"], "Towers-0"),
    ("a4", "Until when was it the tallest structure?", True, ["1930"], "Towers-0"),
    ("b1", "Who designed the Golden Gate Bridge?", True, ["Joseph Strauss"], "Bridges-0"),
    ("b2", "When did the Golden Gate Bridge open?", True, ["1937"], "Bridges-0"),
    ("ff0u", "Who painted the Eiffel Tower first?", False, [], None),
]


def _tiny_squad(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as f:
        for pid, text in SQUAD_PARAGRAPHS.items():
            f.write(json.dumps({"_id": pid, "title": pid.split("-")[0], "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as f, (root / "answers.jsonl").open("w") as a:
        for qid, text, answerable, answers, _ in SQUAD_QUESTIONS:
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
            a.write(json.dumps({"_id": qid, "answerable": answerable, "answers": answers}) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [
        f"{qid}\t{pid}\t1" for qid, *_, pid in SQUAD_QUESTIONS if pid
    ]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_squad_cases_are_generated_by_rules(tmp_path: Path) -> None:
    cases = squad_cases(_tiny_squad(tmp_path / "squad"))
    kinds = {c.kind for c in cases}
    assert kinds == {"synthesis", "wrong_value", "appended", "wrong_passage", "unanswerable"} | (
        {"paraphrase"} & kinds
    )
    # halves by article: a question's cases never straddle them
    halves = {c.id.rsplit("-", 1)[1]: c.half for c in cases}
    assert halves["a1"] != halves["b1"] and halves["a1"] == halves["a2"]
    wrong = {c.id.rsplit("-", 1)[1]: c.sentences[0] for c in cases if c.kind == "wrong_value"}
    assert wrong["a3"].say.startswith("The Eiffel Tower was built between 1887 and 1889 by Joseph")
    assert wrong["b1"].say == "The bridge was designed by Gustave Eiffel and painted orange."
    assert all(not s.true and s.cite for s in wrong.values())
    invented = next(c for c in cases if c.kind == "unanswerable").sentences[0]
    assert invented.cite_top and not invented.true
    for appended in (c for c in cases if c.kind == "appended"):
        # the unrelated sentence comes from the other article, cited like the true one
        article = "Towers" if appended.id.endswith(("a1", "a2", "a3", "a4")) else "Bridges"
        own = " ".join(v for k, v in SQUAD_PARAGRAPHS.items() if k.startswith(article))
        assert appended.sentences[1].say not in own
        assert appended.sentences[1].cite == appended.sentences[0].cite
    assert reword("In 1887, work began on the tower (in Paris).", "1887") == (
        "Work started on the tower in 1887."
    )


def test_a_small_run_over_the_example_documents(
    tmp_settings: Any, embedder: Embedder, tmp_path: Path
) -> None:
    """One case of each kind through the production path: the verdicts the issue asks for."""
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    chosen = {}
    for case in load_cases(default_docs_cases()):
        chosen.setdefault(case.kind, case)
    path = tmp_path / "cases.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": c.id,
                    "half": "held_out",
                    "kind": c.kind,
                    "question": c.question,
                    "sentences": [s.as_json() for s in c.sentences],
                }
            )
            + "\n"
            for c in chosen.values()
        )
    )
    settings: Settings = tmp_settings(evals={"after_sync": False})
    result = run_verify(settings, embedder, docs=docs, cases_path=path, stream=True)
    verdicts = {r["kind"]: r["verdict"] for r in result["per_case"]}
    assert verdicts == {
        "paraphrase": "kept_whole",
        "synthesis": "kept_whole",
        "wrong_value": "stopped",
        "appended": "stopped",
        "wrong_passage": "fixed",
        "unanswerable": "stopped",
    }, result["per_case"]
    assert result["stream_mismatches"] == 0 and result["goals_met"]
    assert summarize(result["per_case"], None)["cases"] == len(KINDS)


def test_the_default_report_shows_the_verify_figures_beside_the_others(
    tmp_settings: Any, embedder: Embedder
) -> None:
    """Over the example documents with the default golden set, the suite the daemon runs
    after a sync reports the verify figures (held-out half of the hand-written set)."""
    from evals.suite import run_default_suite
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor

    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    settings: Settings = tmp_settings(
        evals={"after_sync": False, "answers": False, "canary_samples": 4},
        injection={"enabled": False},
    )
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    try:
        Ingestor(index).sync_folder(docs)
        folder, report = run_default_suite(index, trigger="manual")
    finally:
        index.close()
    assert {"golden", "canary", "verify"} <= set(report["suites"])
    metrics = report["metrics"]
    assert metrics["verify.fabricated_shown"] == 0.0, report["suites"]["verify"]["worst"]
    assert metrics["verify.good_kept_whole"] >= 0.8
    assert "golden.recall@10" in metrics, "beside the others"
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "verify.good_kept_whole" in html, "the figures are in the report page"
    if report["suites"]["verify"]["worst"]:
        assert "the model wrote" in html, "failed cases are listed as the user saw them"
