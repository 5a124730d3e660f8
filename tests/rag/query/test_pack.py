"""Packing: merge neighbours, drop duplicates, keep rank order, never exceed the token budget."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.generate import TokenCounter
from rag.query.pack import Packer, PackingError, passages_from_hits
from rag.store import Hit

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
]


def _smollm2_counter() -> TokenCounter:
    # The real tokenizer the local backend packs with (llama.cpp is a dependency: no fallback).
    from rag.core.config import LocalGeneratorSettings
    from rag.generate.local import local_token_counter

    return local_token_counter(LocalGeneratorSettings())


WORD_COUNT = TokenCounter(lambda t: t.split())
# Resolved inside the test: a broken tokenizer fails its own case instead of vanishing from it.
COUNTERS: dict[str, Callable[[], Callable[[str], int]]] = {
    "words": lambda: WORD_COUNT,
    "smollm2": _smollm2_counter,
}


def _hit(
    doc: str, text_of_doc: str, start: int, end: int, score: float, section: list[str] | None = None
) -> Hit:
    text = text_of_doc[start:end]
    return Hit(
        id=f"{doc}:{start}",
        score=score,
        payload={
            "doc_id": doc,
            "source": f"{doc}.md",
            "title": doc.title(),
            "section": section or [doc.title()],
            "page": None,
            "start": start,
            "end": end,
            "text": text,
            "text_hash": f"h-{doc}-{start}-{end}",
        },
    )


DOC = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"


def test_overlapping_chunks_of_one_document_merge_exactly() -> None:
    a = _hit("d", DOC, 0, 23, 0.9)  # "one two three four five"
    b = _hit("d", DOC, 14, 40, 0.8)  # overlaps "four five"
    other = _hit("e", DOC, 0, 10, 0.85)
    passages = passages_from_hits([a, other, b])
    assert [p.doc_id for p in passages] == ["d", "e"]
    merged = passages[0]
    assert merged.text == DOC[0:40] and (merged.start, merged.end) == (0, 40)
    assert merged.chunk_ids == ["d:0", "d:14"] and merged.rank == 0


def test_contained_and_duplicate_chunks_are_dropped() -> None:
    a = _hit("d", DOC, 0, 40, 0.9)
    inside = _hit("d", DOC, 4, 13, 0.8)
    dup = Hit(
        id="copy", score=0.7, payload={**a.payload, "doc_id": "copy-of-d", "source": "copy.md"}
    )
    passages = passages_from_hits([a, inside, dup])
    assert len(passages) == 1 and passages[0].text == DOC[0:40]


def test_neighbours_across_a_heading_or_a_gap_stay_apart() -> None:
    text = "# A\n\nfirst part.\n\n# B\n\nsecond part."
    a = _hit("d", text, 0, 16, 0.9, ["A"])
    b = _hit("d", text, 16, len(text), 0.8, ["B"])
    assert [p.section for p in passages_from_hits([a, b])] == [["A"], ["B"]]
    gap = _hit("d", text, 18, len(text), 0.8, ["A"])
    assert len(passages_from_hits([a, gap])) == 2


def test_a_bridge_chunk_joins_two_passages() -> None:
    a = _hit("d", DOC, 0, 13, 0.9)
    c = _hit("d", DOC, 24, 40, 0.8)
    bridge = _hit("d", DOC, 8, 29, 0.7)
    passages = passages_from_hits([a, c, bridge])
    assert len(passages) == 1 and passages[0].text == DOC[0:40]


def test_rank_order_and_numbering() -> None:
    hits = [_hit(f"doc{i}", DOC, 0, 30, 1.0 - i / 10) for i in range(4)]
    ctx = Packer(WORD_COUNT).pack(hits, budget=1000)
    assert [p.n for p in ctx.passages] == [1, 2, 3, 4]
    assert [p.doc_id for p in ctx.passages] == ["doc0", "doc1", "doc2", "doc3"]
    assert ctx.text.startswith("[1] Doc0") and "\n\n[2] Doc1" in ctx.text


def test_a_passage_too_big_is_skipped_for_smaller_later_ones() -> None:
    long_doc = " ".join(WORDS * 10)
    hits = [
        _hit("small1", DOC, 0, 30, 0.9),
        _hit("big", long_doc, 0, len(long_doc), 0.8),
        _hit("small2", DOC, 0, 30, 0.7),
    ]
    ctx = Packer(WORD_COUNT).pack(hits, budget=30)
    assert [p.doc_id for p in ctx.passages] == ["small1", "small2"] and ctx.dropped == 1
    assert [p.n for p in ctx.passages] == [1, 2]


def test_first_passage_is_cut_rather_than_dropping_everything() -> None:
    long_doc = " ".join(WORDS * 10)
    ctx = Packer(WORD_COUNT).pack([_hit("big", long_doc, 0, len(long_doc), 0.9)], budget=12)
    assert len(ctx.passages) == 1 and 0 < len(ctx.passages[0].text) < len(long_doc)
    p = ctx.passages[0]
    assert long_doc[p.start : p.end] == p.text, "offsets still point at the text shown"
    assert ctx.tokens <= 12


def test_budget_too_small_for_any_passage_says_what_to_change() -> None:
    with pytest.raises(PackingError, match="context_window"):
        Packer(WORD_COUNT).pack([_hit("d", DOC, 0, 30, 0.9)], budget=2)


def test_nothing_retrieved_packs_nothing() -> None:
    ctx = Packer(WORD_COUNT).pack([], budget=100)
    assert ctx.passages == [] and ctx.text == "" and ctx.tokens == 0


@st.composite
def _retrieval(draw: st.DrawFn) -> tuple[list[Hit], dict[str, str]]:
    docs: dict[str, str] = {}
    hits: list[Hit] = []
    for d in range(draw(st.integers(1, 4))):
        words = draw(
            st.lists(
                st.sampled_from([*WORDS, "Ünïcode", "naïve", "—", "42", "x" * 30]),
                min_size=3,
                max_size=120,
            )
        )
        text = " ".join(words)
        docs[f"doc{d}"] = text
        for _ in range(draw(st.integers(1, 5))):
            start = draw(st.integers(0, max(0, len(text) - 2)))
            end = draw(st.integers(start + 1, len(text)))
            if text[start:end].strip():
                hits.append(_hit(f"doc{d}", text, start, end, draw(st.floats(0, 1))))
    order = draw(st.permutations(range(len(hits))))
    return [hits[i] for i in order], docs


@pytest.mark.parametrize("counter_name", sorted(COUNTERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_retrieval(), budget=st.integers(25, 600))
def test_never_over_budget_never_empty(
    counter_name: str, data: tuple[list[Hit], dict[str, str]], budget: int
) -> None:
    hits, docs = data
    count = COUNTERS[counter_name]()
    ctx = Packer(count).pack(hits, budget)
    assert count(ctx.text) == ctx.tokens <= budget
    if hits:
        assert ctx.passages, "something was retrieved, so the context must not be empty"
    ranks = [p.rank for p in ctx.passages]
    assert ranks == sorted(ranks), "passages keep retrieval rank order"
    assert [p.n for p in ctx.passages] == list(range(1, len(ctx.passages) + 1))
    for p in ctx.passages:
        assert docs[p.doc_id][p.start : p.start + len(p.text)] == p.text, (
            "passage text is the document's own text"
        )
    spans = sorted((p.doc_id, p.start, p.end) for p in ctx.passages)
    for (d1, _, e1), (d2, s2, _) in itertools.pairwise(spans):
        assert d1 != d2 or s2 > e1, "no two passages of one document overlap"
