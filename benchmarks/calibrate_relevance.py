"""Calibrate relevance — does a supported sentence answer the question? — on SQuAD 2.0.

    .venv/bin/python benchmarks/calibrate_relevance.py ../shared/datasets/squad2 [--cache DIR]
        [--seed S] [--json-out FILE] [--smoke]

Every question goes through the real retrieve → rerank → prompt → pack stages once (the
corpus is indexed once into an isolated cache, as ``rag eval`` does). Each sentence of the
packed context is a candidate answer, with the features ``rag.verification.answer_types.relevance`` weighs
(``rag.generate.extractive.candidates``: question–sentence cosine, question words in the
sentence or its headings, the answer-type check) and the passage's own similarity to the
question (the extractive ranking's prior). A candidate *answers* when it contains a gold
answer string (SQuAD normalisation); on an unanswerable question none does.

The questions are split in two halves (seeded, stratified by answerability). On the *fit*
half:

1. a logistic regression of "answers" on the features gives ``RELEVANCE_WEIGHTS`` (a feature
   whose weight comes out with the wrong sign is dropped and the rest refitted);
2. ``PASSAGE_WEIGHT``: the prior's weight that puts a gold sentence first most often;
3. ``generation.extractive_min_score``: the highest abstention on unanswerable questions with
   false abstention <= 0.15 (the best sentence's relevance below it: abstain);
4. ``generation.verify.min_relevance``: the highest floor that still keeps >= 0.95 of the
   gold sentences that reach the top 3 of their question (what verification must not
   refuse), capped at the extractive threshold.

On the *report* half, with those values: the relevance judgement's precision and recall (per
sentence; judged relevant = relevance >= ``min_relevance``; and of the answer-type check
alone), and the extractive answers' abstention / false abstention / gold contained, beside
the previous scorer (cosine + 0.3 x word overlap, threshold 0.7) on the same sentences.

The weights and thresholds are printed (and written with ``--json-out``); they are copied
into rag/verification/answer_types.py, rag/generate/extractive.py and configs/default.yaml by hand.

Goals, on the report half: the extractive answers abstain on unanswerable questions at
least as often as the previous scorer's with false abstention <= 0.15; of the sentences the
answer-type check rejects, >= 0.95 hold no gold answer; verification keeps >= 0.90 of the
gold sentences among each question's top 3. Checks: both halves hold answerable and
unanswerable questions, gold sentences were found, the figures are finite.
``--report-only`` exits 0 whatever the figures; ``--smoke`` (tests/benchmarks/test_smoke.py)
enforces only the checks.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    Goal,
    add_goal_arguments,
    finish,
    finite,
    pipeline_scorer,
    prepare,
)

FEATURES = ("cosine", "overlap", "type_miss")
SIGNS = {"cosine": 1, "overlap": 1, "type_miss": -1}
GOAL_FALSE_ABSTENTION = 0.15
VERIFY_RECALL = 0.95
PRIOR_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.5]
THRESHOLDS = [round(x / 100, 2) for x in range(1, 51)]
OLD_LEXICAL_WEIGHT, OLD_THRESHOLD = 0.3, 0.7


def split_halves(rows: list[dict[str, Any]], seed: int) -> tuple[list[Any], list[Any]]:
    rng = random.Random(seed)
    fit: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    for cls in (True, False):
        group = sorted((r for r in rows if r["answerable"] is cls), key=lambda r: r["id"])
        rng.shuffle(group)
        fit += group[0::2]
        report += group[1::2]
    return fit, report


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def score(c: dict[str, Any], w: dict[str, float]) -> float:
    return sigmoid(w["intercept"] + sum(w.get(f, 0.0) * c[f] for f in FEATURES))


def fit_weights(rows: list[dict[str, Any]]) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features = list(FEATURES)
    cands = [c for r in rows for c in r["cands"]]
    while True:
        x = np.array([[c[f] for f in features] for c in cands])
        y = np.array([int(c["gold"]) for c in cands])
        model = LogisticRegression(C=10.0, max_iter=2000).fit(x, y)
        weights = dict(zip(features, model.coef_[0].tolist(), strict=True))
        wrong = [f for f in features if weights[f] * SIGNS[f] <= 0]
        if not wrong or len(features) == 1:
            break
        features.remove(wrong[0])
    return {"intercept": round(float(model.intercept_[0]), 3)} | {
        f: round(v, 3) for f, v in weights.items()
    }


def best_of(r: dict[str, Any], w: dict[str, float], prior: float) -> dict[str, Any] | None:
    if not r["cands"]:
        return None
    return max(r["cands"], key=lambda c: score(c, w) + prior * c["prior"])


def answer_rates(rows: list[dict[str, Any]], pick: Any, threshold: float) -> dict[str, float]:
    """Top-sentence answers: abstain when the best candidate is below ``threshold``."""
    unans = [r for r in rows if not r["answerable"]]
    ans = [r for r in rows if r["answerable"]]

    def abstains(r: dict[str, Any]) -> bool:
        best = pick(r)
        return best is None or best["value"] < threshold

    return {
        "abstention_unanswerable": round(sum(map(abstains, unans)) / max(1, len(unans)), 3),
        "false_abstention_answerable": round(sum(map(abstains, ans)) / max(1, len(ans)), 3),
        "answer_contains_gold": round(
            sum(not abstains(r) and bool(pick(r)["gold"]) for r in ans) / max(1, len(ans)), 3
        ),
    }


def judgement(cands: list[dict[str, Any]], judged: Any) -> dict[str, float]:
    tp = sum(1 for c in cands if judged(c) and c["gold"])
    fp = sum(1 for c in cands if judged(c) and not c["gold"])
    fn = sum(1 for c in cands if not judged(c) and c["gold"])
    return {
        "precision": round(tp / max(1, tp + fp), 3),
        "recall": round(tp / max(1, tp + fn), 3),
        "judged": tp + fp,
        "gold": tp + fn,
    }


def collect(dataset: Path, cache: Path | None) -> list[dict[str, Any]]:
    from evals.answers import contains_gold
    from evals.datasets import load_beir, open_dataset_index
    from rag.core.config import load_settings
    from rag.generate import GenerationRequest
    from rag.generate.extractive import candidates
    from rag.indexing.embedding import embedder_for
    from rag.query.pipeline import QueryPipeline
    from rag.verification.citations import content_words

    overrides: dict[str, Any] = {"generation": {"chain": ["extractive"]}}
    if cache:
        overrides["evals"] = {"cache_dir": str(cache)}
    settings = load_settings(overrides=overrides)
    embedder = embedder_for(settings)
    embedder.warm_up()
    data = load_beir(dataset)
    if not data.answers:
        raise SystemExit(f"{dataset} has no answers.jsonl: an answer set (like squad2) is needed")
    dsi = open_dataset_index(settings, data, embedder, echo=lambda m: print(m, file=sys.stderr))
    rows: list[dict[str, Any]] = []
    try:
        iso = dsi.index.settings.model_copy(deep=True)
        iso.generation.chain = ["extractive"]
        pipeline = QueryPipeline(dsi.index, iso)
        pipeline.warm_up()
        scorer = pipeline_scorer(pipeline)
        for qid, key in data.answers.items():
            question = data.queries.get(qid)
            if question is None:
                continue
            state = prepare(pipeline, question)
            request = GenerationRequest(
                messages=[], question=question, context=state.context, max_tokens=0
            )
            qwords = set(content_words(question))
            cands = []
            for c in candidates(question, request, scorer):
                old_overlap = (
                    len(qwords & set(content_words(c.sentence))) / len(qwords) if qwords else 0.0
                )
                cands.append(
                    {
                        **c.features.as_dict(),
                        "prior": c.passage_similarity,
                        "old": c.features.cosine + OLD_LEXICAL_WEIGHT * old_overlap,
                        "gold": bool(key.answerable and contains_gold(c.sentence, key.answers)),
                    }
                )
            rows.append({"id": qid, "answerable": key.answerable, "cands": cands})
    finally:
        dsi.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="eval index cache (evals.cache_dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", type=Path, default=None)
    add_goal_arguments(ap)
    args = ap.parse_args()

    rows = collect(args.dataset, args.cache)
    fit, report = split_halves(rows, args.seed)
    checks = {
        "both_halves_hold_both_kinds": all(
            any(r["answerable"] for r in half) and any(not r["answerable"] for r in half)
            for half in (fit, report)
        ),
        "gold_sentences_found": any(c["gold"] for r in fit for c in r["cands"]),
    }
    if not all(checks.values()):
        goals = [Goal(k, "true", v, v, True) for k, v in checks.items()]
        return finish({"checks": checks}, goals, args, args.json_out)

    weights = fit_weights(fit)
    for r in rows:
        for c in r["cands"]:
            c["relevance"] = score(c, weights)

    def top1(half: list[dict[str, Any]], prior: float) -> float:
        ans = [r for r in half if r["answerable"]]
        return sum(bool((b := best_of(r, weights, prior)) and b["gold"]) for r in ans) / max(
            1, len(ans)
        )

    prior_weight = max(PRIOR_WEIGHTS, key=lambda p: (round(top1(fit, p), 3), -p))

    def new_pick(r: dict[str, Any]) -> dict[str, Any] | None:
        b = best_of(r, weights, prior_weight)
        return None if b is None else {"value": b["relevance"], "gold": b["gold"]}

    def old_pick(r: dict[str, Any]) -> dict[str, Any] | None:
        if not r["cands"]:
            return None
        b = max(r["cands"], key=lambda c: c["old"])
        return {"value": b["old"], "gold": b["gold"]}

    table = [{"threshold": t, **answer_rates(fit, new_pick, t)} for t in THRESHOLDS]
    ok = [row for row in table if row["false_abstention_answerable"] <= GOAL_FALSE_ABSTENTION]
    chosen = max(
        ok or table,
        key=lambda row: (row["abstention_unanswerable"], -row["false_abstention_answerable"]),
    )
    threshold = chosen["threshold"]

    # Verification's floor: keep the gold sentences a backend would plausibly say (each
    # question's top 3 by the ranking) — what it must not refuse.
    def top3(half: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in half:
            ranked = sorted(r["cands"], key=lambda c: -(c["relevance"] + prior_weight * c["prior"]))
            out += ranked[:3]
        return out

    fit_top = top3(fit)
    floors = [
        t
        for t in THRESHOLDS
        if t <= threshold
        and judgement(fit_top, lambda c, t=t: c["relevance"] >= t)["recall"] >= VERIFY_RECALL
    ]
    floor = max(floors, default=THRESHOLDS[0])

    report_cands = [c for r in report for c in r["cands"]]
    typed = [c for c in report_cands if c["type_miss"] or c.get("type_hit")]
    rep = {
        "relevance_judgement": judgement(report_cands, lambda c: c["relevance"] >= floor),
        "relevance_judgement_top3": judgement(top3(report), lambda c: c["relevance"] >= floor),
        "type_check": judgement(typed, lambda c: not c["type_miss"])
        | {
            "rejected": sum(1 for c in typed if c["type_miss"]),
            "rejected_without_gold": round(
                sum(1 for c in typed if c["type_miss"] and not c["gold"])
                / max(1, sum(1 for c in typed if c["type_miss"])),
                3,
            ),
        },
        "extractive": answer_rates(report, new_pick, threshold),
        "previous_scorer": answer_rates(report, old_pick, OLD_THRESHOLD),
        "top1_contains_gold": round(top1(report, prior_weight), 3),
    }
    result = {
        "goal": "on the report half: abstention on unanswerable >= the previous scorer's with "
        f"false abstention <= {GOAL_FALSE_ABSTENTION}; the type check rejects >= 0.95 "
        "gold-free sentences; relevance keeps a gold sentence of the top 3 >= 0.90",
        "questions": {"fit": len(fit), "report": len(report)},
        "relevance_weights": weights,
        "passage_weight": prior_weight,
        "extractive_min_score": threshold,
        "verify_min_relevance": floor,
        "fit_half": {"top1_contains_gold": round(top1(fit, prior_weight), 3), **chosen},
        "report_half": rep,
        "checks": checks,
    }
    new_x, old_x = rep["extractive"], rep["previous_scorer"]
    rejected_ok = rep["type_check"]["rejected_without_gold"]
    top3_recall = rep["relevance_judgement_top3"]["recall"]
    figures = [*new_x.values(), *old_x.values(), rejected_ok, top3_recall]
    goals = [Goal(k, "true", v, v, True) for k, v in checks.items()] + [
        Goal("figures_finite", "every figure measured", finite(*figures), finite(*figures), True),
        Goal(
            "report.abstention_unanswerable",
            f">= previous scorer ({old_x['abstention_unanswerable']}), false abstention <= 0.15",
            new_x,
            new_x["abstention_unanswerable"] >= old_x["abstention_unanswerable"]
            and new_x["false_abstention_answerable"] <= GOAL_FALSE_ABSTENTION,
        ),
        Goal(
            "report.type_check.rejected_without_gold", ">= 0.95", rejected_ok, rejected_ok >= 0.95
        ),
        Goal("report.verify_recall_top3", ">= 0.90", top3_recall, top3_recall >= 0.90),
    ]
    return finish(result, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
