"""Calibrate the citation support test on SQuAD 2.0 and report its precision/recall.

    .venv/bin/python benchmarks/calibrate_support.py ../shared/datasets/squad2 [--json-out FILE]
        [--target-precision 0.95] [--smoke] [--report-only]

Pairs (claim sentence, cited paragraph, supported?) are built from the answerable questions:

- supported: the gold paragraph's sentence that holds the answer (what an extractive answer or
  a model copying the passage says), and "QUESTION ANSWER." (a model restating the question
  with the answer) — each against the gold paragraph;
- not supported: the same claims against another paragraph of the same article that lacks
  the answer (a wrong citation of a related passage), and the claims with their answer
  swapped for another question's answer, against the gold paragraph (a wrong fact citing
  the right passage — the hard case).

Articles are split in two: the logistic weights and the threshold are fitted on one half
(threshold: the lowest whose precision on that half is >= --target-precision), and precision
and recall are reported on the other half, per negative kind too. The printed JSON has the
``SUPPORT_WEIGHTS`` for rag/verification/citations.py and ``min_support`` for the config.

Goal (exit status 1 when missed; ``--report-only`` reports without failing, ``--smoke``
enforces only the checks): held-out precision >= ``--target-precision`` (0.95) at the
threshold fitted on the other half. Checks: pairs of both labels in both halves, and every
figure measured.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _article(pid: str) -> str:
    return pid.rsplit("-", 1)[0]


def build_pairs(root: Path, seed: int = 13) -> list[dict[str, Any]]:
    from rag.verification.citations import split_sentences

    rng = random.Random(seed)
    corpus = {r["_id"]: r["text"] for r in _read_jsonl(root / "corpus.jsonl")}
    queries = {r["_id"]: r["text"] for r in _read_jsonl(root / "queries.jsonl")}
    answers = {r["_id"]: r for r in _read_jsonl(root / "answers.jsonl")}
    gold: dict[str, str] = {}
    for line in (root / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, pid, score = line.split("\t")
        if int(score) > 0:
            gold[qid] = pid
    by_article: dict[str, list[str]] = defaultdict(list)
    for pid in corpus:
        by_article[_article(pid)].append(pid)
    all_answers = [
        (qid, a["answers"][0])
        for qid, a in answers.items()
        if a.get("answerable") and a.get("answers")
    ]
    pairs: list[dict[str, Any]] = []
    for qid, pid in gold.items():
        key = answers.get(qid)
        if not key or not key.get("answerable") or not key.get("answers"):
            continue
        answer = min(key["answers"], key=len)
        paragraph = corpus[pid]
        question = queries[qid]
        sentence = next((s for s in split_sentences(paragraph) if answer in s), None)
        claims = [("restated", f"{question.rstrip('?').strip()} {answer}.")]
        if sentence:
            claims.append(("extract", sentence))
        # A wrong answer of the same article, not overlapping the right one.
        others = [
            a
            for q, a in all_answers
            if q != qid and a.lower() not in paragraph.lower() and answer.lower() not in a.lower()
        ]
        if not others:
            continue
        wrong = rng.choice(others)
        siblings = [
            p
            for p in by_article[_article(pid)]
            if p != pid and answer.lower() not in corpus[p].lower()
        ]
        sibling = rng.choice(siblings) if siblings else None
        for style, claim in claims:
            base = {"qid": qid, "article": _article(pid), "question": question, "style": style}
            pairs.append(
                {**base, "claim": claim, "passage": paragraph, "label": 1, "kind": "supported"}
            )
            pairs.append(
                {
                    **base,
                    "claim": claim.replace(answer, wrong),
                    "passage": paragraph,
                    "label": 0,
                    "kind": "wrong-fact",
                }
            )
            if sibling:
                pairs.append(
                    {
                        **base,
                        "claim": claim,
                        "passage": corpus[sibling],
                        "label": 0,
                        "kind": "wrong-passage",
                    }
                )
    return pairs


def featurize(pairs: list[dict[str, Any]]) -> list[list[float]]:
    from rag.core.config import load_settings
    from rag.indexing.embedding import Embedder
    from rag.verification.citations import SupportScorer, split_sentences

    embedder = Embedder(load_settings().embedding)
    embedder.warm_up()
    scorer = SupportScorer(embedder.embed)
    # Embed everything in a few big batches first (the scorer caches by text).
    texts = {p["claim"] for p in pairs}
    for p in pairs:
        texts.update(split_sentences(p["passage"]) or [p["passage"]])
    scorer.vectors(sorted(texts))
    rows = []
    for p in pairs:
        sents = split_sentences(p["passage"]) or [p["passage"]]
        rows.append(
            scorer.features(
                p["claim"], p["passage"], sents, p["question"], with_cosine=True
            ).as_list()
        )
    return rows


def _pr(labels: list[int], predicted: list[bool]) -> tuple[float, float]:
    tp = sum(1 for y, p in zip(labels, predicted, strict=False) if p and y)
    fp = sum(1 for y, p in zip(labels, predicted, strict=False) if p and not y)
    fn = sum(1 for y, p in zip(labels, predicted, strict=False) if not p and y)
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path, help="squad2 folder (BEIR layout with answers.jsonl)")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument(
        "--json-out", "--out", dest="json_out", type=Path, help="also write the result JSON here"
    )
    add_goal_arguments(ap)
    args = ap.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from rag.verification.citations import SupportScorer

    started = time.perf_counter()
    pairs = build_pairs(args.dataset)
    X = np.asarray(featurize(pairs))
    y = np.asarray([p["label"] for p in pairs])
    articles = sorted({p["article"] for p in pairs})
    train_articles = set(articles[::2])
    train = np.asarray([p["article"] in train_articles for p in pairs])
    # Every feature may only add support: one that gets a negative weight (it stands in for
    # another, correlated one) is dropped and the rest refitted.
    active = list(range(X.shape[1]))
    while True:
        model = LogisticRegression(C=10.0, max_iter=1000).fit(X[train][:, active], y[train])
        negative = [active[j] for j, w in enumerate(model.coef_[0]) if w < 0]
        if not negative:
            break
        active = [j for j in active if j not in negative]
    prob = model.predict_proba(X[:, active])[:, 1]
    coef = dict(zip(active, model.coef_[0], strict=False))

    # Lowest threshold reaching the target precision on the training half.
    threshold = 0.99
    for t in np.arange(0.05, 0.99, 0.01):
        p, _ = _pr(list(y[train]), list(prob[train] >= t))
        if p >= args.target_precision:
            threshold = float(t)
            break
    test_idx = np.where(~train)[0]
    precision, recall = _pr(
        [int(y[i]) for i in test_idx], [bool(prob[i] >= threshold) for i in test_idx]
    )
    per_kind: dict[str, Any] = {}
    for kind in ("supported", "wrong-fact", "wrong-passage"):
        idx = [i for i in test_idx if pairs[i]["kind"] == kind]
        accepted = sum(bool(prob[i] >= threshold) for i in idx)
        per_kind[kind] = {
            "pairs": len(idx),
            "accepted": accepted,
            "accept_rate": round(accepted / len(idx), 4) if idx else None,
        }
    per_style: dict[str, Any] = {}
    for style in ("extract", "restated"):
        idx = [i for i in test_idx if pairs[i]["style"] == style]
        p_s, r_s = _pr([int(y[i]) for i in idx], [bool(prob[i] >= threshold) for i in idx])
        per_style[style] = {"precision": round(p_s, 4), "recall": round(r_s, 4), "pairs": len(idx)}
    # The same features with hand-set weights, as a baseline the fit must beat.
    baseline = SupportScorer(None)
    base_prob = np.asarray([baseline.score_features(_features(row)) for row in X])
    bp, br = _pr([int(y[i]) for i in test_idx], [bool(base_prob[i] >= 0.5) for i in test_idx])
    # Each feature alone (its best single threshold on train), to show what each contributes.
    singles: dict[str, Any] = {}
    for j, name in enumerate(SupportScorer.FEATURES):
        col = X[:, j]
        best = None
        for t in np.unique(np.round(col[train], 3)):
            p, _ = _pr(list(y[train]), list(col[train] >= t))
            if p >= args.target_precision:
                best = float(t)
                break
        if best is not None:
            sp, sr = _pr([int(y[i]) for i in test_idx], [bool(col[i] >= best) for i in test_idx])
            singles[name] = {"threshold": best, "precision": round(sp, 4), "recall": round(sr, 4)}
        else:
            singles[name] = {
                "threshold": None,
                "note": f"never reaches precision {args.target_precision} alone",
            }
    weights = {"intercept": round(float(model.intercept_[0]), 4)}
    weights.update(
        {name: round(float(coef.get(j, 0.0)), 4) for j, name in enumerate(SupportScorer.FEATURES)}
    )
    result: dict[str, Any] = {
        "goal": f"held-out precision >= {args.target_precision}",
        "dataset": str(args.dataset),
        "pairs": len(pairs),
        "train_articles": sorted(train_articles),
        "test_pairs": len(test_idx),
        "SUPPORT_WEIGHTS": weights,
        "min_support": round(threshold, 2),
        "held_out": {"precision": round(precision, 4), "recall": round(recall, 4)},
        "held_out_by_negative_kind": per_kind,
        "held_out_by_claim_style": per_style,
        "feature_alone": singles,
        "hand_weights_baseline": {"precision": round(bp, 4), "recall": round(br, 4)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    halves = [
        (int(y[train].sum()), int((1 - y[train]).sum())),
        (int(y[~train].sum()), int((1 - y[~train]).sum())),
    ]
    goals = [
        Goal(
            "held-out precision",
            f">= {args.target_precision}",
            round(precision, 4),
            precision >= args.target_precision,
        ),
        Goal(
            "both labels in both halves, figures measured",
            "supported and unsupported pairs in fit and held-out",
            halves,
            all(pos > 0 and neg > 0 for pos, neg in halves) and finite(precision, recall),
            check=True,
        ),
    ]
    return finish(result, goals, args, args.json_out)


def _features(row: Any) -> Any:
    from rag.verification.citations import SupportFeatures

    return SupportFeatures(*[float(x) for x in row])


if __name__ == "__main__":
    raise SystemExit(main())
