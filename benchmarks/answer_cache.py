"""The answer cache: how much faster a repeated question is, and how safe the semantic match is.

    .venv/bin/python benchmarks/answer_cache.py [--docs DIR] [--golden FILE] [--repeats N]
        [--pairs FILE] [--squad DIR] [--json-out FILE] [--smoke] [--report-only]

**Speed.** ``--docs`` (default examples/docs) is indexed into a temporary data dir and every
question of ``--golden`` (default evals/golden.jsonl) is asked through the default pipeline
(the configured chain; the cache on): the first answer is a miss, answered in full; the same
question asked ``--repeats`` more times is served by the cache. Questions that abstain are
not cached (by design) and are left out. Per question: first-answer time / median repeat
time; the goal is on the median over questions. The cached answer must equal the first.

**Costs.** A sample run of a priced chain ``[openai, extractive]`` (the in-process
OpenAI-protocol stand-in, or ``--openai-url``; openai at ``--price-in``/``--price-out`` $ per
million tokens): each golden question asked twice (the second a cache hit), every call
accounted (refused attempts included); then again with ``costs.daily_budget`` at half the
first pass's cost: answers degrade (fallback "budget") instead of failing.

**Semantic threshold.** ``--pairs`` (default benchmarks/fixtures/question_pairs.jsonl, our own:
paraphrase pairs and different-question pairs on the same topics, many one word apart —
"business tier" vs "enterprise tier", "SEV1" vs "SEV2") embedded with the index's model, as
the cache embeds questions. The pairs are split in two halves (alternating); on the *pick*
half the threshold is the lowest of a 0.80–0.99 grid with no false hit (a different-question
pair at or above it that the cache's lexical guard, ``rag.query.answer_cache.compatible``, lets
through: same numbers, names and contrast words); on the *report* half: the false-hit rate (different pairs at or above
it) and the paraphrase hit rate, at the picked and at the configured threshold
(``cache.semantic_threshold``), with the guard (what the cache does) and by cosine alone. With ``--squad DIR`` (a BEIR SQuAD 2.0 set, e.g.
../shared/datasets/squad2) distinct questions about the same paragraph are added as hard
different-question pairs (reported separately).

Goals: repeat ≥ 50× faster than the first answer (median over questions); at the configured
threshold, false-hit rate ≤ 0.01 on the report half (and on the SQuAD pairs when given).
Checks: every repeat was a cache hit with the first answer's text, figures are finite, the
answers' costs sum to the ledger's, and the budgeted run has no errors and degraded answers.
``--smoke`` (tests/benchmarks/test_smoke.py) enforces only the checks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

GRID = [round(0.80 + 0.01 * i, 2) for i in range(20)]


def speed(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from rag.core.config import load_settings
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.query.pipeline import QueryPipeline

    settings = load_settings(
        None, {"data_dir": str(data_dir), "evals": {"after_sync": False}, "cache": {}}
    )
    index = Index(settings)
    index.open(create=True)
    Ingestor(index).sync_folder(args.docs)
    pipeline = QueryPipeline(index, settings)
    pipeline.warm_up()
    pipeline.run("warm up: what is this about?")
    questions = [json.loads(line)["question"] for line in args.golden.open() if line.strip()]
    if args.smoke:
        questions = questions[:6]
    rows = []
    abstained = 0
    for q in questions:
        t0 = time.perf_counter()
        first = pipeline.run(q)
        first_ms = (time.perf_counter() - t0) * 1000.0
        if first.abstained or not first.citations or first.cached:
            abstained += 1
            continue
        repeats = []
        same = True
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = pipeline.run(q)
            repeats.append((time.perf_counter() - t0) * 1000.0)
            same = same and again.cached and again.answer == first.answer
        repeat_ms = statistics.median(repeats)
        rows.append(
            {
                "question": q,
                "first_ms": round(first_ms, 3),
                "repeat_ms": round(repeat_ms, 3),
                "speedup": round(first_ms / repeat_ms, 1),
                "hit_same_answer": same,
            }
        )
    stats = pipeline.cache.stats() if pipeline.cache is not None else {}
    pipeline.close()
    index.close()
    speedups = [r["speedup"] for r in rows]
    return {
        "chain": settings.generation.chain,
        "questions": len(questions),
        "cached_questions": len(rows),
        "abstained_not_cached": abstained,
        "median_first_ms": round(statistics.median(r["first_ms"] for r in rows), 3)
        if rows
        else None,
        "median_repeat_ms": round(statistics.median(r["repeat_ms"] for r in rows), 3)
        if rows
        else None,
        "median_speedup": round(statistics.median(speedups), 1) if rows else None,
        "min_speedup": min(speedups) if rows else None,
        "all_hits_same_answer": all(r["hit_same_answer"] for r in rows) and bool(rows),
        "cache_stats": stats,
        "per_question": rows,
    }


def cost_sample(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """A priced chain [openai, extractive] over the golden questions, each asked twice (the
    second from the cache), then again under a daily budget of half what the first pass cost."""
    from rag.core.config import load_settings
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.query.costs import CostController
    from rag.query.pipeline import QueryPipeline

    server = None
    url = args.openai_url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests" / "rag"))
        from chat_server import ChatServer  # the in-process OpenAI-protocol stand-in

        server = ChatServer(reply="Backups are kept for 35 days [1].")
        url = server.base_url
    prices = {"openai": {"input_per_million": args.price_in, "output_per_million": args.price_out}}

    def settings_for(name: str, **costs: Any) -> Any:
        return load_settings(
            None,
            {
                "data_dir": str(data_dir / name),
                "evals": {"after_sync": False},
                "generation": {
                    "chain": ["openai", "extractive"],
                    "openai": {"base_url": url, "max_retries": 0},
                },
                "costs": {"prices": prices, **costs},
            },
        )

    questions = [json.loads(line)["question"] for line in args.golden.open() if line.strip()]
    if args.smoke:
        questions = questions[:6]
    out: dict[str, Any] = {"prices": prices, "server": url if server is None else "stand-in"}
    try:
        for name, budget in (("unlimited", None), ("budget", "half")):
            settings = settings_for(name)
            if budget == "half":
                settings.costs.daily_budget = round(out["unlimited"]["cost_first_pass"] / 2, 8)
            index = Index(settings)
            index.open(create=True)
            Ingestor(index).sync_folder(args.docs)
            pipeline = QueryPipeline(index, settings)
            pipeline.warm_up()
            answers, errors = [], 0
            for q in questions:
                for _ in range(2):
                    try:
                        answers.append(pipeline.run(q))
                    except Exception:  # noqa: BLE001 - counted: a budget must never cause one
                        errors += 1
            first = answers[0::2]
            costs = pipeline.stage("generate").costs  # type: ignore[attr-defined]
            assert isinstance(costs, CostController)
            ledger = costs.spent(settings.tenant)
            calls = [b for a in answers for b in a.usage.backends]
            row: dict[str, Any] = {
                "answers": len(answers),
                "errors": errors,
                "daily_budget": settings.costs.daily_budget,
                "prompt_tokens": sum(a.usage.prompt_tokens for a in answers),
                "completion_tokens": sum(a.usage.completion_tokens for a in answers),
                "cost_total": round(sum(a.usage.cost for a in answers), 8),
                "cost_first_pass": round(sum(a.usage.cost for a in first), 8),
                "ledger_spent_today": round(ledger, 8),
                "calls": {
                    o: sum(c.outcome == o for c in calls)
                    for o in ("answered", "refused", "failed", "skipped")
                },
                "cached_answers": sum(a.cached for a in answers),
                "saved_by_cache": round(
                    sum(
                        f.usage.cost for f, s in zip(first, answers[1::2], strict=True) if s.cached
                    ),
                    8,
                ),
                "degraded_by_budget": sum(
                    any(f.error.startswith("budget") for f in a.fallbacks) for a in answers
                ),
                "mean_cost_per_uncached_answer": round(
                    statistics.mean([a.usage.cost for a in answers if not a.cached] or [0.0]), 8
                ),
            }
            out[name] = row
            pipeline.close()
            index.close()
    finally:
        if server is not None:
            server.close()
    return out


def _rates(pairs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    same = [p for p in pairs if p["same"]]
    diff = [p for p in pairs if not p["same"]]

    def hit(p: dict[str, Any]) -> bool:  # what the cache does: cosine and the lexical guard
        return bool(p["cosine"] >= threshold and p["compatible"])

    false_hits = [p for p in diff if hit(p)]
    return {
        "threshold": threshold,
        "false_hit_rate": round(len(false_hits) / len(diff), 4) if diff else None,
        "paraphrase_hit_rate": round(sum(hit(p) for p in same) / len(same), 4) if same else None,
        "cosine_only_false_hit_rate": round(
            sum(p["cosine"] >= threshold for p in diff) / len(diff), 4
        )
        if diff
        else None,
        "cosine_only_paraphrase_hit_rate": round(
            sum(p["cosine"] >= threshold for p in same) / len(same), 4
        )
        if same
        else None,
        "different_pairs": len(diff),
        "paraphrase_pairs": len(same),
        "false_hits": [[p["a"], p["b"], round(p["cosine"], 3)] for p in false_hits][:10],
    }


def squad_pairs(folder: Path, limit: int) -> list[dict[str, Any]]:
    """Distinct questions whose gold paragraph is the same: different questions, one topic."""
    queries = {}
    for line in (folder / "queries.jsonl").open():
        if line.strip():
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    by_doc: dict[str, list[str]] = {}
    qrels = next(iter(sorted((folder / "qrels").glob("*.tsv"))))
    for i, line in enumerate(qrels.open()):
        parts = line.rstrip("\n").split("\t")
        if i == 0 or len(parts) < 3 or float(parts[2]) <= 0:
            continue
        by_doc.setdefault(parts[1], []).append(parts[0])
    out: list[dict[str, Any]] = []
    for doc in sorted(by_doc):
        ids = by_doc[doc]
        for a, b in itertools.combinations(ids, 2):
            qa, qb = queries.get(a), queries.get(b)
            if qa and qb and qa.strip().lower() != qb.strip().lower():
                out.append({"a": qa, "b": qb, "same": False})
    return out[:limit]


def calibrate(args: argparse.Namespace, configured: float | None) -> dict[str, Any]:
    from rag.core.config import load_settings
    from rag.indexing.embedding import embedder_for
    from rag.query.answer_cache import compatible

    embedder = embedder_for(load_settings(None, {"data_dir": tempfile.mkdtemp()}))
    embedder.warm_up()
    pairs = [json.loads(line) for line in args.pairs.open() if line.strip()]
    if args.smoke:
        pairs = [p for p in pairs if p["same"]][:8] + [p for p in pairs if not p["same"]][:8]

    def score(items: list[dict[str, Any]]) -> None:
        a = embedder.embed([p["a"] for p in items])
        b = embedder.embed([p["b"] for p in items])
        for p, x, y in zip(items, a, b, strict=True):
            p["cosine"] = float((x * y).sum() / ((x * x).sum() ** 0.5 * (y * y).sum() ** 0.5))
            p["compatible"] = compatible(p["a"], p["b"])

    score(pairs)
    pick = [p for i, p in enumerate(pairs) if i % 2 == 0]
    report = [p for i, p in enumerate(pairs) if i % 2 == 1]
    picked = next(
        (
            t
            for t in GRID
            if all(p["cosine"] < t or not p["compatible"] for p in pick if not p["same"])
        ),
        GRID[-1],
    )
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "picked_threshold": picked,
        "configured_threshold": configured,
        "report_half_at_picked": _rates(report, picked),
        "all_pairs_grid": [
            {k: v for k, v in _rates(pairs, t).items() if k != "false_hits"} for t in GRID
        ],
    }
    if configured is not None:
        out["report_half_at_configured"] = _rates(report, configured)
        out["all_pairs_at_configured"] = _rates(pairs, configured)
    if args.squad:
        hard = squad_pairs(args.squad, 50 if args.smoke else args.squad_pairs)
        score(hard)
        out["squad_same_paragraph"] = {
            "pairs": len(hard),
            "at_configured": _rates(hard, configured) if configured is not None else None,
            "at_picked": _rates(hard, picked),
            "max_cosine": round(max((p["cosine"] for p in hard), default=0.0), 4),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--docs", type=Path, default=ROOT / "examples" / "docs")
    ap.add_argument("--golden", type=Path, default=ROOT / "evals" / "golden.jsonl")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--pairs", type=Path, default=ROOT / "benchmarks" / "fixtures" / "question_pairs.jsonl"
    )
    ap.add_argument("--squad", type=Path, default=None, help="a BEIR SQuAD 2.0 folder")
    ap.add_argument("--squad-pairs", type=int, default=2000)
    ap.add_argument("--openai-url", default=None, help="a real server for the cost sample")
    ap.add_argument("--price-in", type=float, default=0.15, help="openai $/M input tokens")
    ap.add_argument("--price-out", type=float, default=0.60, help="openai $/M output tokens")
    ap.add_argument("--json-out", type=Path, default=None)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.repeats = min(args.repeats, 3)

    from rag.core.config import load_settings

    configured = load_settings(None, {"data_dir": tempfile.mkdtemp()}).cache.semantic_threshold
    with tempfile.TemporaryDirectory() as tmp:
        fast = speed(args, Path(tmp) / "data")
        spend = cost_sample(args, Path(tmp) / "costs")
    semantic = calibrate(args, configured)
    results: dict[str, Any] = {"speed": fast, "semantic": semantic, "costs": spend}
    free, capped = spend["unlimited"], spend["budget"]
    at = semantic.get("report_half_at_configured") or semantic["report_half_at_picked"]
    goals = [
        Goal(
            "repeat_speedup",
            ">= 50x (median, repeated question vs its first answer)",
            fast["median_speedup"],
            finite(fast["median_speedup"]) and fast["median_speedup"] >= 50,
        ),
        Goal(
            "semantic_false_hits",
            f"<= 0.01 at cache.semantic_threshold={configured} (report half)",
            at["false_hit_rate"],
            finite(at["false_hit_rate"]) and at["false_hit_rate"] <= 0.01,
        ),
        Goal(
            "cache_hits",
            "every repeat a hit with the first answer's text",
            fast["all_hits_same_answer"],
            bool(fast["all_hits_same_answer"]),
            check=True,
        ),
        Goal(
            "figures",
            "finite",
            [fast["median_first_ms"], fast["median_repeat_ms"], at["paraphrase_hit_rate"]],
            finite(fast["median_first_ms"], fast["median_repeat_ms"], at["paraphrase_hit_rate"]),
            check=True,
        ),
    ]
    goals += [
        Goal(
            "costs_accounted",
            "the answers' usage.cost sums to the ledger's spend of the day",
            [free["cost_total"], free["ledger_spent_today"]],
            abs(free["cost_total"] - free["ledger_spent_today"]) < 1e-6 and free["cost_total"] > 0,
            check=True,
        ),
        Goal(
            "budget_degrades",
            "under a budget: no errors, some answers degraded with fallback 'budget'",
            [capped["errors"], capped["degraded_by_budget"]],
            capped["errors"] == 0 and capped["degraded_by_budget"] > 0,
            check=True,
        ),
    ]
    squad = semantic.get("squad_same_paragraph")
    if squad and squad.get("at_configured"):
        rate = squad["at_configured"]["false_hit_rate"]
        goals.append(
            Goal(
                "squad_false_hits",
                "<= 0.01 on same-paragraph SQuAD question pairs",
                rate,
                finite(rate) and rate <= 0.01,
            )
        )
    results["goal"] = {g.name: g.target for g in goals}
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
