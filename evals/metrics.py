"""Ranking metrics over documents, as BEIR/TREC define them (checked against ``ranx`` in tests).

A *run* is, per query, the ranked list of document ids (best first, each id once). *Qrels*
are, per query, ``{doc_id: graded relevance}``; a document is relevant when its grade is > 0.
nDCG uses linear gains (``rel / log2(rank + 1)``), as pytrec_eval and BEIR do.
Queries without any relevant document are left out of the means (they have no ideal ranking).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "RECALL_CURVE_KS",
    "average",
    "first_relevant_rank",
    "mrr_at",
    "ndcg_at",
    "percentile",
    "precision_at",
    "query_metrics",
    "recall_at",
    "relevant_set",
]

Ranking = Sequence[str]
Judgements = Mapping[str, int]

# Depths drawn on the recall@k curve of a report.
RECALL_CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 100)


def relevant_set(judged: Judgements) -> set[str]:
    return {doc for doc, grade in judged.items() if grade > 0}


def ndcg_at(ranked: Ranking, judged: Judgements, k: int) -> float:
    gains = [max(judged.get(doc, 0), 0) for doc in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Ranking, judged: Judgements, k: int) -> float:
    relevant = relevant_set(judged)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def precision_at(ranked: Ranking, judged: Judgements, k: int) -> float:
    relevant = relevant_set(judged)
    return len(relevant.intersection(ranked[:k])) / k


def first_relevant_rank(ranked: Ranking, judged: Judgements) -> int | None:
    """1-based rank of the first relevant document, or None when none was retrieved."""
    relevant = relevant_set(judged)
    for i, doc in enumerate(ranked, start=1):
        if doc in relevant:
            return i
    return None


def mrr_at(ranked: Ranking, judged: Judgements, k: int) -> float:
    rank = first_relevant_rank(ranked[:k], judged)
    return 1.0 / rank if rank else 0.0


def query_metrics(
    ranked: Ranking, judged: Judgements, recall_ks: Iterable[int] = (1, 5, 10, 100)
) -> dict[str, float]:
    """The per-query figures a report shows; their means are the headline metrics."""
    out = {"ndcg@10": ndcg_at(ranked, judged, 10), "mrr@10": mrr_at(ranked, judged, 10)}
    for k in recall_ks:
        out[f"recall@{k}"] = recall_at(ranked, judged, k)
    return out


def average(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
