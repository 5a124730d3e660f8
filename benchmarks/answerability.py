"""Can cheap signals tell SQuAD 2.0's unanswerable questions from answerable ones?

    .venv/bin/python benchmarks/answerability.py ../shared/datasets/squad2 [--cache DIR]
        [--limit N] [--llm-judge N] [--json-out FILE] [--smoke] [--report-only]

Every question goes through the real retrieve → rerank → pack stages (corpus indexed once into
the eval cache, as `rag eval` does). For the best-ranked context sentence (the extractive
generator's pick) it computes the signals an abstention rule could use without a trained
reading-comprehension model, and reports for each its ROC AUC at separating unanswerable
(should abstain) from answerable questions (0.5 = no signal). Then a logistic model over all
of them is fitted on a random half of the questions, its threshold chosen there for false
abstention <= 0.15, and measured on the other half.

Signals: the extractive score (cosine + lexical bonus); IDF-weighted share of the question's
content words found in the sentence and in its passage (IDF from the corpus); share of the
question's names and numbers found in the passage; the IDF of the rarest question word missing
from the passage; a negation in the question that the sentence lacks; the score margin between
the first and second sentence. With ``--llm-judge N``, also the embedded SmolLM2-135M asked
"Does the passage answer the question? Reply yes or no." (log-probability of yes minus no for
its first token) on N evenly spaced questions, next to the extractive score's AUC on the same ones.

A question whose packed context has no candidate sentence (nothing retrieved, or only
headings and fragments: the unanswerable ones, mostly) is kept, not dropped: the extractive
generator would say nothing and the pipeline abstain, so its sentence signals take their
abstain-most values (extractive score -1, the lowest a cosine can give; no sentence coverage,
no margin; passage signals from the first packed passage, if any) and the abstention rule
abstains on it whatever the model says. How many there were, and how many of them are
unanswerable, is in the output (``no_candidate_sentence``).

Goal (exit status 1 when missed; ``--report-only`` reports without failing, ``--smoke``
enforces only the checks): the logistic rule on the held-out half abstains on >= 0.80 of
the unanswerable questions with false abstention <= 0.15. Checks: every question scored
(none dropped), both classes present in both halves.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    Goal,
    add_goal_arguments,
    finish,
    pipeline_scorer,
    prepare,
)

NEGATIONS = {"not", "never", "no", "n't", "without", "none", "nobody", "nothing"}
SIGNALS = [
    "extractive_score",
    "idf_coverage_sentence",
    "idf_coverage_passage",
    "names_numbers_in_passage",
    "rarest_missing_idf",
    "negation_mismatch",
    "score_margin",
]
HIGHER_MEANS_ABSTAIN = {"rarest_missing_idf", "negation_mismatch"}
GOAL_ABSTAIN_UNANSWERABLE = 0.80
GOAL_FALSE_ABSTENTION = 0.15
NO_CANDIDATE_SCORE = -1.0  # the lowest extractive score there is (cosine -1, no overlap)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path)
    ap.add_argument(
        "--cache", type=Path, default=None, help="eval cache folder (default: the configured one)"
    )
    ap.add_argument(
        "--llm-judge",
        type=int,
        default=0,
        metavar="N",
        help="also ask SmolLM2 on N questions (~1.2 s each)",
    )
    ap.add_argument(
        "--limit", type=int, default=None, help="only the first N answer-keyed questions"
    )
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    add_goal_arguments(ap)
    args = ap.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from evals.datasets import load_beir, open_dataset_index
    from rag.core.config import load_settings
    from rag.generate import GenerationRequest
    from rag.generate.extractive import rank_sentences
    from rag.indexing.embedding import Embedder
    from rag.query.pipeline import QueryPipeline
    from rag.verification.citations import content_words, key_terms

    overrides: dict[str, Any] = {"generation": {"chain": ["extractive"]}}
    if args.cache:
        overrides["evals"] = {"cache_dir": str(args.cache)}
    settings = load_settings(overrides=overrides)
    embedder = Embedder(settings.embedding)
    embedder.warm_up()
    data = load_beir(args.dataset)
    if not data.answers:
        raise SystemExit(
            f"{args.dataset} has no answers.jsonl: an answer set (like squad2) is needed"
        )
    dindex = open_dataset_index(settings, data, embedder, echo=lambda m: print(m, file=sys.stderr))
    pipeline = QueryPipeline(
        dindex.index, dindex.index.settings.model_copy(update={"generation": settings.generation})
    )
    pipeline.warm_up()
    scorer = pipeline_scorer(pipeline)

    df: collections.Counter[str] = collections.Counter()
    with (args.dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    for d in docs:
        df.update(set(content_words(f"{d.get('title', '')} {d['text']}")))

    def idf(word: str) -> float:
        return math.log((len(docs) + 1) / (df.get(word, 0) + 0.5))

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    features: list[list[float]] = []
    should_abstain: list[int] = []
    judged: list[tuple[str, str]] = []
    no_candidate: list[bool] = []
    keyed = [(qid, key) for qid, key in data.answers.items() if qid in data.queries]
    for qid, key in keyed[: args.limit]:
        question = data.queries[qid]
        prepared = prepare(pipeline, question)
        request = GenerationRequest(
            messages=[], question=question, context=prepared.context, max_tokens=0
        )
        ranked = rank_sentences(question, request, scorer)
        passages = {p.n: p.text for p in prepared.context.passages}
        qwords, qkeys = set(content_words(question)), key_terms(question)
        total = sum(idf(w) for w in qwords) or 1.0

        def coverage(text: str, qwords: set[str] = qwords, total: float = total) -> float:
            found = set(content_words(text))
            return sum(idf(w) for w in qwords if w in found) / total

        if not ranked:
            # Nothing the extractive generator could say: the pipeline abstains. Kept: the
            # sentence signals take their abstain-most values; the passage ones are read from
            # the first packed passage (none: nothing found, every question word missing).
            passage = prepared.context.passages[0].text if prepared.context.passages else ""
            seen = set(content_words(passage)) | key_terms(passage)
            features.append(
                [
                    NO_CANDIDATE_SCORE,
                    0.0,
                    coverage(passage),
                    sum(k in seen for k in qkeys) / len(qkeys) if qkeys else 0.0,
                    max((idf(w) for w in qwords if w not in seen), default=0.0),
                    float(bool(words(question) & NEGATIONS)),
                    0.0,
                ]
            )
            no_candidate.append(True)
            should_abstain.append(0 if key.answerable else 1)
            judged.append((passage, question))
            continue
        score, n, sentence = ranked[0]
        passage = passages[n]

        in_passage = set(content_words(passage)) | key_terms(passage)
        features.append(
            [
                score,
                coverage(sentence),
                coverage(passage),
                sum(k in in_passage for k in qkeys) / len(qkeys) if qkeys else 1.0,
                max((idf(w) for w in qwords if w not in in_passage), default=0.0),
                float(bool(words(question) & NEGATIONS) and not words(sentence) & NEGATIONS),
                score - (ranked[1][0] if len(ranked) > 1 else 0.0),
            ]
        )
        should_abstain.append(0 if key.answerable else 1)
        judged.append((passage, question))
        no_candidate.append(False)
    dindex.close()

    x, y = np.array(features), np.array(should_abstain)
    forced = np.array(no_candidate, dtype=bool)
    both_classes = 0 < int(y.sum()) < len(y)
    auc: dict[str, float | None] = {}
    for i, name in enumerate(SIGNALS):
        values = x[:, i] if name in HIGHER_MEANS_ABSTAIN else -x[:, i]
        auc[name] = round(float(roc_auc_score(y, values)), 3) if both_classes else None

    # Fitted on a random half of each class, measured on the rest (stratified: both halves
    # keep the set's mix of answerable and unanswerable questions).
    rng = random.Random(0)
    fit = np.zeros(len(y), dtype=bool)
    for cls in (0, 1):
        members = [i for i in range(len(y)) if y[i] == cls]
        rng.shuffle(members)
        fit[members[: len(members) // 2]] = True
    model = LogisticRegression(max_iter=1000).fit(x[fit], 1 - y[fit])
    p_answerable = model.predict_proba(x)[:, 1]

    def rates(threshold: float, rows: Any) -> tuple[float, float]:
        # No candidate sentence: the pipeline abstains whatever the model says.
        abstain = (p_answerable < threshold) | forced
        unans, ans = abstain[rows & (y == 1)], abstain[rows & (y == 0)]
        return (
            float(unans.mean()) if unans.size else 0.0,
            float(ans.mean()) if ans.size else 0.0,
        )

    candidates = [(t, *rates(t, fit)) for t in np.linspace(0, 1, 201)]
    keeping = [c for c in candidates if c[2] <= GOAL_FALSE_ABSTENTION] or candidates[:1]
    threshold = max(keeping, key=lambda c: c[1])[0]
    held_abstain, held_false = rates(threshold, ~fit)
    result: dict[str, Any] = {
        "goal": f"held-out abstention on unanswerable >= {GOAL_ABSTAIN_UNANSWERABLE} with "
        f"false abstention <= {GOAL_FALSE_ABSTENTION}",
        "questions": len(y),
        "unanswerable": int(y.sum()),
        "no_candidate_sentence": {
            "questions": int(forced.sum()),
            "unanswerable": int((forced & (y == 1)).sum()),
            "scored_as": "abstain (extractive score -1, no sentence coverage or margin)",
        },
        "roc_auc_per_signal": auc,
        "logistic_all_signals": {
            "fitted_on": int(fit.sum()),
            "measured_on": int((~fit).sum()),
            "threshold_p_answerable": round(float(threshold), 3),
            "abstention_unanswerable": round(held_abstain, 3),
            "false_abstention_answerable": round(held_false, 3),
        },
    }
    if args.llm_judge:
        result["llm_judge"] = _llm_judge(judged, x[:, 0], y, args.llm_judge)
    halves = [(int((y[m] == 1).sum()), int((y[m] == 0).sum())) for m in (fit, ~fit)]
    goals = [
        Goal(
            "held-out abstention on unanswerable",
            f">= {GOAL_ABSTAIN_UNANSWERABLE}",
            round(held_abstain, 3),
            held_abstain >= GOAL_ABSTAIN_UNANSWERABLE,
        ),
        Goal(
            "held-out false abstention on answerable",
            f"<= {GOAL_FALSE_ABSTENTION}",
            round(held_false, 3),
            held_false <= GOAL_FALSE_ABSTENTION,
        ),
        Goal(
            "every answer-keyed question scored (none dropped)",
            f"{len(keyed[: args.limit])}",
            len(y),
            len(y) == len(keyed[: args.limit]),
            check=True,
        ),
        Goal(
            "both classes in both halves",
            "unanswerable and answerable in fit and held-out",
            halves,
            all(u > 0 and a > 0 for u, a in halves),
            check=True,
        ),
    ]
    return finish(result, goals, args, args.json_out)


def _llm_judge(pairs: list[tuple[str, str]], extractive: Any, y: Any, n: int) -> dict[str, Any]:
    import llama_cpp
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from rag.generate.local import default_gguf_path

    llm = llama_cpp.Llama(
        model_path=str(default_gguf_path()), n_ctx=1024, logits_all=True, verbose=False
    )
    step = max(1, len(pairs) // n)
    picked = list(range(0, len(pairs), step))[:n]
    margins = []
    for i in picked:
        passage, question = pairs[i]
        prompt = (
            "<|im_start|>system\nYou check whether a passage answers a question. Reply yes or no.<|im_end|>\n"
            f"<|im_start|>user\nPassage: {passage[:1500]}\n\nQuestion: {question}\n\n"
            "Does the passage answer the question? Reply yes or no.<|im_end|>\n<|im_start|>assistant\n"
        )
        out: Any = llm.create_completion(prompt, max_tokens=1, logprobs=20, temperature=0.0)
        top = out["choices"][0]["logprobs"]["top_logprobs"][0]

        def logprob(word: str, top: dict[str, float] = top) -> float:
            return max([v for k, v in top.items() if k.strip().lower() == word], default=-30.0)

        margins.append(logprob("yes") - logprob("no"))
    sub = np.array(picked)
    return {
        "questions": len(picked),
        "roc_auc_smollm2_yes_no": round(float(roc_auc_score(y[sub], -np.array(margins))), 3),
        "roc_auc_extractive_score_same_questions": round(
            float(roc_auc_score(y[sub], -extractive[sub])), 3
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
