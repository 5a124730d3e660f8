"""Release gates: a new index or prompt goes live only when the evals find it no worse.

- :func:`index_gate` — ``rag reindex`` (and the daemon's reindex: a model, transform or parser
  change): the retrieval and answer evals on the live collection and on the candidate, in one
  run, on the same questions (the golden set when it is about this knowledge base, else the
  canary's probes drawn from the live collection). The alias moves only when no quality
  metric of the candidate is worse than the live one's by more than
  ``evals.regression_threshold``.
- :func:`prompt_gate` — ``rag prompts release answer@v4``: the golden-set answer eval with the
  candidate prompt and with the live one, same run, same threshold, before any traffic.

Each writes an eval report (``trigger`` ``reindex-gate`` / ``prompt-gate``) whose suites are
the live variant's (what keeps serving: later reports compare with it) and whose ``variants``
hold every variant's figures side by side (``collection:kb_v2``, ``prompt:answer@v4``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.answers import evaluate_answers, pipeline_runner
from evals.canary import sample_probes
from evals.golden import default_golden_path, golden_dataset, load_golden
from evals.metric_names import higher_is_better, is_quality_metric
from evals.report import flat_metrics, latest_report, reports_dir, save_report
from evals.retrieval import evaluate_retrieval
from evals.suite import index_info
from rag.query.prompts import PromptRegistry, parse_prompt_ref
from rag.query.releases import ReleaseError, release_store

if TYPE_CHECKING:
    from evals.datasets import Dataset
    from rag.indexing.index import Index

__all__ = ["compare_variants", "index_gate", "prompt_gate", "release_prompt"]

log = logging.getLogger("rag.evals")

Echo = Callable[[str], None]


def compare_variants(
    live: Mapping[str, float], candidate: Mapping[str, float], threshold: float
) -> list[dict[str, Any]]:
    """The quality metrics the candidate is worse at by more than ``threshold`` (absolute),
    in the report's regression shape (``previous`` = live, ``current`` = candidate)."""
    out: list[dict[str, Any]] = []
    for key, before in live.items():
        if key not in candidate or not is_quality_metric(key):
            continue
        delta = round(candidate[key] - before, 6)
        worse = -delta if higher_is_better(key) else delta
        if worse > threshold + 1e-12:
            out.append(
                {"metric": key, "previous": before, "current": candidate[key], "delta": delta}
            )
    return out


def _reason(regressions: list[dict[str, Any]], threshold: float, what: str) -> str | None:
    if not regressions:
        return None
    worst = "; ".join(
        f"{r['metric']} {r['previous']:.3f} -> {r['current']:.3f} ({r['delta']:+.3f})"
        for r in regressions
    )
    return (
        f"{what} is worse than the live one by more than evals.regression_threshold "
        f"({threshold}): {worst}"
    )


def _golden_for(index: Index) -> tuple[Path, Dataset] | None:
    """The golden set when it names files of ``index``'s collection (else it is about another
    knowledge base)."""
    path = default_golden_path(index.settings.evals.suite)
    if path is None:
        return None
    items = load_golden(path)
    indexed = {r.source for r in index.manifest.records(str(index.collection), status="ok")}
    expected = {s for i in items for s in i.sources}
    if expected and not expected & indexed:
        return None
    return path, golden_dataset(items, path)


def _suites(
    index: Index,
    golden: tuple[Path, Dataset] | None,
    probes: tuple[dict[str, str], dict[str, dict[str, int]]] | None,
    prompt: str | None = None,
    retrieval: bool = True,
) -> dict[str, dict[str, Any]]:
    """The gate's suites on one variant: golden retrieval and answers, or the canary's probes."""
    ev = index.settings.evals
    suites: dict[str, dict[str, Any]] = {}
    if golden is not None:
        path, dataset = golden
        described = {**dataset.describe(), "path": str(path)}
        if retrieval:
            result = evaluate_retrieval(index, dataset.queries, dataset.qrels, top_k=ev.top_k)
            result.update(kind="retrieval", dataset=described)
            suites["golden"] = result
        if dataset.answers and (ev.answers or not retrieval):
            run = pipeline_runner(index, index.settings, prompt)
            try:
                answered = evaluate_answers(run, dataset.queries, dataset.answers, dataset.qrels)
            finally:
                run.close()
            answered.update(kind="answers", dataset=described)
            suites["answers"] = answered
    elif probes is not None and probes[0]:
        queries, qrels = probes
        k = ev.canary_top_k
        result = evaluate_retrieval(index, queries, qrels, top_k=max(k, 10))
        hits = [
            q
            for q in result["per_query"]
            if q["first_relevant_rank"] is not None and q["first_relevant_rank"] <= k
        ]
        result[f"hit_rate@{k}"] = round(len(hits) / len(result["per_query"]), 6)
        result.update(kind="canary", top_k=k, samples=len(queries))
        suites["canary"] = result
    return suites


def _flat(suites: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, result in suites.items():
        out.update(flat_metrics(name, result))
    return out


def _report_baseline(index: Index, collection: str) -> dict[str, float] | None:
    """The latest report's metrics of ``collection``: the live figures when the live
    collection cannot be queried any more (it was embedded with another model)."""
    found = latest_report(reports_dir(index.settings))
    if found is None:
        return None
    _, report = found
    if (report.get("index") or {}).get("collection") != collection:
        return None
    return {k: float(v) for k, v in (report.get("metrics") or {}).items()}


def index_gate(echo: Echo | None = None) -> Callable[[Index, Index], dict[str, Any]]:
    """The gate ``rag.indexing.reindex.reindex`` asks before it switches the alias."""
    say = echo or log.info

    def gate(live: Index, candidate: Index) -> dict[str, Any]:
        settings = candidate.settings
        threshold = settings.evals.regression_threshold
        old, new = str(live.collection), str(candidate.collection)
        golden = _golden_for(live)
        probes = None if golden else sample_probes(live, settings.evals.canary_samples)
        stored = live.store.collection_metadata(old).get("embedding") or {}
        same_model = stored == candidate.embedder.identity().as_dict()
        say(f"reindex gate: evaluating {old} (live) and {new} (candidate)")
        candidate_suites = _suites(candidate, golden, probes)
        candidate_metrics = _flat(candidate_suites)
        live_suites: dict[str, dict[str, Any]] = {}
        if same_model:
            live_suites = _suites(live, golden, probes)
            live_metrics = _flat(live_suites)
            basis = "measured"
        else:
            # Another embedding model: the live collection cannot be searched with this one.
            live_metrics = _report_baseline(live, old) or {}
            basis = "last report"
        notes: list[str] = []
        if not candidate_metrics or not live_metrics:
            note = (
                f"nothing to compare {new} with: {'no golden set names the indexed files and the index is empty' if not candidate_metrics else f'{old} was embedded with another model and has no eval report'}; "
                "promoted unjudged (point evals.suite at a golden set to gate reindexes)"
            )
            say(f"reindex gate: {note}")
            return {"promote": True, "regressions": [], "reason": None, "note": note}
        regressions = compare_variants(live_metrics, candidate_metrics, threshold)
        verdict = {
            "promote": not regressions,
            "regressions": regressions,
            "reason": _reason(regressions, threshold, f"the new collection {new}"),
            "live": old,
            "candidate": new,
            "baseline": basis,
            "suites": sorted(candidate_suites),
            "threshold": threshold,
        }
        variants = {f"collection:{old}": live_metrics, f"collection:{new}": candidate_metrics}
        if live_suites:
            notes.append(
                f"reindex gate: {new} {'promoted' if not regressions else 'refused'}"
                + (f": {verdict['reason']}" if regressions else "")
            )
            folder, _ = save_report(
                settings,
                live_suites,
                "reindex-gate",
                f"{new} against {old}",
                index_info(live),
                notes,
                variants=variants,
            )
            verdict["report"] = str(folder / "report.html")
        verdict["variants"] = variants
        say(
            f"reindex gate: {new} refused — {verdict['reason']}"
            if regressions
            else f"reindex gate: {new} is no worse than {old}"
        )
        return verdict

    return gate


def prompt_gate(
    index: Index, live: str, candidate: str, echo: Echo | None = None
) -> dict[str, Any]:
    """The golden-set answer eval with prompt ``candidate`` and with ``live`` (both
    ``name@version``), same run; ``promote`` is False when the candidate regresses."""
    say = echo or log.info
    settings = index.settings
    threshold = settings.evals.regression_threshold
    index.collection = index.collection or index.open(create=False)
    golden = _golden_for(index)
    if golden is None or not golden[1].answers:
        note = (
            "no golden set with answers names the indexed files: the candidate is released "
            "unjudged (point evals.suite at your golden set)"
        )
        say(f"prompt gate: {note}")
        return {"promote": True, "regressions": [], "reason": None, "note": note}
    say(f"prompt gate: golden-set answers with {live} (live) and {candidate} (candidate)")
    live_suites = _suites(index, golden, None, prompt=live, retrieval=False)
    candidate_suites = _suites(index, golden, None, prompt=candidate, retrieval=False)
    live_metrics, candidate_metrics = _flat(live_suites), _flat(candidate_suites)
    regressions = compare_variants(live_metrics, candidate_metrics, threshold)
    variants = {f"prompt:{live}": live_metrics, f"prompt:{candidate}": candidate_metrics}
    verdict: dict[str, Any] = {
        "promote": not regressions,
        "regressions": regressions,
        "reason": _reason(regressions, threshold, f"prompt {candidate}"),
        "live": live,
        "candidate": candidate,
        "threshold": threshold,
        "variants": variants,
    }
    folder, _ = save_report(
        settings,
        live_suites,
        "prompt-gate",
        f"{candidate} against {live}",
        index_info(index),
        [
            f"prompt gate: {candidate} {'refused: ' + str(verdict['reason']) if regressions else 'no worse'}"
        ],
        variants=variants,
    )
    verdict["report"] = str(folder / "report.html")
    say(
        f"prompt gate: {candidate} refused — {verdict['reason']}"
        if regressions
        else f"prompt gate: {candidate} is no worse than {live} on the golden set"
    )
    return verdict


def release_prompt(
    index: Index,
    ref: str,
    steps: list[int] | None = None,
    force: bool = False,
    echo: Echo | None = None,
) -> dict[str, Any]:
    """``rag prompts release answer@v4 --steps 5,50,100``: the golden-set gate against the live
    version, then (unless it regresses, or with ``force``) the release recorded in the data dir,
    where the ``prompt`` stage of every process on it picks it up. ``released`` says which."""
    settings = index.settings
    name, version = parse_prompt_ref(ref)
    if version is None:
        raise ReleaseError(f"name the version to release: {name}@VERSION (e.g. {name}@v4)")
    if name != settings.prompts.name:
        raise ReleaseError(
            f"the query path answers with prompt {settings.prompts.name!r} (prompts.name), not "
            f"{name!r}: release a version of {settings.prompts.name!r}"
        )
    registry = PromptRegistry(settings.prompts)
    registry.load()
    registry.get(name, version)  # PromptError (says which versions exist) when it has no file
    store = release_store(settings.resolved_data_dir())
    current = store.release(name)
    if current and current["status"] == "running":
        raise ReleaseError(
            f"a release of {name}@{current['candidate']} is running: let it finish, or "
            f"`rag prompts rollback {name}` first"
        )
    promoted = current and current["status"] == "promoted"
    live = str(current["candidate"]) if current and promoted else registry.select().version
    steps = list(steps or settings.releases.steps)
    verdict = prompt_gate(index, f"{name}@{live}", ref, echo=echo)
    if not verdict["promote"] and not force:
        return {
            "released": False,
            "prompt": ref,
            "live": f"{name}@{live}",
            "regressions": verdict["regressions"],
            "reason": verdict["reason"],
            "gate": verdict,
        }
    release = store.start(name, live, version, steps, verdict)
    return {
        "released": True,
        "forced": bool(force and not verdict["promote"]),
        "prompt": ref,
        "live": f"{name}@{live}",
        "regressions": verdict["regressions"],
        "reason": verdict["reason"],
        "release": release,
        "gate": verdict,
    }
