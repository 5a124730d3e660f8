"""Small BEIR-layout datasets written per test (never the shared datasets: tests stay fast)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# Eight documents on unrelated topics; ids that are not file names exercise the id mapping.
TINY_CORPUS = [
    {
        "_id": "photo/1",
        "title": "Photosynthesis",
        "text": "Green plants capture sunlight with chlorophyll and turn light energy, water and carbon dioxide into glucose and oxygen.",
    },
    {
        "_id": "Volcano 2",
        "title": "Volcanic eruptions",
        "text": "When molten magma rises through the crust and reaches the surface it erupts as lava, ash and volcanic gas.",
    },
    {
        "_id": "3",
        "title": "Sourdough",
        "text": "Sourdough bread is leavened by a starter of wild yeast and lactic acid bacteria that ferments the dough overnight.",
    },
    {
        "_id": "tcp",
        "title": "TCP congestion control",
        "text": "TCP senders halve their congestion window when packets are lost, slowing down to relieve a congested network.",
    },
    {
        "_id": "aqueduct",
        "title": "Roman aqueducts",
        "text": "The Romans built aqueducts, stone channels with a gentle downhill gradient, to carry fresh water into their cities.",
    },
    {
        "_id": "bees",
        "title": "The waggle dance",
        "text": "Honeybee foragers perform a waggle dance in the hive to tell their sisters the direction and distance of flowers.",
    },
    {
        "_id": "blackhole",
        "title": "Black holes",
        "text": "A black hole is a region of spacetime where gravity is so strong that not even light can escape its event horizon.",
    },
    {
        "_id": "knit",
        "title": "Knitting",
        "text": "Knitting interlocks loops of yarn with two needles; purl and knit stitches combine into ribbing and cables.",
    },
]
TINY_QUERIES = {
    "q1": ("How do plants turn sunlight into chemical energy?", "photo/1"),
    "q2": ("What happens when magma reaches the surface of the earth?", "Volcano 2"),
    "q3": ("How do bees tell each other where flowers are?", "bees"),
    "q4": ("How did the Romans bring fresh water into their cities?", "aqueduct"),
    "q5": ("What makes a network sender slow down after packet loss?", "tcp"),
}
UNANSWERABLE = {"q6": "Who won the 1987 chess olympiad?"}
TINY_ANSWERS = {
    "q1": ["glucose"],
    "q2": ["lava"],
    "q3": ["waggle dance"],
    "q4": ["aqueducts"],
    "q5": ["congestion window"],
}


def write_beir(
    root: Path, corpus: list[dict[str, str]] | None = None, with_answers: bool = False
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    if corpus is not None:
        (root / "corpus.jsonl").write_text(
            "".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8"
        )
    queries = {qid: text for qid, (text, _) in TINY_QUERIES.items()} | UNANSWERABLE
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()),
        encoding="utf-8",
    )
    rows = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{doc}\t1" for q, (_, doc) in TINY_QUERIES.items()
    ]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if with_answers:
        answers = [{"_id": q, "answerable": True, "answers": TINY_ANSWERS[q]} for q in TINY_QUERIES]
        answers += [{"_id": q, "answerable": False, "answers": []} for q in UNANSWERABLE]
        (root / "answers.jsonl").write_text(
            "".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8"
        )
    return root


@pytest.fixture()
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", TINY_CORPUS, with_answers=True)


@pytest.fixture()
def tiny_docs(tmp_path: Path) -> Callable[[], tuple[Path, Path]]:
    """(dataset dir whose qrels name files, docs folder) — the ``--docs FOLDER`` layout."""

    def make() -> tuple[Path, Path]:
        docs = tmp_path / "docs"
        by_id = {d["_id"]: d for d in TINY_CORPUS}
        paths = {}
        for i, (cid, doc) in enumerate(by_id.items()):
            rel = f"{'science' if i % 2 else 'misc'}/{doc['title'].lower().replace(' ', '-')}.md"
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            (docs / rel).write_text(f"# {doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
            paths[cid] = rel
        root = write_beir(tmp_path / "tiny-docs")
        rows = ["query-id\tcorpus-id\tscore"] + [
            f"{q}\t{paths[doc]}\t1" for q, (_, doc) in TINY_QUERIES.items()
        ]
        (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return root, docs

    return make
