"""Label-free canary: can the index find a document from one of its own sentences?

For a knowledge base without a golden set: sample chunks from the live collection, take one
sentence from each, query with it, and check the chunk's document comes back in the top k.
The sample is chosen by hashing chunk ids, so the same chunks are drawn run after run while
they exist: a drop in the rate after a reindex is the change, not a new sample.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from evals.retrieval import evaluate_retrieval

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["pick_sentence", "run_canary", "sample_probes"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=[-*#\d])")
_MIN_WORDS = 6
_MAX_WORDS = 40


def _stable_hash(seed: str, value: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{value}".encode()).digest()[:8], "big")


def pick_sentence(text: str, salt: str = "") -> str | None:
    """One sentence of 6–40 words from ``text`` (chosen by ``salt``), else its first 30 words."""
    candidates = []
    for piece in _SENTENCE_END.split(text):
        sentence = " ".join(piece.split())
        if _MIN_WORDS <= len(sentence.split()) <= _MAX_WORDS:
            candidates.append(sentence)
    if candidates:
        return candidates[_stable_hash("sentence", salt) % len(candidates)]
    words = text.split()
    return " ".join(words[:30]) if len(words) >= 4 else None


def sample_probes(
    index: Index, samples: int, seed: str = "canary"
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(queries, qrels): one query per sampled chunk, relevant = that chunk's document (its source)."""
    collection = index.collection or index.open(create=False)
    flt = {"tenant": index.settings.tenant}
    # Keep the ``samples`` chunks with the smallest hash: one pass, memory bounded by the sample.
    heap: list[tuple[int, str, str, str]] = []
    for point in index.store.scroll(collection, filter=flt):
        source = str(point.payload.get("source") or "")
        text = str(point.payload.get("text") or "")
        if not source or not text.strip():
            continue
        key = -_stable_hash(seed, point.id)
        item = (key, point.id, source, text)
        if len(heap) < samples:
            heapq.heappush(heap, item)
        elif key > heap[0][0]:
            heapq.heapreplace(heap, item)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for _, chunk_id, source, text in sorted(heap, reverse=True):
        sentence = pick_sentence(text, chunk_id)
        if sentence is None:
            continue
        queries[chunk_id] = sentence
        qrels[chunk_id] = {source: 1}
    return queries, qrels


def run_canary(
    index: Index,
    samples: int,
    top_k: int = 10,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Retrieval metrics over the probes plus ``hit_rate@k``: share whose document is in the top k."""
    queries, qrels = sample_probes(index, samples)
    result = evaluate_retrieval(
        index, queries, qrels, top_k=max(top_k, 10), should_stop=should_stop
    )
    hits = [
        q
        for q in result["per_query"]
        if q["first_relevant_rank"] is not None and q["first_relevant_rank"] <= top_k
    ]
    result[f"hit_rate@{top_k}"] = (
        round(len(hits) / len(result["per_query"]), 6) if result["per_query"] else 0.0
    )
    result["top_k"] = top_k
    result["samples"] = len(queries)
    return result
