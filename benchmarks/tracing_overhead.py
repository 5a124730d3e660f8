"""What Langfuse tracing costs a query, and what a failing Langfuse costs it: one run, p50 ratios.

    .venv/bin/python benchmarks/tracing_overhead.py [--queries 150] [--load-queries 40]
        [--json-out FILE] [--smoke] [--report-only]

The embedded default query path (examples/docs in Qdrant Edge, MiniLM, the extractive
chain; the answer cache off, so every query runs the whole path) is run in-process through
five pipelines over one index:

- ``off``: no tracer (what a deployment without ``LANGFUSE_*`` keys runs);
- ``on``: the real Langfuse SDK exporting to a loopback stand-in that decodes every OTLP
  batch and score (tests/langfuse_standin.py), export-time PII masking (rag.guards.pii) included;
- ``refused``, ``503``, ``stall``: the same, with Langfuse refusing connections, answering
  503 to everything, or accepting requests and never answering.

Measurements are interleaved: each query slot runs every arm once, in a random order, with
the same question, so no arm runs on warmer caches or a quieter machine than another.

Goals (exit status 1 when one is missed; ``--smoke`` enforces only the checks):

1. tracing on costs <= 5 % of p50: p50(on) / p50(off) <= 1.05;
2. a failing Langfuse leaves requests alone: p50(arm) / p50(off) <= 1.10 for refused, 503
   and stall.

Checks (enforced in smoke runs too): every query answered with no error, in every arm and
under load (4 threads at once on each failing arm); every ``on`` query's trace reached the
stand-in (it decodes them); each tracer's shutdown returned within
``tracing.shutdown_timeout_seconds`` + 1 s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

GOAL = (
    "tracing on: p50 <= 1.05x tracing off; Langfuse refusing, answering 503 or stalling: "
    "p50 <= 1.10x tracing off; no errors"
)
QUESTIONS = [
    "How long are database backups kept?",
    "When do new engineers start doing on-call shifts?",
    "How many API requests per minute does the free tier get?",
    "How soon after a SEV1 starts must the status page be updated?",
    "In which region are backup copies stored?",
    "How many approvals does a pull request need before merging?",
    "What is the recovery time objective for the customer database?",
    "When is the blameless postmortem held after an incident?",
]
ARMS = ("off", "on", "refused", "503", "stall")
SHUTDOWN_TIMEOUT = 2.0


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150, help="query slots (each runs every arm)")
    ap.add_argument(
        "--load-queries", type=int, default=40, help="queries per failing arm under load"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.queries, args.load_queries = 6, 8

    from rag.core.config import DEFAULT_CONFIG, load_settings
    from rag.core.types import Query
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.observability import tracing_for
    from rag.query.pipeline import QueryPipeline
    from tests.langfuse_standin import LangfuseStandIn, refused_url

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="tracing-bench-"))
    base = {
        "data_dir": str(tmp / "data"),
        "generation": {"chain": ["extractive"]},
        "cache": {"enabled": False},
        "evals": {"after_sync": False},
    }
    settings = load_settings(DEFAULT_CONFIG, base)
    index = Index(settings)
    index.open(create=True)
    report = Ingestor(index).sync_folder(ROOT / "examples" / "docs")
    assert report.failed == 0, report.failures

    servers = {
        "on": LangfuseStandIn("ok").__enter__(),
        "503": LangfuseStandIn("503").__enter__(),
        "stall": LangfuseStandIn("stall").__enter__(),
    }
    urls = {"on": servers["on"].url, "503": servers["503"].url, "stall": servers["stall"].url}
    urls["refused"] = refused_url()
    pipelines: dict[str, Any] = {"off": QueryPipeline(index, settings)}
    tracings: dict[str, Any] = {}
    for arm in ARMS[1:]:
        arm_settings = load_settings(
            DEFAULT_CONFIG,
            {
                **base,
                "tracing": {
                    "public_key": f"pk-lf-bench-{arm}-{uuid.uuid4().hex[:8]}",
                    "secret_key": "sk-lf-bench",
                    "base_url": urls[arm],
                    "shutdown_timeout_seconds": SHUTDOWN_TIMEOUT,
                },
            },
        )
        tracings[arm] = tracing_for(arm_settings)
        assert tracings[arm].enabled, f"tracing did not start for {arm}"
        pipelines[arm] = QueryPipeline(index, arm_settings, tracer=tracings[arm].tracer)
    for p in pipelines.values():
        p.warm_up()
    # Warm-up: every arm answers every question once (models, caches, the PII engine).
    for q in QUESTIONS:
        for p in pipelines.values():
            p.run(Query(question=q, tenant="default"))

    latencies: dict[str, list[float]] = {arm: [] for arm in ARMS}
    errors: dict[str, int] = dict.fromkeys(ARMS, 0)
    on_traces: list[str] = []
    for slot in range(args.queries):
        question = QUESTIONS[slot % len(QUESTIONS)]
        order = list(ARMS)
        rng.shuffle(order)
        for arm in order:
            started = time.perf_counter()
            try:
                answer = pipelines[arm].run(Query(question=question, tenant="default"))
            except Exception as exc:  # noqa: BLE001 - counted: a check
                errors[arm] += 1
                print(f"{arm}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            latencies[arm].append((time.perf_counter() - started) * 1000.0)
            if not answer.answer:
                errors[arm] += 1
            if arm == "on" and answer.trace_id:
                on_traces.append(answer.trace_id)

    # Under load: four threads at once on each failing arm.
    load_errors: dict[str, int] = {}
    for arm in ("refused", "503", "stall"):
        pipeline = pipelines[arm]

        def ask(i: int, pipeline: Any = pipeline) -> bool:
            try:
                return bool(pipeline.run(Query(question=QUESTIONS[i % len(QUESTIONS)])).answer)
            except Exception:  # noqa: BLE001
                return False

        with ThreadPoolExecutor(4) as pool:
            ok = list(pool.map(ask, range(args.load_queries)))
        load_errors[arm] = ok.count(False)

    # Every traced query of the `on` arm reached the stand-in (decoded there).
    stand_in = servers["on"]
    wanted = set(on_traces)
    arrived = stand_in.wait_for(
        lambda s: wanted <= {x.trace_id for x in s.spans if x.name == "query"}, timeout=30
    )
    exported = len(wanted & {x.trace_id for x in stand_in.spans if x.name == "query"})

    shutdown_s: dict[str, float] = {}
    for arm, tracing in tracings.items():
        started = time.monotonic()
        tracing.shutdown(SHUTDOWN_TIMEOUT)
        shutdown_s[arm] = round(time.monotonic() - started, 3)
    for p in pipelines.values():
        p.close()
    index.close()
    for server in servers.values():
        server.stop()

    p50 = {arm: _p50(latencies[arm]) for arm in ARMS}
    ratios = {arm: round(p50[arm] / p50["off"], 4) for arm in ARMS[1:]}
    results: dict[str, Any] = {
        "goal": GOAL,
        "queries": args.queries,
        "load_queries": args.load_queries,
        "p50_ms": p50,
        "p95_ms": {
            arm: round(statistics.quantiles(v, n=20)[-1], 3) if len(v) >= 2 else None
            for arm, v in latencies.items()
        },
        "ratio_to_off": ratios,
        "errors": errors,
        "load_errors": load_errors,
        "on_traces": {"sent": len(wanted), "exported": exported},
        "shutdown_s": shutdown_s,
    }
    goals = [
        Goal("tracing_overhead", "p50(on)/p50(off) <= 1.05", ratios["on"], ratios["on"] <= 1.05),
        *(
            Goal(
                f"failing_{arm}",
                f"p50({arm})/p50(off) <= 1.10",
                ratios[arm],
                ratios[arm] <= 1.10,
            )
            for arm in ("refused", "503", "stall")
        ),
        Goal(
            "no_errors",
            "every query answered, in every arm and under load",
            {"errors": errors, "load": load_errors},
            not any(errors.values()) and not any(load_errors.values()),
            check=True,
        ),
        Goal(
            "traces_exported",
            "every traced query decoded by the stand-in",
            f"{exported}/{len(wanted)}",
            arrived and len(wanted) == args.queries,
            check=True,
        ),
        Goal(
            "shutdown_bounded",
            f"each tracer stops within {SHUTDOWN_TIMEOUT + 1:.0f} s",
            shutdown_s,
            all(v <= SHUTDOWN_TIMEOUT + 1.0 for v in shutdown_s.values()),
            check=True,
        ),
        Goal("measured", "every p50 measured", p50, finite(*p50.values()), check=True),
    ]
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
