"""The default eval suite over the live knowledge base, and the report it leaves behind.

Suites, each when it applies:
- ``golden``: retrieval metrics on the golden set (``evals.suite``, else ``evals/golden.jsonl``),
  skipped when the set names none of the indexed files (it is about another knowledge base);
- ``answers``: the full query path on the golden questions (``evals.answers: true``), which
  calls the generator once per question;
- ``canary``: the label-free canary (always, on a non-empty index);
- ``injection``: planted and direct prompt-injection attacks on fixtures of its own
  (``evals/injection.py``; with ``injection.enabled``);
- ``verify``: with the golden set (``evals.verify``), what a model writes over its documents
  — paraphrases, syntheses, wrong values, inventions — through the production path with a
  scripted model, held-out half of ``evals/verify_docs.jsonl`` (``evals/verify.py``).

The report goes to ``<data_dir>/reports/<UTC timestamp>/`` and its summary to the manifest key
``last_eval``, which ``rag status --json`` shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.answers import evaluate_answers, pipeline_runner
from evals.canary import run_canary
from evals.golden import default_golden_path, golden_dataset, load_golden
from evals.injection import run_injection_suite
from evals.report import save_report, summary
from evals.retrieval import evaluate_retrieval
from evals.verify import run_verify_live
from rag.guards.injection import flagged_chunks

if TYPE_CHECKING:
    from rag.core.config import Settings
    from rag.indexing.index import Index

__all__ = ["EvalCancelled", "index_info", "run_default_suite", "save_dataset_report"]


class EvalCancelled(RuntimeError):
    """The suite was asked to stop (daemon shutting down) before it finished."""


def index_info(index: Index) -> dict[str, Any]:
    collection = index.collection or index.open(create=False)
    return {
        "collection": collection,
        "backend": index.store.name,
        "documents": len(index.manifest.records(collection, status="ok")),
        "chunks": index.store.count(collection),
        "embedding": index.embedder.identity().as_dict(),
        # What embedded the questions (embedding.query_precision as warm-up resolved it).
        "query_precision": index.embedder.query_precision,
        "chunking": index.settings.chunking.model_dump(),
        "retrieval": index.settings.retrieval.model_dump(),
    }


def save_dataset_report(
    settings: Settings,
    name: str,
    result: dict[str, Any],
    index: Index,
    dataset_index: dict[str, Any],
) -> Path:
    """``rag eval retrieval|answers --report``: one suite named ``name``, saved and compared like
    the default suite's reports (under ``settings``' data dir); returns the report folder."""
    info = {**index_info(index), "dataset_index": dataset_index}
    folder, _ = save_report(settings, {name: result}, "manual", f"rag eval on {name}", info, [])
    return folder


def run_default_suite(
    index: Index,
    trigger: str = "manual",
    reason: str | None = None,
    suite_path: Path | None = None,
    answers: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run the suites that apply to the live index, write the report, record ``last_eval``."""
    settings = index.settings
    ev = settings.evals
    started = time.perf_counter()
    collection = index.collection or index.open(create=False)
    suites: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    golden_path = suite_path or default_golden_path(ev.suite)
    if golden_path is not None:
        items = load_golden(golden_path)
        dataset = golden_dataset(items, golden_path)
        indexed = {r.source for r in index.manifest.records(collection, status="ok")}
        expected = {s for i in items for s in i.sources}
        if expected and not expected & indexed:
            notes.append(
                f"golden set {golden_path} names none of the indexed files, so it is about another "
                "knowledge base: skipped (point evals.suite at your own golden set)"
            )
        else:
            result = evaluate_retrieval(
                index, dataset.queries, dataset.qrels, top_k=ev.top_k, should_stop=should_stop
            )
            missing = sorted(expected - indexed)
            result.update(
                kind="retrieval",
                dataset={**dataset.describe(), "path": str(golden_path)},
                notes=[f"expected file(s) not in the index: {', '.join(missing)}"]
                if missing
                else [],
            )
            suites["golden"] = result
            if (ev.answers if answers is None else answers) and dataset.answers:
                run = pipeline_runner(index, settings)
                try:
                    answered = evaluate_answers(
                        run,
                        dataset.queries,
                        dataset.answers,
                        dataset.qrels,
                        should_stop=should_stop,
                    )
                finally:
                    run.close()
                answered.update(
                    kind="answers", dataset={**dataset.describe(), "path": str(golden_path)}
                )
                suites["answers"] = answered
            if ev.verify and golden_path == default_golden_path(None):
                # the hand-written cases are about the example documents the default golden
                # set covers; another knowledge base has its own golden set, not these cases
                suites["verify"] = run_verify_live(index, should_stop=should_stop)
    if index.store.count(collection, {"tenant": settings.tenant}) > 0:
        canary = run_canary(index, ev.canary_samples, ev.canary_top_k, should_stop=should_stop)
        canary["kind"] = "canary"
        suites["canary"] = canary
    else:
        notes.append("the index is empty: nothing to evaluate yet")
    if settings.injection.enabled:
        # Planted and direct prompt-injection attacks on the suite's own fixture index.
        suites["injection"] = run_injection_suite(
            settings,
            index.embedder,
            live_flagged=len(flagged_chunks(index.store, collection)),
            should_stop=should_stop,
            baseline=False,  # `rag eval injection` compares with the defence off
        )
    if should_stop is not None and should_stop():
        raise EvalCancelled("eval suite stopped before it finished; no report written")
    notes.append(f"suite ran in {time.perf_counter() - started:.1f}s")
    folder, report = save_report(settings, suites, trigger, reason, index_info(index), notes)
    index.manifest.set_value("last_eval", summary(report, folder))
    return folder, report
