"""What PII scrubbing costs: per query (pii.enabled true vs false) and at ingest, same run.

Usage: python benchmarks/pii_overhead.py [--queries N] [--json-out FILE] [--smoke] [--report-only]

1. Embedded default (examples/docs, Qdrant Edge + MiniLM, extractive chain): pipeline
   ``run`` p50 with ``pii.enabled`` true and false, queries interleaved in random order over
   two pipelines on one index. Nothing leaves the process there, so scrubbing adds only the
   always-on sinks (log records).
2. The ``openai`` backend (an in-process OpenAI-protocol stand-in that answers at once, the
   one benchmarks/query.py uses): the same comparison where each question (with seeded
   PII) is analysed, passages are pseudonymised from the spans stored at ingest and the
   answer is restored. Reported next to it: the same with the stored spans ignored (every
   passage analysed at query time), which is what ingest-time detection saves; and the time
   spent in the PII layer itself per query, timed in process (``p50_ms_pii_work``): the
   end-to-end difference over loopback HTTP is bimodal on a busy machine (~25 or ~50 ms a
   request, whichever pipeline), so the goal reads the in-process figure.
3. Ingest of examples/docs, copied ``--ingest-copies`` times (embedding included): pii off vs
   spans recorded per chunk (``openai`` in the chain) vs ``pii.ingest: redact``, as ratios
   (the fastest of ``--ingest-rounds`` interleaved runs of each).

Goals (exit 1 when missed; ``--smoke`` enforces only the checks):
- p50 added per query <= 10 ms on the embedded default
- p50 PII work per query <= 10 ms with the openai backend (spans stored at ingest)
- check: every figure measured, every query answered
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

QUESTIONS = [
    "How long are production backups kept? I am john.miller@gmail.com.",
    "Who approves a change to the payment service? Ask Sarah Connor.",
    "What is the rate limit for the public API? Call me at (415) 555-0134.",
    "How do I rotate the API keys for the production cluster?",
    "When does a new engineer join the on-call rotation? My name is David Chen.",
    "Which regions store copies of customer data? Reply to +44 20 7946 0958.",
    "What happens when a page is not acknowledged within five minutes?",
    "How many vacation days do new employees get? Employee Maria Garcia asks.",
]


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _ingest(docs: Path, data: Path, overrides: dict[str, Any], embedder: Any) -> float:
    from rag.core.config import load_settings
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor

    shutil.rmtree(data, ignore_errors=True)
    settings = load_settings(overrides={"data_dir": str(data), **overrides})
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    for t in index.transforms:
        t.warm_up()
    t0 = time.perf_counter()
    report = Ingestor(index).sync_folder(docs)
    elapsed = time.perf_counter() - t0
    assert report.failed == 0, report.failures
    index.close()
    return elapsed


class PiiWork:
    """Time spent in the PII layer on a query's request path, measured in process: the
    request pseudonymised (question analysed, passages' stored values placed, the
    recall-first check) and the streamed answer restored. The end-to-end p50 difference on
    loopback HTTP is bimodal on a busy machine (a pipeline's requests take ~25 or ~50 ms for
    reasons of the socket, not of PII), so this is the figure the goal reads."""

    def __init__(self) -> None:
        import rag.guards.pii.outbound as outbound
        from rag.guards.pii.policy import StreamRestorer

        self.spent = 0.0
        self._outbound = outbound
        self._restorer = StreamRestorer
        self._originals = (
            outbound.pseudonymise_request,
            StreamRestorer.feed,
            StreamRestorer.flush,
        )
        outbound.pseudonymise_request = self._timed(self._originals[0])  # type: ignore[assignment]
        StreamRestorer.feed = self._timed(self._originals[1])  # type: ignore[method-assign]
        StreamRestorer.flush = self._timed(self._originals[2])  # type: ignore[method-assign]

    def _timed(self, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - t0

        return wrapper

    def close(self) -> None:
        self._outbound.pseudonymise_request = self._originals[0]  # type: ignore[assignment]
        self._restorer.feed = self._originals[1]  # type: ignore[method-assign]
        self._restorer.flush = self._originals[2]  # type: ignore[method-assign]


def _compare(
    index: Any,
    on: Any,
    off: Any,
    n: int,
    seed: int,
    work: PiiWork | None = None,
    distinct: bool = False,
) -> dict[str, Any]:
    """Interleaved p50 of run() for the two settings' pipelines on one index; ``distinct``:
    each query's text differs (a ticket number appended), so nothing is cached by text."""
    from rag.core.types import Query
    from rag.query.pipeline import QueryPipeline

    pipes = {"on": QueryPipeline(index, on), "off": QueryPipeline(index, off)}
    for p in pipes.values():
        p.warm_up()
        for q in QUESTIONS[:3]:
            p.run(Query(q))
    times: dict[str, list[float]] = {"on": [], "off": []}
    pii_ms: list[float] = []
    answered = 0
    rng = random.Random(seed)
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        if distinct:
            q = f"{q} Ticket {1000 + i}."
        order = ["on", "off"]
        rng.shuffle(order)
        for side in order:
            if work is not None:
                work.spent = 0.0
            t0 = time.perf_counter()
            a = pipes[side].run(Query(q))
            times[side].append((time.perf_counter() - t0) * 1000)
            if work is not None and side == "on":
                pii_ms.append(work.spent * 1000)
            answered += bool(a.answer)
    for p in pipes.values():
        p.close()
    extra = {"p50_ms_pii_work": _p50(pii_ms)} if pii_ms else {}
    return {
        **extra,
        "p50_ms_pii_on": _p50(times["on"]),
        "p50_ms_pii_off": _p50(times["off"]),
        "p50_added_ms": round(_p50(times["on"]) - _p50(times["off"]), 3),
        "queries": n,
        "answered": answered,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--queries", type=int, default=80)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--distinct-questions",
        action="store_true",
        help="every query a different text (a ticket number appended): the question-span "
        "cache never hits, as with a stream of new questions",
    )
    ap.add_argument("--ingest-copies", type=int, default=5)
    ap.add_argument("--ingest-rounds", type=int, default=2)
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.queries = min(args.queries, 8)
        args.ingest_copies, args.ingest_rounds = 1, 1
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    # Every index here lives in a temporary data dir of its own (RAG_* beats settings overrides).
    os.environ.pop("RAG_DATA_DIR", None)

    from rag.core.config import load_settings
    from rag.guards.pii import detector_for
    from rag.indexing.embedding import embedder_for
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor

    sys.path.insert(0, str(ROOT / "tests" / "rag"))
    from chat_server import ChatServer  # the in-process OpenAI-protocol stand-in

    base = Path(tempfile.mkdtemp(prefix="pii-overhead-"))
    docs = ROOT / "examples" / "docs"
    server = ChatServer(reply="Backups are kept for 35 days [1].")
    try:
        common = {"data_dir": str(base / "q"), "cache": {"enabled": False}}
        default_on = load_settings(overrides={**common})
        embedder = embedder_for(default_on)
        detector_for(default_on.pii).warm_up()
        results: dict[str, Any] = {"docs": str(docs.relative_to(ROOT))}

        # 1. the embedded default
        index = Index(default_on, embedder=embedder)
        index.open(create=True)
        Ingestor(index).sync_folder(docs)
        off = load_settings(overrides={**common, "pii": {"enabled": False}})
        results["embedded_default"] = _compare(
            index, default_on, off, args.queries, args.seed, distinct=args.distinct_questions
        )
        index.close()

        # 2. the openai backend: chunks carry their spans (openai in the chain at ingest)
        oa = {"chain": ["openai"], "openai": {"base_url": server.base_url}}
        common2 = {"data_dir": str(base / "oa"), "cache": {"enabled": False}, "generation": oa}
        on2 = load_settings(overrides=common2)
        index2 = Index(on2, embedder=embedder)
        index2.open(create=True)
        Ingestor(index2).sync_folder(docs)
        off2 = load_settings(overrides={**common2, "pii": {"enabled": False}})
        work = PiiWork()
        try:
            results["openai_backend"] = _compare(
                index2, on2, off2, args.queries, args.seed, work, args.distinct_questions
            )
        finally:
            work.close()
        # the same without the stored spans: another detector fingerprint ignores them
        unstored = load_settings(overrides={**common2, "pii": {"allow_list": ["-"]}})
        detector_for(unstored.pii).warm_up()
        results["openai_backend_passages_analysed_per_query"] = _compare(
            index2, unstored, off2, max(4, args.queries // 4), args.seed
        )
        index2.close()
        sent = server.requests[-1]["messages"][-1]["content"] if server.requests else ""
        results["placeholders_in_last_request"] = sent.count("<")

        # 3. ingest: examples/docs copied --ingest-copies times (each copy its own documents),
        # the three modes interleaved, the fastest of --ingest-rounds runs each
        corpus = base / "corpus"
        for i in range(args.ingest_copies):
            shutil.copytree(docs, corpus / f"copy{i}")
        modes = {
            "off": {"pii": {"enabled": False}},
            "spans": {"generation": oa},
            "redact": {"pii": {"ingest": "redact"}},
        }
        best: dict[str, float] = {}
        for _ in range(args.ingest_rounds):
            for mode, overrides in modes.items():
                took = _ingest(corpus, base / f"i-{mode}", overrides, embedder)
                best[mode] = min(best.get(mode, took), took)
        t_off, t_spans, t_redact = best["off"], best["spans"], best["redact"]
        results["ingest"] = {
            "copies_of_docs": args.ingest_copies,
            "seconds_pii_off": round(t_off, 3),
            "seconds_spans_recorded": round(t_spans, 3),
            "seconds_redact": round(t_redact, 3),
            "ratio_spans_recorded": round(t_spans / t_off, 3),
            "ratio_redact": round(t_redact / t_off, 3),
        }
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)

    emb, oa_r = results["embedded_default"], results["openai_backend"]
    goals = [
        Goal(
            "embedded_default_p50_added_ms", "<= 10", emb["p50_added_ms"], emb["p50_added_ms"] <= 10
        ),
        Goal(
            "openai_p50_pii_work_ms",
            "<= 10 (PII work per query on the request path, in process)",
            oa_r["p50_ms_pii_work"],
            oa_r["p50_ms_pii_work"] <= 10,
        ),
        Goal(
            "figures",
            "every figure measured, every query answered",
            [emb["answered"], oa_r["answered"]],
            finite(
                emb["p50_added_ms"],
                oa_r["p50_added_ms"],
                oa_r["p50_ms_pii_work"],
                results["ingest"]["ratio_redact"],
            )
            and emb["answered"] == 2 * emb["queries"]
            and oa_r["answered"] == 2 * oa_r["queries"],
            check=True,
        ),
    ]
    results["goal"] = (
        "p50 added per query <= 10 ms (embedded default; PII work with the openai backend)"
    )
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
