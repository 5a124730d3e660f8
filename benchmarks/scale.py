"""Retrieval at scale: p95 with the query embedding included at 100k and 300k chunks, memory per
100k chunks, and the projection to 1M.

    .venv/bin/python benchmarks/scale.py [--sizes 100000,300000] [--queries 200] [--seeds 800]
        [--max-build-seconds 900] [--json-out FILE] [--smoke] [--report-only]

The store, retriever and query path are the API's: ``Index`` on the Qdrant edge engine,
``QueryPipeline.run(Query(claim, generate=False))`` (hybrid dense + BM25 search as configured
by default, fusion, rerank, pack; the query embedded by the real model on every call).

Chunks are synthetic but realistic (embedding 300k real chunks takes hours on two cores):
``--seeds`` SciFact abstracts are embedded for real with the document encoder; each synthetic
chunk takes a run of 3-6 consecutive sentences of one of those abstracts, shuffled with a
sentence of another SciFact document, as its text (so BM25 sees real token statistics and
real posting-list lengths), and a vector drawn near its abstract's real vector (cosine ~0.85:
many near-duplicates around real topics, as a large corpus of related documents has).
Queries are SciFact claims (the same ones at every size). The collection is built progressively (progress
on stderr), the HNSW index built as a finished sync builds it, and measured at each size.

Memory: the process's resident set growth while the chunks are added (what the store holds
in memory) and the data folder on disk, each per 100k chunks; the 1M projection scales the
per-chunk figures linearly and the p95 by the growth between the two measured sizes
(linear in the number of chunks: pessimistic for an HNSW search, roughly right for BM25
posting lists).

Goal (exit 1 when missed; ``--smoke`` enforces only the checks): p95 <= 20 ms at 100k chunks.
Checks: every query retrieved passages; every size asked for was built (or the build-time
cap was reported).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    Goal,
    add_goal_arguments,
    finish,
    finite,
    synthetic_point,
)

SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"  # --dataset: another BEIR set
GOAL_MS = 20.0
GOAL_CHUNKS = 100_000
COSINE = 0.85  # of a synthetic chunk's vector to its abstract's real vector
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024.0


def _pct(values: list[float], q: float) -> float:
    from evals.metrics import percentile

    return round(float(percentile(values, q)), 3)


def load_corpus(
    dataset: Path, seeds: int, rng: random.Random
) -> tuple[list[list[str]], list[str], list[str]]:
    """(sentences of the seed abstracts, sentences of every document, SciFact claims)."""
    docs = [json.loads(line) for line in (dataset / "corpus.jsonl").open(encoding="utf-8")]
    rng.shuffle(docs)
    split = [[s for s in _SENTENCE.split(d["text"]) if s.strip()] for d in docs]
    seed_docs = [s for s in split if len(s) >= 3][:seeds]
    every = [s for doc in split for s in doc]
    claims = [
        json.loads(line)["text"] for line in (dataset / "queries.jsonl").open(encoding="utf-8")
    ]
    rng.shuffle(claims)
    return seed_docs, every, claims


def add_chunks(
    index: Any,
    start: int,
    stop: int,
    seed_docs: list[list[str]],
    seed_vectors: Any,
    every: list[str],
    rng: random.Random,
    budget_s: float,
) -> int:
    """Chunks ``start``..``stop`` written to the live collection; returns the count written
    (fewer when ``budget_s`` ran out)."""
    import numpy as np

    gen = np.random.default_rng(start + 1)
    dim = seed_vectors.shape[1]
    noise = ((1.0 / COSINE**2 - 1.0) / dim) ** 0.5  # per-component std for that cosine
    batch: list[Any] = []
    t0 = last = time.perf_counter()
    i = start
    while i < stop:
        k = rng.randrange(len(seed_docs))
        sentences = seed_docs[k]
        width = rng.randint(3, 6)
        first = rng.randrange(max(1, len(sentences) - width + 1))
        parts = sentences[first : first + width]
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(every))
        text = " ".join(parts)
        vec = seed_vectors[k] + gen.standard_normal(dim).astype(np.float32) * noise
        vec /= np.linalg.norm(vec)
        batch.append(
            synthetic_point(
                index, i, text, vec.tolist(), source=f"synthetic/doc{i // 4}.txt", groups=["all"]
            )
        )
        i += 1
        if len(batch) == 512:
            index.store.upsert(index.collection, batch)
            batch = []
            now = time.perf_counter()
            if now - last >= 15 or i % 50_000 == 0:
                rate = (i - start) / (now - t0)
                log(
                    f"  {i:,} chunks ({rate:,.0f}/s, ~{(stop - i) / rate:,.0f} s to {stop:,}), RSS {rss_mb():,.0f} MB"
                )
                last = now
            if now - t0 > budget_s:
                log(
                    f"  build budget of {budget_s:.0f} s spent at {i:,} chunks: measuring what is there"
                )
                break
    if batch:
        index.store.upsert(index.collection, batch)
    return i - start


def measure(pipeline: Any, claims: list[str]) -> dict[str, Any]:
    from rag.core.types import Query

    ms: list[float] = []
    empty = 0
    for claim in claims:
        t = time.perf_counter()
        answer = pipeline.run(Query(claim, generate=False))
        ms.append((time.perf_counter() - t) * 1000)
        empty += not answer.citations
    return {
        "queries": len(ms),
        "p50_ms": _pct(ms, 50),
        "p95_ms": _pct(ms, 95),
        "p99_ms": _pct(ms, 99),
        "mean_ms": round(statistics.fmean(ms), 3),
        "queries_without_passages": empty,
    }


def raw_calls(index: Any, claims: list[str]) -> dict[str, Any]:
    """Where the time goes: the calls retrieval is made of, each alone (query embedding,
    dense search, BM25 search), with the read filter the retriever adds."""
    from rag.core.access import cli_reader, read_filter

    collection = index.collection
    flt = read_filter(cli_reader(index.settings, None))
    limit = max(index.settings.retrieval.candidates, index.settings.retrieval.top_k)
    parts: dict[str, list[float]] = {"embed_query": [], "dense_search": [], "bm25_search": []}
    for claim in claims:
        t0 = time.perf_counter()
        vec = index.embedder.embed_query(claim).tolist()
        t1 = time.perf_counter()
        index.store.search_dense(collection, vec, limit, flt)
        t2 = time.perf_counter()
        index.store.search_sparse(collection, index.sparse.embed_query(claim), limit, flt)
        t3 = time.perf_counter()
        parts["embed_query"].append((t1 - t0) * 1000)
        parts["dense_search"].append((t2 - t1) * 1000)
        parts["bm25_search"].append((t3 - t2) * 1000)
    return {k: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for k, v in parts.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000", help="chunk counts, ascending")
    ap.add_argument("--queries", type=int, default=200, help="claims measured at each size")
    ap.add_argument("--seeds", type=int, default=800, help="SciFact abstracts embedded for real")
    ap.add_argument("--max-build-seconds", type=float, default=900.0, help="cap per size step")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--dataset", type=Path, default=SCIFACT, help="a BEIR folder (corpus, queries)")
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.queries, args.seeds = "2000,4000", 20, min(args.seeds, 40)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    os.environ.pop("RAG_DATA_DIR", None)

    from rag.core.config import load_settings
    from rag.core.types import Query
    from rag.indexing.index import Index
    from rag.query.pipeline import QueryPipeline

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="rag-scale-"))
    data_dir = tmp / "data"
    settings = load_settings(
        overrides={
            "data_dir": str(data_dir),
            "generation": {"chain": ["extractive"]},
            "cache": {"enabled": False},
            "evals": {"after_sync": False},
        }
    )
    index = Index(settings)
    index.open(create=True)
    seed_docs, every, claims = load_corpus(args.dataset, args.seeds, rng)
    t = time.perf_counter()
    seed_vectors = index.embedder.embed_documents([" ".join(s) for s in seed_docs])
    log(
        f"{len(seed_docs)} SciFact abstracts embedded in {time.perf_counter() - t:.0f} s; "
        f"{len(every):,} sentences to sample from"
    )
    pipeline = QueryPipeline(index, settings)
    pipeline.warm_up()
    for claim in claims[:10]:  # warm-up (no cache keeps their results)
        pipeline.run(Query(claim, generate=False))
    base_rss, base_disk = rss_mb(), disk_mb(data_dir)

    results: dict[str, Any] = {
        "goal": f"retrieval p95 (query embedding included) <= {GOAL_MS:.0f} ms at {GOAL_CHUNKS:,} chunks",
        "machine": {"cpus": os.cpu_count()},
        "config": {
            "sizes": sizes,
            "queries": args.queries,
            "seed_abstracts": len(seed_docs),
            "cosine_to_seed": COSINE,
            "retrieval": settings.retrieval.model_dump(mode="json"),
        },
        "sizes": [],
    }
    built = 0
    capped = False
    try:
        for size in sizes:
            log(f"building to {size:,} chunks")
            t = time.perf_counter()
            added = add_chunks(
                index, built, size, seed_docs, seed_vectors, every, rng, args.max_build_seconds
            )
            built += added
            write_s = time.perf_counter() - t
            collection = index.collection
            assert collection is not None
            index.store.flush(collection)
            t = time.perf_counter()
            index.store.optimize(collection)  # what a finished sync does: the HNSW index
            optimize_s = time.perf_counter() - t
            log(f"  {built:,} chunks written in {write_s:.0f} s, indexed in {optimize_s:.0f} s")
            queries = claims[: args.queries]  # the same claims at every size
            pipeline.run(Query(claims[-1], generate=False))  # the store's lazy parts after optimize
            row: dict[str, Any] = {
                "chunks": built,
                "write_seconds": round(write_s, 1),
                "optimize_seconds": round(optimize_s, 1),
                "retrieval": measure(pipeline, queries),
                "raw_calls": raw_calls(index, queries),
                "rss_growth_mb": round(rss_mb() - base_rss, 1),
                "disk_mb": round(disk_mb(data_dir) - base_disk, 1),
            }
            row["rss_mb_per_100k"] = round(row["rss_growth_mb"] / built * 100_000, 1)
            row["disk_mb_per_100k"] = round(row["disk_mb"] / built * 100_000, 1)
            results["sizes"].append(row)
            r = row["retrieval"]
            log(
                "  raw calls (p50/p95 ms): "
                + ", ".join(
                    f"{k} {v['p50_ms']:.1f}/{v['p95_ms']:.1f}" for k, v in row["raw_calls"].items()
                )
            )
            log(
                f"  {built:,} chunks: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
                f"RSS +{row['rss_growth_mb']:,.0f} MB ({row['rss_mb_per_100k']:,.0f} MB per 100k), "
                f"disk {row['disk_mb']:,.0f} MB ({row['disk_mb_per_100k']:,.0f} MB per 100k)"
            )
            if built < size:
                capped = True
                break
    finally:
        pipeline.close()
        index.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    rows: list[dict[str, Any]] = results["sizes"]
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = (b["retrieval"]["p95_ms"] - a["retrieval"]["p95_ms"]) / (b["chunks"] - a["chunks"])
        p95_1m = b["retrieval"]["p95_ms"] + slope * (1_000_000 - b["chunks"])
    else:
        p95_1m = float("nan")
    last = rows[-1] if rows else None
    results["projection_1m"] = {
        "rss_gb": round(last["rss_mb_per_100k"] * 10 / 1024, 2) if last else None,
        "disk_gb": round(last["disk_mb_per_100k"] * 10 / 1024, 2) if last else None,
        "p95_ms_linear": round(p95_1m, 1) if finite(p95_1m) else None,
        "method": "per-chunk memory of the largest size x 1M; p95 extended linearly from the "
        "two measured sizes",
    }
    results["build_capped"] = capped
    at_goal = next((r for r in rows if r["chunks"] >= GOAL_CHUNKS), None)
    p95_goal = (
        at_goal["retrieval"]["p95_ms"]
        if at_goal
        else (rows[0]["retrieval"]["p95_ms"] if rows else float("nan"))
    )
    goals = [
        Goal(
            "p95_at_100k",
            f"retrieval p95 <= {GOAL_MS:.0f} ms at {GOAL_CHUNKS:,} chunks",
            p95_goal,
            at_goal is not None and p95_goal <= GOAL_MS,
        ),
        Goal(
            "passages",
            "every query retrieved passages",
            sum(r["retrieval"]["queries_without_passages"] for r in rows),
            bool(rows) and not any(r["retrieval"]["queries_without_passages"] for r in rows),
            check=True,
        ),
        Goal(
            "sizes_built",
            "every size built (or the cap reported)",
            [r["chunks"] for r in rows],
            bool(rows) and (capped or len(rows) == len(sizes)),
            check=True,
        ),
    ]
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
