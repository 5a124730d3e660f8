"""Calibrate the citation support test on SQuAD 2.0 and report what it accepts.

    .venv/bin/python benchmarks/calibrate_support.py ../shared/datasets/squad2 [--json-out FILE]
        [--min-recall 0.95] [--smoke] [--report-only]

The support test (rag/verification/support.py) has hard gates — every value of the claim
(number with its unit, date, code name, proper name...) in the passage sentence it
restates, no flipped negation, at most one content word the passage lacks — and one
threshold, ``generation.verify.min_support``: the share of the claim's content words the
passage holds. Pairs (claim sentence, cited paragraph, supported?) are built from the
answerable questions:

- supported: the gold paragraph's sentence that holds the answer (what an extractive answer
  or a model copying the passage says) and the same sentence reworded by rules
  (``evals.verify.reword``) — each against the gold paragraph; and "QUESTION ANSWER." (a
  model restating the question with the answer), reported apart;
- not supported: the same claims against another paragraph of the same article that lacks
  the answer (a wrong citation), and with their answer swapped for another question's answer,
  against the gold paragraph (a wrong fact citing the right passage) — split into swapped
  *values* (a year, a number, a name: what the grounding gate is for) and swapped phrases
  ("the cell wall" for "the nucleus": one word the passage lacks in a long sentence can be a
  rewording, so some pass).

``min_support`` is chosen on the tuning half of the verify eval (``rag eval verify``: what a
model writes — the lowest fabrication rate that keeps >= 0.95 of faithful answers whole);
configs/default.yaml holds it. Here it is checked on the pairs: the articles are split in two,
a sweep of thresholds is printed for the first half, and the configured value is judged on
the second.

Goals (exit status 1 when one is missed; ``--report-only`` reports without failing, ``--smoke``
enforces only the checks), on the held-out half: supported copies and rewordings accepted
>= --min-recall; a swapped value citing the right passage accepted <= 0.03; a right claim
citing a wrong paragraph accepted <= 0.03. Checks: pairs of every kind in both halves, and
every figure measured.
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
    from evals.verify import reword
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
            reworded = reword(sentence, answer)
            if reworded != sentence:
                claims.append(("reworded", reworded))
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
            base = {
                "qid": qid,
                "article": _article(pid),
                "question": question,
                "style": style,
                "answer": wrong,
            }
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


def score_pairs(pairs: list[dict[str, Any]]) -> list[float]:
    """The support score per pair, as the verifier computes it (0 when a gate fails)."""
    from rag.verification.citations import split_sentences
    from rag.verification.support import check

    return [
        check(p["claim"], [p["passage"]], split_sentences(p["passage"]), "", p["question"]).score
        for p in pairs
    ]


def _kind(pair: dict[str, Any]) -> str:

    if pair["kind"] == "wrong-fact":
        return "wrong-value" if pair.get("value_swap") else "wrong-phrase"
    if pair["kind"] == "supported":
        return "supported-restated" if pair["style"] == "restated" else "supported"
    return str(pair["kind"])


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path, help="squad2 folder (BEIR layout with answers.jsonl)")
    ap.add_argument("--min-recall", type=float, default=0.95)
    ap.add_argument(
        "--json-out", "--out", dest="json_out", type=Path, help="also write the result JSON here"
    )
    add_goal_arguments(ap)
    args = ap.parse_args()

    from evals.verify import _value_type

    started = time.perf_counter()
    pairs = build_pairs(args.dataset)
    for p in pairs:
        p["value_swap"] = p["kind"] == "wrong-fact" and _value_type(p["answer"]) is not None
    scores = score_pairs(pairs)
    articles = sorted({p["article"] for p in pairs})
    fit_articles = set(articles[::2])
    fit = [i for i, p in enumerate(pairs) if p["article"] in fit_articles]
    test = [i for i, p in enumerate(pairs) if p["article"] not in fit_articles]

    def accepted(i: int, threshold: float) -> bool:
        return scores[i] > 0 and scores[i] >= threshold

    from rag.core.config import load_settings

    threshold = load_settings().generation.verify.min_support
    kinds = ("supported", "supported-restated", "wrong-value", "wrong-phrase", "wrong-passage")
    held_out = {
        kind: {
            "pairs": sum(1 for i in test if _kind(pairs[i]) == kind),
            "accepted": _rate([accepted(i, threshold) for i in test if _kind(pairs[i]) == kind]),
        }
        for kind in kinds
    }
    by_style = {
        style: _rate(
            [
                accepted(i, threshold)
                for i in test
                if pairs[i]["kind"] == "supported" and pairs[i]["style"] == style
            ]
        )
        for style in ("extract", "reworded", "restated")
    }
    sweep = {
        f"{t / 100:.2f}": {
            kind: _rate([accepted(i, t / 100) for i in fit if _kind(pairs[i]) == kind])
            for kind in kinds
        }
        | {
            "reworded": _rate(
                [
                    accepted(i, t / 100)
                    for i in fit
                    if pairs[i]["kind"] == "supported" and pairs[i]["style"] == "reworded"
                ]
            )
        }
        for t in range(50, 101, 5)
    }
    result: dict[str, Any] = {
        "goal": (
            f"supported copies and rewordings accepted >= {args.min_recall}; swapped values "
            "and wrong paragraphs accepted <= 0.03 (held-out half)"
        ),
        "dataset": str(args.dataset),
        "pairs": len(pairs),
        "fit_articles": sorted(fit_articles),
        "min_support": threshold,
        "fit_half_sweep": sweep,
        "held_out_accepted": held_out,
        "held_out_supported_by_style": by_style,
        "seconds": round(time.perf_counter() - started, 1),
    }
    value = held_out["wrong-value"]["accepted"]
    passage = held_out["wrong-passage"]["accepted"]
    kept = held_out["supported"]["accepted"]
    per_half = [
        {kind: sum(1 for i in half if _kind(pairs[i]) == kind) for kind in kinds}
        for half in (fit, test)
    ]
    goals = [
        Goal(
            "supported copies and rewordings accepted",
            f">= {args.min_recall}",
            kept,
            kept is not None and kept >= args.min_recall,
        ),
        Goal(
            "a swapped value citing the right passage accepted",
            "<= 0.03",
            value,
            value is not None and value <= 0.03,
        ),
        Goal(
            "a right claim citing a wrong paragraph accepted",
            "<= 0.03",
            passage,
            passage is not None and passage <= 0.03,
        ),
        Goal(
            "pairs of each label in both halves, figures measured",
            "supported, swapped and wrong-passage pairs in fit and held-out",
            per_half,
            all(
                half["supported"]
                and half["wrong-passage"]
                and half["wrong-value"] + half["wrong-phrase"]
                for half in per_half
            )
            and finite(kept, passage),
            check=True,
        ),
    ]
    return finish(result, goals, args, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
