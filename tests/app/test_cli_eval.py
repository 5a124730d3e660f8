"""Question selection of `rag eval answers`: --sample keeps the set's mix, --limit takes the head."""

from __future__ import annotations

from app.cli.eval import _limit_queries, _sample_queries


def test_sample_spreads_over_a_file_that_groups_its_kinds() -> None:
    # squad2's layout: 300 answerable questions first, then 100 unanswerable ones.
    queries = {f"{'a' if i < 300 else 'u'}{i}": "q" for i in range(400)}
    picked = list(_sample_queries(queries, 40))
    assert len(picked) == len(set(picked)) == 40
    assert sum(q.startswith("u") for q in picked) == 10, "a quarter unanswerable, as in the set"
    assert picked == list(_sample_queries(queries, 40)), "deterministic"
    assert _sample_queries(queries, 1000) == queries and _sample_queries(queries, None) == queries
    assert all(q.startswith("a") for q in _limit_queries(queries, 40))
