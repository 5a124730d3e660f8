"""Query-path latency on the embedded default (Qdrant Edge + MiniLM), all figures from one run.

    .venv/bin/python benchmarks/query.py [--sizes 10000 100000] [--queries 200]
        [--openai-url URL] [--ttft-trials 40] [--json-out FILE] [--smoke] [--report-only]

Goals (exit status 1 when one is missed; ``--report-only`` reports without failing,
``--smoke`` enforces only the sanity checks, for tiny sizes in the test suite):

1. retrieve + rerank + pack p95 <= 20 ms at every measured size up to 100k chunks, query
   embedding included. Baselines, the raw calls it is built on (MiniLM encoding the query,
   one dense and one BM25 store search), measured two ways: sequentially, and overlapped
   as ``rag/query/retrieve.py`` does it (BM25 searched in a worker thread while the query is
   embedded); the pipeline's p50 is quoted as a ratio of each.
2. framework overhead p50 <= 3 ms: the whole pipeline (``run``, extractive generator
   included) minus the time inside model and store calls (query embedding, dense/sparse
   search, generator). The time subtracted is the *union* of those calls' intervals across
   threads, not their sum (the BM25 search overlaps the embedding): see ``Stopwatch``.
3. time to first token through the pipeline minus the raw server time to first token for
   the same messages, p50 <= 50 ms. With ``--openai-url`` (a vLLM server: ``bash
   scripts/vllm/serve.sh``) against it too; always against an in-process OpenAI-protocol
   server that answers at once, which isolates our own share.

Checks (enforced in smoke runs too): every query retrieved passages; every figure measured.

Measurements are interleaved: for each query slot the raw sequential, raw overlapped,
pipeline and pipeline-under-stopwatch runs go back to back in a random order, each with its
own query text, so no side runs first on cold caches or warms another's.

Chunks are synthetic (random-Zipf texts; dense vectors are random unit vectors, sparse ones
are real BM25 of the text) and written straight to the store: search cost depends on the
number of points, the dimension and the posting lists, not on what the vectors mean, and
embedding 100k real chunks would take an hour here. Queries are real sentences, embedded
for real.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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

GOAL = (
    "retrieve+rerank+pack p95 <= 20 ms at every size up to 100k chunks; framework overhead "
    "p50 <= 3 ms; time to first token added by the pipeline p50 <= 50 ms"
)
GOAL_CHUNKS = 100_000

QUERIES = [
    "How long are production backups kept?",
    "When does a new engineer join the on-call rotation?",
    "What is the rate limit for the public API?",
    "Who approves a change to the payment service?",
    "Which regions store copies of customer data?",
    "How do I rotate the API keys for the production cluster?",
    "What happens when a page is not acknowledged within five minutes?",
    "How many vacation days do new employees get?",
]


def _pct(values: list[float], q: float) -> float:
    from evals.metrics import percentile  # the one `rag eval` reports latencies with

    return percentile(values, q)


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(_pct(ms, 50), 3),
        "p95": round(_pct(ms, 95), 3),
        "mean": round(statistics.fmean(ms), 3),
    }


def _vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {
        "".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(size * 2)
    }
    real = " ".join(QUERIES).lower().replace("?", "").split()
    return real + sorted(words)[:size]


def populate(index: Any, n: int, seed: int = 1) -> None:
    """Write ``n`` synthetic chunks (100 words each) into the live collection."""
    import numpy as np

    from rag.store import StoredPoint

    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    gen = np.random.default_rng(seed)
    collection = index.collection
    batch: list[StoredPoint] = []
    dim = index.embedder.dimension
    for i in range(n):
        text = " ".join(rng.choices(vocab, weights, k=100)).capitalize() + "."
        vec = gen.standard_normal(dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        batch.append(
            synthetic_point(index, i, text, vec.tolist(), source=f"doc{i // 4}.md", stride=600)
        )
        if len(batch) == 512:
            index.store.upsert(collection, batch)
            batch = []
    index.store.upsert(collection, batch)
    index.store.flush(collection)
    index.store.optimize(collection)  # what a finished sync does: builds the HNSW index


class Stopwatch:
    """Records the wall-clock intervals spent inside wrapped callables, from any thread.

    A request's framework overhead is its wall time minus the *union* of these intervals
    within it, not their sum. The pipeline searches BM25 in a worker thread while the query
    is embedded, so those two calls overlap: summing them would subtract the overlapped time
    twice (and can push the "overhead" below zero), while the union subtracts exactly the
    time during which at least one model or store call was running. What is left is the time
    the request spent in none of them: our own code on the critical path, thread hand-offs
    and queueing included. Framework work done in one thread while another thread is inside
    a model call is hidden behind that call and, rightly, not counted: it adds no latency.
    Nested wrapped calls (the generator embedding sentences) lie inside their outer
    interval and count once. Intervals are appended under a lock, so wrapped calls may run
    in any thread; the wrapper's own cost (two clock reads, one append) is charged to the
    framework, i.e. the figure errs high.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._intervals: list[tuple[float, float]] = []

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self._intervals.append((start, end))

        return timed

    def reset(self) -> None:
        with self._lock:
            self._intervals.clear()

    def covered(self, start: float, end: float) -> float:
        """Seconds of [start, end] inside at least one wrapped call (the union of intervals)."""
        with self._lock:
            spans = sorted((max(a, start), min(b, end)) for a, b in self._intervals)
        total = 0.0
        cur_a = cur_b = None
        for a, b in spans:
            if b <= a:
                continue
            if cur_b is None or a > cur_b:
                if cur_b is not None and cur_a is not None:
                    total += cur_b - cur_a
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        if cur_b is not None and cur_a is not None:
            total += cur_b - cur_a
        return total


def bench_size(
    n: int, queries: int, embedder: Any, base_dir: Path, seed: int = 7
) -> dict[str, Any]:
    """One collection size; every measurement interleaved per query, in a random order.

    Per query slot four measurements run back to back, shuffled: the raw calls sequentially
    (embed, dense search, BM25 search), the raw calls overlapped as ``rag/query/retrieve.py`` does
    them (BM25 in a worker thread while the query is embedded, then the dense search), the
    pipeline without generation, and the whole pipeline under the stopwatch. Each gets its own
    query text (no cache serves one from another), so neither side warms the other's caches
    and drift over the run (page cache, CPU clocks, other load) hits all four alike.
    """
    from concurrent.futures import ThreadPoolExecutor

    from rag.core.config import load_settings
    from rag.core.types import Query
    from rag.generate.extractive import ExtractiveGenerator
    from rag.indexing.index import Index
    from rag.query.pipeline import QueryPipeline

    settings = load_settings(
        overrides={"data_dir": str(base_dir / f"n{n}"), "generation": {"chain": ["extractive"]}}
    )
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    t = time.perf_counter()
    populate(index, n)
    build_s = time.perf_counter() - t
    pipeline = QueryPipeline(index, settings)
    pipeline.warm_up()
    kinds = ("raw_sequential", "raw_overlapped", "pipeline", "pipeline_stopwatch")

    def text(i: int, k: int) -> str:
        return f"{QUERIES[i % len(QUERIES)]} (variant {i}.{k})"

    for i in range(10):  # warm caches and the store's lazy parts (texts not measured later)
        pipeline.run(Query(f"{QUERIES[i % len(QUERIES)]} (warm-up {i})", generate=False))

    coll = index.collection
    assert coll is not None
    flt = {"tenant": settings.tenant}
    limit = max(settings.retrieval.candidates, settings.retrieval.top_k)
    store: Any = index.store
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-sparse")

    def sparse(q: str) -> list[Any]:
        hits: list[Any] = store.search_sparse(coll, index.sparse.embed_query(q), limit, flt)
        return hits

    def dense(q: str) -> list[Any]:
        hits: list[Any] = store.search_dense(coll, embedder.embed([q])[0].tolist(), limit, flt)
        return hits

    def raw_sequential(q: str) -> float:
        t = time.perf_counter()
        dense(q)
        sparse(q)
        return (time.perf_counter() - t) * 1000

    def raw_overlapped(q: str) -> float:
        t = time.perf_counter()
        pending = pool.submit(sparse, q)
        dense(q)
        pending.result()
        return (time.perf_counter() - t) * 1000

    empty: list[str] = []

    def prepared(q: str) -> float:
        t = time.perf_counter()
        answer = pipeline.run(Query(q, generate=False))  # retrieve, rerank, prompt, pack
        ms = (time.perf_counter() - t) * 1000
        if not answer.citations:
            empty.append(q)
        return ms

    # Overhead: whole run() minus the union of time inside the embedder, the store searches
    # and the generator (see Stopwatch). The wrappers are installed for this measurement only.
    watch = Stopwatch()
    extractive = pipeline.chain.generators[0]
    assert isinstance(extractive, ExtractiveGenerator)
    original_stream = extractive.stream
    originals: tuple[Any, ...] = (embedder.embed, store.search_dense, store.search_sparse)
    wrapped = tuple(watch.wrap(fn) for fn in originals)
    wrapped_stream = watch.wrap(lambda request: list(original_stream(request)))

    def with_stopwatch(q: str) -> float:
        embedder.embed, store.search_dense, store.search_sparse = wrapped
        extractive.stream = wrapped_stream  # type: ignore[method-assign]
        try:
            watch.reset()
            t0 = time.perf_counter()
            pipeline.run(q)
            t1 = time.perf_counter()
        finally:
            embedder.embed, store.search_dense, store.search_sparse = originals
            extractive.stream = original_stream  # type: ignore[method-assign]
        return ((t1 - t0) - watch.covered(t0, t1)) * 1000

    measure = {
        "raw_sequential": raw_sequential,
        "raw_overlapped": raw_overlapped,
        "pipeline": prepared,
        "pipeline_stopwatch": with_stopwatch,
    }
    ms: dict[str, list[float]] = {k: [] for k in kinds}
    rng = random.Random(seed + n)
    try:
        for i in range(queries):
            order = list(enumerate(kinds))
            rng.shuffle(order)
            for k, kind in order:
                ms[kind].append(measure[kind](text(i, k)))
    finally:
        pool.shutdown()
        pipeline.close()
        index.close()
    prep, seq, ovl, overhead = (
        ms["pipeline"],
        ms["raw_sequential"],
        ms["raw_overlapped"],
        ms["pipeline_stopwatch"],
    )
    return {
        "chunks": n,
        "queries": queries,
        "populate_seconds": round(build_s, 1),
        "order": "interleaved: per query the four measurements in a random order",
        "retrieve_rerank_pack_ms": _summary(prep),
        "raw_embed_and_search_ms": {
            "sequential": _summary(seq),
            "overlapped": _summary(ovl),
        },
        "ratio_p50_to_raw_sequential": round(_pct(prep, 50) / max(1e-9, _pct(seq, 50)), 3),
        "ratio_p50_to_raw_overlapped": round(_pct(prep, 50) / max(1e-9, _pct(ovl, 50)), 3),
        "framework_overhead_ms": _summary(overhead),
        "overhead_method": "wall time minus the union of intervals inside embed, dense/sparse "
        "search and the generator, across threads",
        "queries_without_passages": len(empty),
    }


def _first_content(line: str) -> bool:
    """An SSE line whose delta carries answer text (the role-only first chunk does not count)."""
    if not line.startswith("data:") or line.strip() == "data: [DONE]":
        return False
    try:
        choices = json.loads(line[5:]).get("choices") or [{}]
    except ValueError:
        return False
    return bool((choices[0].get("delta") or {}).get("content"))


class TimingTransport:
    """Wraps the generator's HTTP transport: when the request left, when the first answer text came."""

    def __init__(self) -> None:
        import httpx

        self._inner = httpx.HTTPTransport()
        self.sent = self.first_content = 0.0

    def handle_request(self, request: Any) -> Any:
        import httpx

        self.sent, self.first_content = time.perf_counter(), 0.0
        response = self._inner.handle_request(request)
        outer = self

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Any:
                for chunk in response.stream:  # type: ignore[union-attr]
                    if not outer.first_content and any(
                        _first_content(x) for x in chunk.decode(errors="replace").splitlines()
                    ):
                        outer.first_content = time.perf_counter()
                    yield chunk

            def close(self) -> None:
                response.close()

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=Stream(),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


def bench_ttft(
    embedder: Any, base_dir: Path, openai_url: str | None, model: str, trials: int
) -> dict[str, Any]:
    """Pipeline TTFT vs the raw server TTFT for the same messages, paired per trial, the order
    alternating so neither side always gets the server's warm prefix cache; plus the pipeline's
    own share measured inside it: before the request leaves, after the first text arrives."""
    import httpx

    from rag.core.config import load_settings
    from rag.core.types import Query, TokenEvent
    from rag.generate import GenerationRequest, GeneratorChain
    from rag.generate.openai import OpenAIGenerator
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.query.pipeline import QueryPipeline, default_stages
    from rag.query.stages import QueryState

    server = None
    if openai_url is None:
        sys.path.insert(0, str(ROOT / "tests" / "rag"))
        from chat_server import ChatServer  # the in-process OpenAI-protocol stand-in

        server = ChatServer(reply="Backups are kept for 35 days [1].")
        openai_url = server.base_url
    docs = base_dir / "ttft-docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "backups.md").write_text(
        "# Backups\n\nProduction backups are kept for 35 days in a second region.\n"
    )
    name = "stand-in" if server is not None else "server"
    settings = load_settings(
        overrides={
            "data_dir": str(base_dir / f"ttft-{name}"),
            "generation": {"chain": ["openai"], "openai": {"base_url": openai_url, "model": model}},
        }
    )
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    Ingestor(index).sync_folder(docs)
    timing: Any = TimingTransport()
    # The generator gets the timing transport through the public seam: a chain of our own.
    generator = OpenAIGenerator(
        settings.generation.openai, settings.generation.timeout_seconds, transport=timing
    )
    chain = GeneratorChain([generator], settings.generation.timeout_seconds)
    pipeline = QueryPipeline(index, settings, stages=default_stages(index, settings, chain=chain))
    pipeline.warm_up()
    question = "How long are production backups kept?"
    client = httpx.Client(timeout=60)

    def prepare() -> QueryState:
        """The stages before generation, run one by one as the pipeline does."""
        state = QueryState(query=Query(question), question=question)
        for stage in pipeline.stages:
            if stage.name == "generate":
                return state
            list(stage.run(state))
        raise RuntimeError("no generate stage")

    def raw_ttft() -> float:
        state = prepare()
        assert state.prompt is not None
        # The very body the pipeline sends (stop strings included: they alone cost vLLM ~50 ms
        # to first token here), built by the generator itself.
        temperature = state.prompt.temperature if state.prompt.temperature is not None else 0.0
        request = GenerationRequest(
            messages=state.messages,
            question=question,
            context=state.context,
            max_tokens=state.max_tokens,
            temperature=temperature,
            stop=state.prompt.stop,
        )
        body = generator._body(request, stream=True)
        t = time.perf_counter()
        with client.stream("POST", openai_url.rstrip("/") + "/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if _first_content(line):
                    return (time.perf_counter() - t) * 1000
        raise RuntimeError("the server sent no answer text")

    def pipeline_ttft() -> tuple[float, float, float]:
        t = time.perf_counter()
        stream = pipeline.stream(Query(question))
        try:
            for event in stream:
                if isinstance(event, TokenEvent):
                    now = time.perf_counter()
                    return (
                        (now - t) * 1000,
                        (timing.sent - t) * 1000,
                        (now - timing.first_content) * 1000,
                    )
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        raise RuntimeError("the pipeline yielded no token")

    raw_ttft(), pipeline_ttft()  # warm both paths
    through: list[float] = []
    raw: list[float] = []
    before: list[float] = []
    after: list[float] = []
    for i in range(trials):
        if i % 2:
            r = raw_ttft()
            p, b, a = pipeline_ttft()
        else:
            p, b, a = pipeline_ttft()
            r = raw_ttft()
        through.append(p)
        raw.append(r)
        before.append(b)
        after.append(a)
    client.close()
    pipeline.close()
    index.close()
    if server is not None:
        server.close()
    diff = [a - b for a, b in zip(through, raw, strict=False)]
    own = [b + a for b, a in zip(before, after, strict=False)]
    return {
        "server": "in-process OpenAI-protocol stand-in (answers at once)"
        if server is not None
        else openai_url,
        "trials": trials,
        "pipeline_ttft_ms": _summary(through),
        "raw_server_ttft_ms": _summary(raw),
        "added_ms": _summary(diff),
        "pipeline_share_ms": {
            "before_request_leaves": _summary(before),
            "after_first_text_arrives": _summary(after),
            "total": _summary(own),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--openai-url",
        default=None,
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:8100/v1",
    )
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--ttft-trials", type=int, default=40)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for the query embedding (default: embedding.threads, else all cores)",
    )
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    add_goal_arguments(ap)
    args = ap.parse_args()

    from rag.core.config import load_settings
    from rag.indexing.embedding import Embedder

    embedding = load_settings().embedding
    if args.threads is not None:
        embedding = embedding.model_copy(update={"threads": args.threads})
    embedder = Embedder(embedding)
    embedder.warm_up()
    results: dict[str, Any] = {
        "goal": GOAL,
        "short_text_backend": embedder.short_text_backend,
        "query_embedding_ms": {},
    }
    # The query encoder alone, side by side: what the pipeline uses vs sentence-transformers' PyTorch.
    import torch

    encoders: dict[str, Callable[[str], Any]] = {
        "pipeline (" + embedder.short_text_backend + ")": lambda q: embedder.embed([q])
    }
    encoders["sentence-transformers torch"] = lambda q: embedder._model.encode(
        [q], show_progress_bar=False
    )
    for name, encode in encoders.items():
        with torch.inference_mode():
            for q in QUERIES:
                encode(q)
            ms = []
            for i in range(args.queries):
                t = time.perf_counter()
                encode(QUERIES[i % len(QUERIES)] + f" {i}")
                ms.append((time.perf_counter() - t) * 1000)
        results["query_embedding_ms"][name] = _summary(ms)
    print(json.dumps(results), file=sys.stderr, flush=True)
    results["sizes"] = []
    goals: list[Goal] = []
    with tempfile.TemporaryDirectory(prefix="rag-query-bench-") as tmp:
        for n in args.sizes:
            res = bench_size(n, args.queries, embedder, Path(tmp))
            results["sizes"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
            p95 = res["retrieve_rerank_pack_ms"]["p95"]
            overhead = res["framework_overhead_ms"]["p50"]
            if n <= GOAL_CHUNKS:  # a smaller collection must meet it too
                goals.append(
                    Goal(f"retrieve+rerank+pack p95 at {n} chunks", "<= 20 ms", p95, p95 <= 20.0)
                )
            goals.append(
                Goal(f"framework overhead p50 at {n} chunks", "<= 3 ms", overhead, overhead <= 3.0)
            )
            goals.append(
                Goal(
                    f"every query at {n} chunks retrieved passages, figures measured",
                    "0 empty, finite",
                    res["queries_without_passages"],
                    res["queries_without_passages"] == 0
                    and finite(p95, overhead, res["raw_embed_and_search_ms"]["overlapped"]["p95"]),
                    check=True,
                )
            )
        results["ttft"] = [bench_ttft(embedder, Path(tmp), None, args.model, args.ttft_trials)]
        print(json.dumps(results["ttft"][0]), file=sys.stderr, flush=True)
        if args.openai_url:
            results["ttft"].append(
                bench_ttft(embedder, Path(tmp), args.openai_url, args.model, args.ttft_trials)
            )
    for r in results["ttft"]:
        added = r["added_ms"]["p50"]
        goals.append(Goal(f"TTFT added p50 ({r['server']})", "<= 50 ms", added, added <= 50.0))
        goals.append(
            Goal(
                f"TTFT trials completed ({r['server']})",
                f"{args.ttft_trials} trials, finite",
                r["trials"],
                r["trials"] == args.ttft_trials and finite(added),
                check=True,
            )
        )
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
