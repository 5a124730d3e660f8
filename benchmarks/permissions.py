"""What permissions cost: retrieval with the reader's groups in the store filter, and the
answer cache's hit rate when askers read with different groups.

    .venv/bin/python benchmarks/permissions.py [--sizes 10000 100000] [--queries N]
        [--repeats N] [--json-out FILE] [--smoke] [--report-only]

**Retrieval.** For each size, a Qdrant Edge collection (the ``edge`` backend, as `rag serve`
uses it, its HNSW index built by ``optimize`` as after a sync) of synthetic chunks: random unit
vectors of the embedding's 384 dimensions and random BM25-like sparse vectors (embedding 100k
chunks with MiniLM on this machine's CPUs would take most of an hour and would not change
what the store does per query). Payloads as ingestion writes them: doc_id, tenant (2 of them),
and groups drawn as a deployment might label them (70 % ``all``, 10 % ``hr``, 10 % ``eng``,
5 % ``legal``, 5 % ``eng,hr``). Each query runs what the retriever runs in hybrid mode — a
dense and a sparse search of ``retrieval.candidates`` — once with the filter of a reader
acting with every group (``{tenant}``: what a query cost before permissions) and once with
the filter of a reader in ``eng`` (``rag.core.access.read_filter``: its chunk field
``readers`` any of acme/all, acme/eng), alternating, in the same run on the same collection.
The query vector is a real golden question embedded by the real model, timed: the retrieval
stage is that embedding plus both searches (what ``Retriever.run`` does, less the fusion).
Reported: the stage's p50 with and without permissions and their ratio (the goal), and the
store searches alone (p50, p95, ratio).

**Answer cache.** ``examples/docs`` indexed with the real model and ``access.rules`` giving
``policies/backup-policy.md`` to ``hr``; the golden questions (``evals/golden.jsonl``) asked ``--repeats``
times each, in a shuffled order, through the default pipeline with the cache on: once by
askers all in one group (``eng``), once by askers alternating between ``hr`` and ``eng``
(fresh cache each). Hit rate = answers served from the cache / answerable questions asked.
With two groups an hr asker's answers drawn from hr documents are kept apart from eng's
(an access class each), so some repeats miss that one group would have hit.

Goals: retrieval p50 with permissions ≤ 1.10 × without, at every size (the stage: embedding
and searches; the searches alone are reported beside it). Checks: every figure
finite; permission-filtered hits are all readable by their reader (and unfiltered ones are
not all readable: the filter did something); the cache served nothing an asker may not read.
``--smoke``: 2,000 chunks, 20 queries, 6 golden questions.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

DIM = 384
LABELS = [(["all"], 70), (["hr"], 10), (["eng"], 10), (["legal"], 5), (["eng", "hr"], 5)]
VOCAB = 30_000


def _label(rng: random.Random) -> list[str]:
    roll = rng.uniform(0, 100)
    for groups, weight in LABELS:
        roll -= weight
        if roll <= 0:
            return groups
    return ["all"]


def build(store: Any, name: str, n: int, seed: int) -> None:
    import numpy as np

    from rag.core.access import label_payload
    from rag.store import SparseVec, StoredPoint

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    store.create_collection(name, DIM, {"kind": "permissions-benchmark"})
    docs = max(1, n // 8)
    doc_labels = [_label(rng) for _ in range(docs)]
    batch: list[StoredPoint] = []
    for i in range(n):
        d = rng.randrange(docs)
        vec = nrng.normal(size=DIM)
        vec /= np.linalg.norm(vec)
        terms = sorted(rng.sample(range(VOCAB), 12))
        batch.append(
            StoredPoint(
                id=f"00000000-0000-4000-8000-{i:012x}",
                payload={
                    "doc_id": f"doc-{d}",
                    "tenant": "acme" if d % 4 else "globex",
                    **label_payload("acme" if d % 4 else "globex", doc_labels[d]),
                    "text_hash": f"{i:016x}",
                    "source": f"folder/doc-{d}.md",
                },
                dense=vec.tolist(),
                sparse=SparseVec(terms, [round(rng.uniform(0.5, 3.0), 3) for _ in terms]),
            )
        )
        if len(batch) == 1000:
            store.upsert(name, batch)
            batch = []
    store.upsert(name, batch)
    store.flush(name)
    store.optimize(name)


def retrieval(
    size: int, queries: int, seed: int, work: Path, embedder: Any, questions: list[str]
) -> dict[str, Any]:
    from rag.core.access import Reader, can_read, read_filter
    from rag.store import SparseVec
    from rag.store.edge import EdgeStore

    store = EdgeStore(work / f"store-{size}")
    name = f"bench_{size}"
    started = time.perf_counter()
    build(store, name, size, seed)
    built = time.perf_counter() - started
    every = Reader("acme")  # every group: the filter a query had before permissions
    eng = Reader("acme", frozenset({"eng"}))
    filters = {"without": read_filter(every), "with": read_filter(eng)}
    rng = random.Random(seed + 1)
    candidates = 50  # retrieval.candidates' default: each arm fetches this many
    times: dict[str, list[float]] = {"without": [], "with": []}
    stage: dict[str, list[float]] = {"without": [], "with": []}
    unreadable = {"without": 0, "with": 0}
    for q in range(queries + 5):  # 5 warm-up queries, not counted
        # A real question's embedding (the corpus is random: the hits mean nothing, the
        # work per query is what it is); its time is the stage's, whatever the filter.
        t0 = time.perf_counter()
        vec = embedder.embed_query(questions[q % len(questions)]).tolist()
        embed_ms = (time.perf_counter() - t0) * 1000.0
        terms = sorted(rng.sample(range(VOCAB), 6))
        sparse = SparseVec(terms, [1.0] * len(terms))
        order = ("without", "with") if q % 2 else ("with", "without")
        for kind in order:
            t0 = time.perf_counter()
            dense_hits = store.search_dense(name, vec, candidates, filters[kind])
            sparse_hits = store.search_sparse(name, sparse, candidates, filters[kind])
            elapsed = (time.perf_counter() - t0) * 1000.0
            if q >= 5:
                times[kind].append(elapsed)
                stage[kind].append(elapsed + embed_ms)
                unreadable[kind] += sum(
                    not can_read(eng, h.payload) for h in [*dense_hits, *sparse_hits]
                )
    store.close()

    def pct(values: list[float], p: float) -> float:
        return round(sorted(values)[min(len(values) - 1, int(p * len(values)))], 3)

    p50 = {k: round(statistics.median(v), 3) for k, v in times.items()}
    stage50 = {k: round(statistics.median(v), 3) for k, v in stage.items()}
    return {
        "chunks": size,
        "queries": queries,
        "build_seconds": round(built, 1),
        "store_p50_ms": p50,
        "store_p95_ms": {k: pct(v, 0.95) for k, v in times.items()},
        "store_ratio_p50": round(p50["with"] / p50["without"], 3),
        "stage_p50_ms": stage50,
        "ratio_p50": round(stage50["with"] / stage50["without"], 3),
        "unreadable_hits": unreadable,
    }


def cache_hit_rate(repeats: int, limit: int | None, seed: int, work: Path) -> dict[str, Any]:
    from rag.core.config import DEFAULT_CONFIG, load_settings
    from rag.core.types import Query
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.query.pipeline import QueryPipeline

    golden = [
        json.loads(line)["question"]
        for line in (ROOT / "evals" / "golden.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if limit:  # spread over the set (its first questions are all about one document)
        golden = golden[:: max(1, len(golden) // limit)][:limit]
    rules = [{"path": "policies/backup-policy.md", "groups": ["hr"]}]
    out: dict[str, Any] = {"questions": len(golden), "repeats": repeats, "hr_rule": rules}
    embedder = None
    for scenario, askers in (("one_group", [("eng",)]), ("two_groups", [("hr",), ("eng",)])):
        settings = load_settings(
            DEFAULT_CONFIG,
            {
                "data_dir": str(work / f"cache-{scenario}"),
                "access": {"rules": rules},
                "cache": {"enabled": True},
                "evals": {"after_sync": False},
                "generation": {"chain": ["extractive"]},
            },
        )
        index = Index(settings, embedder=embedder)
        embedder = index.embedder
        Ingestor(index).sync_folder(ROOT / "examples" / "docs")
        pipeline = QueryPipeline(index, settings)
        asks = [(q, i) for q in golden for i in range(repeats + 1)]
        random.Random(seed).shuffle(asks)
        asked = hits = answered = leaks = 0
        for n, (question, _) in enumerate(asks):
            groups = askers[n % len(askers)]
            answer = pipeline.run(Query(question, tenant=settings.tenant, groups=groups))
            asked += 1
            if answer.abstained:
                continue
            answered += 1
            hits += int(bool(answer.cached))
            if "eng" in groups and "hr" not in groups:
                leaks += sum(c.source == "policies/backup-policy.md" for c in answer.citations)
        stats = pipeline.stats().get("cache", {})
        pipeline.close()
        index.close()
        out[scenario] = {
            "asked": asked,
            "answered": answered,
            "cache_hits": hits,
            "hit_rate": round(hits / answered, 3) if answered else 0.0,
            "eng_citations_of_hr_documents": leaks,
            "entries": stats.get("entries"),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each golden question")
    ap.add_argument("--questions", type=int, default=None, help="first N golden questions")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.queries, args.repeats, args.questions = [2000], 20, 2, 6
    results: dict[str, Any] = {
        "goal": "retrieval p50 with permissions <= 1.10x without, at each size, same run",
        "retrieval": [],
        "store": "edge",
    }
    goals: list[Goal] = []
    with tempfile.TemporaryDirectory(prefix="rag-perm-bench-") as tmp:
        work = Path(tmp)
        from rag.core.config import DEFAULT_CONFIG, load_settings
        from rag.indexing.embedding import embedder_for

        embedder = embedder_for(load_settings(DEFAULT_CONFIG))
        embedder.warm_up()
        questions = [
            json.loads(line)["question"]
            for line in (ROOT / "evals" / "golden.jsonl").read_text("utf-8").splitlines()
            if line.strip()
        ]
        for size in args.sizes:
            r = retrieval(size, args.queries, args.seed, work, embedder, questions)
            results["retrieval"].append(r)
            print(
                f"{size:>7} chunks: retrieval p50 {r['stage_p50_ms']['without']:.3f} ms without, "
                f"{r['stage_p50_ms']['with']:.3f} ms with permissions ({r['ratio_p50']:.3f}x); "
                f"store searches alone {r['store_p50_ms']['without']:.3f} / "
                f"{r['store_p50_ms']['with']:.3f} ms ({r['store_ratio_p50']:.3f}x)",
                file=sys.stderr,
            )
            goals.append(
                Goal(
                    f"retrieval_p50_ratio_{size}", "<= 1.10", r["ratio_p50"], r["ratio_p50"] <= 1.10
                )
            )
            goals.append(
                Goal(
                    f"filter_holds_{size}",
                    "0 unreadable hits with permissions, some without",
                    r["unreadable_hits"],
                    r["unreadable_hits"]["with"] == 0 and r["unreadable_hits"]["without"] > 0,
                    check=True,
                )
            )
            goals.append(
                Goal(
                    f"finite_{size}",
                    "figures measured",
                    r["store_p50_ms"],
                    finite(*r["store_p50_ms"].values(), *r["stage_p50_ms"].values()),
                    check=True,
                )
            )
        cache = cache_hit_rate(args.repeats, args.questions, args.seed, work)
        results["answer_cache"] = cache
        for scenario in ("one_group", "two_groups"):
            print(
                f"answer cache, {scenario}: hit rate {cache[scenario]['hit_rate']}", file=sys.stderr
            )
        goals.append(
            Goal(
                "cache_serves_nothing_unreadable",
                "0 hr citations to eng askers",
                cache["two_groups"]["eng_citations_of_hr_documents"],
                cache["two_groups"]["eng_citations_of_hr_documents"] == 0
                and cache["one_group"]["eng_citations_of_hr_documents"] == 0,
                check=True,
            )
        )
        goals.append(
            Goal(
                "cache_hits_measured",
                "finite hit rates, some hits",
                [cache["one_group"]["hit_rate"], cache["two_groups"]["hit_rate"]],
                finite(cache["one_group"]["hit_rate"], cache["two_groups"]["hit_rate"])
                and cache["one_group"]["cache_hits"] > 0,
                check=True,
            )
        )
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
