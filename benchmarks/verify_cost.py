"""What verification adds to an answer, beside the raw model call: one run, p50s per answer.

    .venv/bin/python benchmarks/verify_cost.py [--rounds 3] [--token-delay-ms 20]
        [--json-out FILE] [--smoke] [--report-only]

``examples/docs`` in an isolated index (Qdrant Edge, MiniLM), the production path with
``generation.chain: [openai]`` against the scripted OpenAI-compatible server
(``evals/chat_server.py``) answering with the hand-written verify cases
(``evals/verify_docs.jsonl``: paraphrases, syntheses, wrong values, inventions, wrong
citations, answers to unanswerable questions), streaming one word every ``--token-delay-ms``
(20 ms: ~50 tokens/s, a GPU vLLM's rate per stream). For each answer, interleaved:

- ``raw``: the model call inside the real pipeline, streamed — from the request to the
  model's last piece (the openai backend, timed from inside the chain);
- ``added``: from the model's last piece to the finished answer (the ``done`` event): the
  latency verification adds to the answer. The check of a sentence runs while the model
  writes the next one (and a finished-looking sentence is embedded then); what remains is
  the last sentence's check and the verdict;
- ``verify_cpu``: the same pieces fed through the stage's ``StreamingVerifier`` alone, with
  nothing to overlap (the question's embedding ready, as the stage computes it during the
  model call): the verification work itself — sentence split, markers, values grounded,
  polarity, coverage, the relevance check's sentence embedding. ``verify_lexical``: the same
  without the relevance check (``min_relevance: 0``): what the claim checks cost.

The scorer's embedding cache is emptied before each answer: every answer pays for its own
question and sentences, as a new question does.

Goal (exit status 1 when missed; ``--report-only`` reports, ``--smoke`` enforces only the
checks): verification adds <= 5 ms p50 per answer (``added``). Checks: every answer verified
with no error; the replayed verdicts equal the pipeline's answers.
"""

from __future__ import annotations

import argparse
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

from benchmarks._common import Goal, add_goal_arguments, finish, finite, prepare  # noqa: E402

GOAL_MS = 5.0


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan")}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


class _Timed:
    """A generator backend's stream, with the moments it started and ended noted."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.started: float | None = None
        self.ended: float | None = None

    def reset(self) -> None:
        self.started = self.ended = None

    def stream(self, request: Any) -> Any:
        self.started = time.perf_counter()
        yield from self.inner.stream(request)
        self.ended = time.perf_counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="passes over the cases")
    ap.add_argument(
        "--token-delay-ms", type=float, default=20.0, help="the scripted model's delay per word"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()

    from evals.chat_server import ChatServer
    from evals.datasets import Dataset, open_dataset_index
    from evals.verify import default_docs_cases, load_cases
    from rag.core.config import DEFAULT_CONFIG, load_settings
    from rag.core.types import DoneEvent, Query
    from rag.generate import GenerationRequest
    from rag.generate.base import Usage
    from rag.indexing.embedding import embedder_for
    from rag.query.pipeline import QueryPipeline
    from rag.query.stages import Generate

    cases = load_cases(default_docs_cases())
    rounds = args.rounds
    delay = args.token_delay_ms
    if args.smoke:
        cases, rounds, delay = cases[::16], 1, 0.0
    rng = random.Random(args.seed)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="verify-cost-"))
    settings = load_settings(
        DEFAULT_CONFIG,
        {
            "data_dir": str(tmp / "data"),
            "evals": {"after_sync": False},
            "cache": {"enabled": False},
        },
    )
    embedder = embedder_for(settings)
    embedder.warm_up()
    docs = ROOT / "examples" / "docs"
    dataset = Dataset(name="docs", split="cost", queries={}, qrels={}, root=docs, docs=docs)
    dsi = open_dataset_index(settings, dataset, embedder)
    server = ChatServer(token_delay=delay / 1000.0)
    times: dict[str, list[float]] = {k: [] for k in ("raw", "pipeline", "added", "cpu", "lexical")}
    errors: list[str] = []
    mismatches: list[str] = []
    try:
        base = dsi.index.settings.model_copy(deep=True)
        base.generation.chain = ["openai"]
        base.generation.openai.base_url = server.base_url
        base.generation.openai.max_retries = 0
        base.pii.enabled = False  # the scripted model cites passages by their words
        lexical = base.model_copy(deep=True)
        lexical.generation.verify.min_relevance = 0.0
        pipeline = QueryPipeline(dsi.index, base)
        pipeline.warm_up()
        stage = pipeline.stage("generate")
        lexical_stage = QueryPipeline(dsi.index, lexical).stage("generate")
        assert isinstance(stage, Generate) and isinstance(lexical_stage, Generate)
        generator = stage.chain.primary
        timed = _Timed(generator)
        stage.chain.generators = [timed]  # type: ignore[list-item]  # the backend, timed
        slots = [c for _ in range(rounds) for c in cases]
        rng.shuffle(slots)
        for case in slots:
            try:
                server.reply = case.template()
                state = prepare(pipeline, case.question)
                assert state.prompt is not None
                request = GenerationRequest(
                    messages=state.messages,
                    question=state.question,
                    context=state.context,
                    max_tokens=state.max_tokens,
                    temperature=0.0,
                    stop=state.prompt.stop,
                    extra={"stream": True},
                )
                pieces = [p for p in generator.stream(request) if not isinstance(p, Usage)]
                stage.scorer._cache.clear()  # a new question: its own embeddings
                timed.reset()
                full = None
                for event in pipeline.stream(Query(case.question)):
                    if isinstance(event, DoneEvent):
                        done_at = time.perf_counter()
                        full = event.answer
                assert full is not None and timed.ended is not None and timed.started is not None
                times["raw"].append((timed.ended - timed.started) * 1000.0)
                times["added"].append((done_at - timed.ended) * 1000.0)
                times["pipeline"].append(float(full.timings_ms["generate"]))
                for arm, which in (("cpu", stage), ("lexical", lexical_stage)):
                    which.scorer._cache.clear()
                    which.scorer.prepare(state.question)  # done during the model call
                    release = which._verifier(state)
                    t0 = time.perf_counter()
                    for piece in pieces:
                        release.feed(piece)
                    verdict = release.close()
                    release.drain()
                    times[arm].append((time.perf_counter() - t0) * 1000.0)
                    if arm == "cpu" and verdict.answer != full.answer:
                        mismatches.append(case.id)
            except Exception as exc:  # noqa: BLE001 - counted, and a failed check
                errors.append(f"{case.id}: {type(exc).__name__}: {exc}")
    finally:
        server.close()
        dsi.close()
        shutil.rmtree(tmp, ignore_errors=True)
    added = _stats(times["added"])
    result: dict[str, Any] = {
        "goal": f"verification adds <= {GOAL_MS} ms p50 per answer beside the raw model call",
        "answers": len(times["raw"]),
        "token_delay_ms": delay,
        "raw_model_call_ms": _stats(times["raw"]),
        "generate_stage_ms": _stats(times["pipeline"]),
        "verification_added_ms": added,
        "verify_cpu_ms": _stats(times["cpu"]),
        "verify_lexical_cpu_ms": _stats(times["lexical"]),
        "errors": errors[:10],
        "mismatches": mismatches[:10],
        "seconds": round(time.perf_counter() - started, 1),
    }
    goals = [
        Goal(
            "verification added per answer",
            f"p50 <= {GOAL_MS} ms beside the raw model call",
            added["p50"],
            finite(added["p50"]) and added["p50"] <= GOAL_MS,
        ),
        Goal(
            "every answer verified, as the pipeline verifies it",
            "no errors, replayed verdicts equal the pipeline's answers",
            {"answers": len(times["raw"]), "errors": len(errors), "mismatches": len(mismatches)},
            bool(times["raw"]) and not errors and not mismatches,
            check=True,
        ),
    ]
    return finish(result, goals, args, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
