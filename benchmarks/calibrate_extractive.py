"""Calibrate the extractive generator's threshold on SQuAD 2.0 (answer vs abstain).

    .venv/bin/python benchmarks/calibrate_extractive.py /work/shared/datasets/squad2 [--cache DIR]

Every question goes through the real retrieve → rerank → pack stages (the corpus is indexed
once into an isolated cache, as `rag eval` does); the best sentence score of the packed
context is recorded. For each threshold the script reports, with the verifier applied to the
answer the extractive generator would give:

- abstention on unanswerable questions (goal >= 0.80),
- false abstention on answerable ones (goal <= 0.15),
- answer contains a gold string, and the gold paragraph is cited.

It prints the table and the lowest threshold that meets both abstention goals (or the best
trade-off when none does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/rag-eval-cache"),
        help="where the corpus index is cached",
    )
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from evals.answers import contains_gold
    from evals.datasets import load_beir, open_dataset_index
    from rag.citations import verify_answer
    from rag.config import load_settings
    from rag.embedding import Embedder
    from rag.generate import GenerationRequest
    from rag.generate.extractive import rank_sentences
    from rag.pipeline import QueryPipeline

    settings = load_settings(
        overrides={"evals": {"cache_dir": str(args.cache)}, "generation": {"chain": ["extractive"]}}
    )
    embedder = Embedder(settings.embedding)
    embedder.warm_up()
    data = load_beir(args.dataset)
    assert data.answers, "the dataset needs answers.jsonl"
    dindex = open_dataset_index(settings, data, embedder, echo=lambda m: print(m, file=sys.stderr))
    pipeline = QueryPipeline(
        dindex.index, dindex.index.settings.model_copy(update={"generation": settings.generation})
    )
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    ids = [q for q in data.queries if q in data.answers][: args.limit]
    for qid in ids:
        question = data.queries[qid]
        prepared = pipeline.prepare(question)
        request = GenerationRequest(
            messages=[], question=question, context=prepared.context, max_tokens=0
        )
        ranked = rank_sentences(question, request, pipeline.scorer)
        key = data.answers[qid]
        gold_docs = {d for d, g in data.qrels.get(qid, {}).items() if g > 0}
        rows.append(
            {
                "answerable": key.answerable,
                "answers": key.answers,
                "gold_docs": sorted(gold_docs),
                "picks": [
                    {"score": sc, "n": n, "sentence": s}
                    for sc, n, s in ranked[: settings.generation.extractive_sentences]
                ],
                "context": prepared.context,
                "question": question,
                "retrieved_gold": any(
                    dindex.to_doc(p.source) in gold_docs for p in prepared.context.passages
                ),
            }
        )
    table = []
    for t in [x / 100 for x in range(20, 96, 5)]:
        abst_u = abst_a = gold = cited = verified_total = verified_ok = 0
        n_u = sum(not r["answerable"] for r in rows)
        n_a = len(rows) - n_u
        for r in rows:
            chosen = [p for p in r["picks"] if p["score"] >= t]
            text = " ".join(f"{p['sentence'].rstrip('.')} [{p['n']}]." for p in chosen)
            v = verify_answer(
                text,
                r["context"],
                pipeline.scorer,
                settings.generation.verify,
                r["question"],
                settings.generation.abstain_text,
            )
            verified_total += len(v.citations)
            verified_ok += sum(c["verified"] for c in v.citations)
            if r["answerable"]:
                abst_a += v.abstained
                gold += (not v.abstained) and contains_gold(v.answer, r["answers"])
                cited += any(dindex.to_doc(c["source"]) in r["gold_docs"] for c in v.citations)
            else:
                abst_u += v.abstained
        table.append(
            {
                "threshold": t,
                "abstention_unanswerable": round(abst_u / max(1, n_u), 3),
                "false_abstention_answerable": round(abst_a / max(1, n_a), 3),
                "answer_contains_gold": round(gold / max(1, n_a), 3),
                "gold_cited": round(cited / max(1, n_a), 3),
            }
        )
    ok = [
        row
        for row in table
        if row["abstention_unanswerable"] >= 0.8 and row["false_abstention_answerable"] <= 0.15
    ]
    best = (
        ok[0]
        if ok
        else max(
            table, key=lambda r: r["abstention_unanswerable"] - r["false_abstention_answerable"]
        )
    )
    result = {
        "questions": len(rows),
        "gold_retrieved_in_context": round(
            sum(r["retrieved_gold"] for r in rows if r["answerable"])
            / max(1, sum(r["answerable"] for r in rows)),
            3,
        ),
        "table": table,
        "chosen": best,
        "meets_both_goals": bool(ok),
        "seconds": round(time.perf_counter() - started, 1),
    }
    dindex.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
