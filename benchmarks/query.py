"""Query-path latency on the embedded default (Qdrant Edge + MiniLM), all figures from one run.

    .venv/bin/python benchmarks/query.py [--sizes 10000 100000] [--queries 200] [--openai-url URL]

1. retrieve + rerank + pack p50/p95 at each collection size, query embedding included
   (goal: p95 <= 20 ms at 100k chunks), next to the raw calls it is built on — MiniLM
   encoding the query plus one dense and one sparse store search — as the baseline ratio.
2. framework overhead per query: the whole pipeline (``run``, extractive generator off the
   clock) minus the model and store calls inside it (query embedding, dense/sparse search,
   generator) (goal: <= 3 ms).
3. time to first token through the pipeline minus the raw server time to first token for the
   same messages (goal: <= 50 ms). With ``--openai-url`` (a vLLM server: ``bash
   scripts/vllm/serve.sh``) against it; otherwise against an in-process OpenAI-protocol
   server that answers at once, which isolates our own share.

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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

    from rag.documents import chunk_id, document_id, text_hash
    from rag.store import StoredPoint

    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    gen = np.random.default_rng(seed)
    collection = index.collection
    batch: list[StoredPoint] = []
    dim = index.embedder.dimension
    for i in range(n):
        source = f"doc{i // 4}.md"
        doc = document_id(index.settings.tenant, source)
        text = " ".join(rng.choices(vocab, weights, k=100)).capitalize() + "."
        h = text_hash(text)
        vec = gen.standard_normal(dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        start = (i % 4) * 600
        batch.append(
            StoredPoint(
                id=chunk_id(doc, h),
                payload={
                    "doc_id": doc,
                    "source": source,
                    "text": text,
                    "text_hash": h,
                    "title": f"Doc {i // 4}",
                    "section": [f"Doc {i // 4}"],
                    "page": None,
                    "start": start,
                    "end": start + len(text),
                    "chunk_index": i % 4,
                    "tenant": index.settings.tenant,
                },
                dense=vec.tolist(),
                sparse=index.sparse.embed_document(text),
            )
        )
        if len(batch) == 512:
            index.store.upsert(collection, batch)
            batch = []
    index.store.upsert(collection, batch)
    index.store.flush(collection)
    index.store.optimize(collection)  # what a finished sync does: builds the HNSW index


class Stopwatch:
    """Wraps callables and adds up the seconds spent inside them (model and store calls)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0  # a wrapped call inside another (the generator embedding) counts once

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - t

        return timed


def bench_size(n: int, queries: int, embedder: Any, base_dir: Path) -> dict[str, Any]:
    from rag.config import load_settings
    from rag.generate.extractive import ExtractiveGenerator
    from rag.index import Index
    from rag.pipeline import QueryPipeline
    from rag.types import Query

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
    qs = [
        QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" (variant {i})")
        for i in range(queries)
    ]
    for q in qs[:10]:  # warm caches and the store's lazy parts
        pipeline.run(Query(q, generate=False))

    # Baseline: the raw calls retrieval is made of.
    raw: list[float] = []
    coll = index.collection
    flt = {"tenant": settings.tenant}
    limit = max(settings.retrieval.candidates, settings.retrieval.top_k)
    for q in qs:
        t = time.perf_counter()
        vec = embedder.embed([q])[0].tolist()
        index.store.search_dense(coll, vec, limit, flt)
        index.store.search_sparse(coll, index.sparse.embed_query(q), limit, flt)
        raw.append((time.perf_counter() - t) * 1000)

    prepared: list[float] = []
    for q in qs:
        t = time.perf_counter()
        pipeline.run(
            Query(q, generate=False)
        )  # retrieve, rerank, prompt, pack (+ the answer object)
        prepared.append((time.perf_counter() - t) * 1000)

    # Overhead: whole run() minus time inside the embedder, the store searches and the generator.
    watch = Stopwatch()
    embed, dense, sparse = embedder.embed, index.store.search_dense, index.store.search_sparse
    embedder.embed = watch.wrap(embed)
    index.store.search_dense = watch.wrap(dense)
    index.store.search_sparse = watch.wrap(sparse)
    extractive = pipeline.chain.generators[0]
    assert isinstance(extractive, ExtractiveGenerator)
    original_stream = extractive.stream
    extractive.stream = watch.wrap(lambda request: list(original_stream(request)))  # type: ignore[method-assign]
    overhead: list[float] = []
    try:
        for q in qs:
            before = watch.seconds
            t = time.perf_counter()
            pipeline.run(q)
            overhead.append(((time.perf_counter() - t) - (watch.seconds - before)) * 1000)
    finally:
        embedder.embed = embed
        index.store.search_dense, index.store.search_sparse = dense, sparse
        extractive.stream = original_stream  # type: ignore[method-assign]
    pipeline.close()
    index.close()
    return {
        "chunks": n,
        "populate_seconds": round(build_s, 1),
        "retrieve_rerank_pack_ms": _summary(prepared),
        "raw_embed_and_search_ms": _summary(raw),
        "ratio_p50_to_raw": round(_pct(prepared, 50) / max(1e-9, _pct(raw, 50)), 3),
        "framework_overhead_ms": _summary(overhead),
        "goals": {
            "p95_le_20ms": _pct(prepared, 95) <= 20.0,
            "overhead_p50_le_3ms": _pct(overhead, 50) <= 3.0,
        },
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

    from rag.config import load_settings
    from rag.generate import GenerationRequest, GeneratorChain
    from rag.generate.openai import OpenAIGenerator
    from rag.index import Index
    from rag.ingest import Ingestor
    from rag.pipeline import QueryPipeline, default_stages
    from rag.stages import QueryState
    from rag.types import Query, TokenEvent

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
    timing = TimingTransport()
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
            stream.close()
        raise RuntimeError("the pipeline yielded no token")

    raw_ttft(), pipeline_ttft()  # warm both paths
    through, raw, before, after = [], [], [], []
    for i in range(trials):
        if i % 2:
            r = raw_ttft()
            p, b, a = pipeline_ttft()
        else:
            p, b, a = pipeline_ttft()
            r = raw_ttft()
        through.append(p), raw.append(r), before.append(b), after.append(a)
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
        "goal_added_p50_le_50ms": _pct(diff, 50) <= 50.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        help="threads for the query embedding (default: the embedded default, all cores)",
    )
    args = ap.parse_args()

    from rag.config import load_settings
    from rag.embedding import Embedder

    embedder = Embedder(load_settings().embedding.model_copy(update={"threads": args.threads}))
    embedder.warm_up()
    results: dict[str, Any] = {
        "short_text_backend": embedder.short_text_backend,
        "query_embedding_ms": {},
    }
    # The query encoder alone, side by side: what the pipeline uses vs sentence-transformers' PyTorch.
    import torch

    encoders = {"pipeline (" + embedder.short_text_backend + ")": lambda q: embedder.embed([q])}
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
    with tempfile.TemporaryDirectory(prefix="rag-query-bench-") as tmp:
        for n in args.sizes:
            res = bench_size(n, args.queries, embedder, Path(tmp))
            results["sizes"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
        results["ttft"] = [bench_ttft(embedder, Path(tmp), None, args.model, args.ttft_trials)]
        print(json.dumps(results["ttft"][0]), file=sys.stderr, flush=True)
        if args.openai_url:
            results["ttft"].append(
                bench_ttft(embedder, Path(tmp), args.openai_url, args.model, args.ttft_trials)
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
