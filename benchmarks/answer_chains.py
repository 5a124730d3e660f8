"""Generation chains side by side, in one run: the figures ``generation.chain`` is chosen by.

    .venv/bin/python benchmarks/answer_chains.py [--golden evals/golden.jsonl --docs examples/docs]
        [--dataset ../shared/datasets/squad2 --sample 100]
        [--dataset evals/pydocs --dataset-docs /usr/share/doc/python3.11/html] [--chains extractive local,extractive ...]
        [--cache DIR] [--json-out FILE] [--smoke]

Each answer set is indexed once (an isolated index under ``--cache``, as ``rag eval answers``
does); then, for each chain, a fresh ``QueryPipeline`` with ``generation.chain`` set to it is
warmed up (models load outside the timings, one question asked untimed) and every question
goes through the full query path — retrieve, rerank, pack, generate with streaming
verification, verify — exactly as ``rag eval answers`` runs it (``evals.answers``). The chains
take turns on the same index, in the same process, so their figures compare.

Per chain and answer set: ``right`` (answerable questions whose answer contains a gold
string), abstention on unanswerable questions, false abstention on answerable ones, citation
precision, latency p50/p95 of the whole answer, the share of answers marked ``degraded`` and
which backend answered.

Sets: the golden set over a folder (``--golden`` + ``--docs``; default ``evals/golden.jsonl``
over ``examples/docs``), and any BEIR answer set (``--dataset``, e.g. squad2 with
``--sample 100``).

Goals, for the first chain listed on the golden set (the figures the default is held to):
right >= 0.90, abstention on unanswerable >= 0.80, false abstention <= 0.15, citation
precision >= 0.95, latency p50 <= 1500 ms. Checks: every question of every set and chain
answered without an error. The tables go to stderr, the JSON to stdout (``benchmarks/_common``:
``--report-only`` exits 0 whatever the figures; ``--smoke``, for tests/benchmarks/test_smoke.py:
six questions of each set, the extractive chain only unless ``--chains`` is given, checks
enforced and goals only reported).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

if TYPE_CHECKING:
    from evals.datasets import Dataset

DEFAULT_CHAINS = ["extractive", "local,extractive", "extractive,local"]
COLUMNS = (
    ("right", "answer_contains_gold"),
    ("abstain_unans", "abstention_rate_unanswerable"),
    ("false_abst", "false_abstention_rate_answerable"),
    ("cit_prec", "citation_precision"),
)


class Recording:
    """An eval ``QueryRunner`` that also remembers degraded/generator."""

    def __init__(self, runner: Callable[[str], Mapping[str, Any]]):
        self.runner = runner
        self.generators: Counter[str] = Counter()
        self.degraded = 0
        self.fallbacks = 0

    def __call__(self, question: str) -> Mapping[str, Any]:
        result = self.runner(question)
        self.generators[str(result.get("generator"))] += 1
        self.degraded += bool(result.get("degraded"))
        self.fallbacks += bool(result.get("fallbacks"))
        return result


def _sample(queries: dict[str, str], n: int | None) -> dict[str, str]:
    items = list(queries.items())
    if not n or n >= len(items):
        return queries
    return dict(items[round(i * len(items) / n)] for i in range(n))


def run_chain(
    chain: list[str], dataset: Dataset, dsi: Any, questions: dict[str, str]
) -> dict[str, Any]:
    from evals.answers import evaluate_answers, pipeline_runner

    settings = dsi.index.settings.model_copy(deep=True)
    settings.generation.chain = chain
    # The eval's own runner: models warmed up, the answer cache off (every answer afresh).
    pipeline = pipeline_runner(dsi.index, settings)
    try:
        runner = Recording(pipeline)
        runner(next(iter(questions.values())))  # untimed: first-query caches
        runner.generators.clear()
        runner.degraded = runner.fallbacks = 0
        assert dataset.answers is not None
        result = evaluate_answers(runner, questions, dataset.answers, dataset.qrels, dsi.to_doc)
    finally:
        pipeline.close()
    n = max(1, result["questions"])
    result["degraded_share"] = round(runner.degraded / n, 3)
    result["fallback_share"] = round(runner.fallbacks / n, 3)
    result["generators"] = dict(runner.generators)
    return result


def golden_as_dataset(golden: Path, docs: Path) -> Dataset:
    from evals.golden import golden_dataset, load_golden

    return replace(golden_dataset(load_golden(golden), golden), docs=docs.resolve())


def table(name: str, rows: list[dict[str, Any]]) -> str:
    head = f"{'chain':<22}" + "".join(f"{c:>14}" for c, _ in COLUMNS)
    head += f"{'p50_ms':>10}{'p95_ms':>10}{'degraded':>10}  answered by"
    lines = [f"== {name}", head]
    for r in rows:
        res = r["result"]
        cells = "".join(f"{'-' if res[k] is None else f'{res[k]:.3f}':>14}" for _, k in COLUMNS)
        lat = res["latency_ms"]
        lines.append(
            f"{r['chain']:<22}{cells}{lat['p50']:>10.0f}{lat['p95']:>10.0f}"
            f"{res['degraded_share']:>10.3f}  {res['generators']}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--golden", type=Path, default=ROOT / "evals" / "golden.jsonl")
    ap.add_argument("--docs", type=Path, default=ROOT / "examples" / "docs")
    ap.add_argument("--no-golden", action="store_true", help="skip the golden set")
    ap.add_argument("--dataset", type=Path, action="append", default=[], help="a BEIR answer set")
    ap.add_argument(
        "--dataset-docs",
        type=Path,
        action="append",
        default=[],
        help="the corpus folder of the --dataset at the same position (e.g. evals/pydocs)",
    )
    ap.add_argument("--split", default="test")
    ap.add_argument("--sample", type=int, default=None, help="N questions evenly spaced")
    ap.add_argument("--chains", nargs="+", default=None, help="comma-separated backends each")
    ap.add_argument("--cache", type=Path, default=None, help="eval index cache (evals.cache_dir)")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--per-query", action="store_true", help="keep each answer in --json-out")
    add_goal_arguments(ap)
    args = ap.parse_args()

    from evals.datasets import load_beir, open_dataset_index
    from rag.core.config import load_settings
    from rag.indexing.embedding import embedder_for

    chains = [
        c.split(",") for c in (args.chains or (["extractive"] if args.smoke else DEFAULT_CHAINS))
    ]
    overrides: dict[str, Any] = {}
    if args.cache:
        overrides["evals"] = {"cache_dir": str(args.cache)}
    settings = load_settings(overrides=overrides)
    embedder = embedder_for(settings)
    embedder.warm_up()

    sets: list[tuple[str, Dataset]] = []
    if not args.no_golden:
        sets.append(
            (f"{args.golden.name} over {args.docs}", golden_as_dataset(args.golden, args.docs))
        )
    for i, path in enumerate(args.dataset):
        docs = args.dataset_docs[i] if i < len(args.dataset_docs) else None
        sets.append((f"{path.name} (sample {args.sample})", load_beir(path, args.split, docs)))

    # What embedded the questions (embedding.query_precision as warm-up resolved it), and why.
    queries = embedder.query_precision_shown()
    print(f"queries embedded at {queries['resolved']}: {queries['reason']}", file=sys.stderr)
    report: dict[str, Any] = {
        "chains": [",".join(c) for c in chains],
        "query_precision": queries,
        "sets": {},
    }
    answered_all = True
    for name, dataset in sets:
        assert dataset.answers is not None, f"{name}: no answers"
        questions = {q: t for q, t in dataset.queries.items() if q in dataset.answers}
        questions = _sample(questions, 6 if args.smoke else args.sample)
        dsi = open_dataset_index(
            settings, dataset, embedder, echo=lambda m: print(m, file=sys.stderr)
        )
        rows = []
        try:
            for chain in chains:
                started = time.perf_counter()
                result = run_chain(chain, dataset, dsi, questions)
                if not args.per_query:
                    result.pop("per_query", None)
                print(
                    f"{name}: {','.join(chain)} done in {time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                )
                answered_all &= not result["errors"] and result["questions"] == len(questions)
                rows.append({"chain": ",".join(chain), "result": result})
        finally:
            dsi.close()
        report["sets"][name] = rows
        print(table(name, rows), file=sys.stderr)

    goals = [Goal("answered", "every question, no errors", answered_all, answered_all, True)]
    if not args.no_golden:
        first = next(iter(report["sets"].values()))[0]
        res = first["result"]
        p50 = res["latency_ms"]["p50"]

        def at_least(key: str, target: float) -> Goal:
            v = res[key]
            return Goal(
                f"golden.{key}", f">= {target} ({first['chain']})", v, finite(v) and v >= target
            )

        goals += [
            at_least("answer_contains_gold", 0.90),
            at_least("abstention_rate_unanswerable", 0.80),
            Goal(
                "golden.false_abstention_rate_answerable",
                f"<= 0.15 ({first['chain']})",
                res["false_abstention_rate_answerable"],
                finite(res["false_abstention_rate_answerable"])
                and res["false_abstention_rate_answerable"] <= 0.15,
            ),
            at_least("citation_precision", 0.95),
            Goal(
                "golden.latency_p50_ms",
                f"<= 1500 ({first['chain']})",
                p50,
                finite(p50) and p50 <= 1500,
            ),
        ]
    report["goal"] = (
        "on the golden set, for the first chain: right >= 0.90, abstention on unanswerable "
        ">= 0.80, false abstention <= 0.15, citation precision >= 0.95, p50 <= 1500 ms"
    )
    return finish(report, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
