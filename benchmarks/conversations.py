"""Follow-up questions before and after the condense stage, in one run (issue 30).

    .venv/bin/python benchmarks/conversations.py [--set evals/chat --set-docs examples/docs]
        [--set evals/pydocs --set-docs /usr/share/doc/python3.11/html] [--cache DIR]
        [--json-out FILE] [--smoke] [--report-only]

Each conversation set (a dataset folder's ``conversations.jsonl``, evals/conversations.py) is
indexed once (the eval cache, as ``rag eval answers`` does) and every conversation is answered
turn by turn twice, the two ways alternating conversation by conversation so that both see the
same machine:

- ``before``: what the API did until now — the earlier turns appended to the follow-up for
  retrieval ("(Earlier in this conversation: ...)", the most recent within 96 tokens, answers
  cut at 40 words), the condense stage off; the answer judged against that text;
- ``after``: the earlier turns handed over as ``Query.history``; the condense stage makes the
  standalone question that retrieval, answer selection and verification read.

The history each turn gets holds the answers that way itself gave before (as a chat client
sends them). Per way and set: first-turn and follow-up figures side by side (right, gold cited,
abstention, false abstention), per kind of follow-up, and latency p50.

Goals on the first set (exit status 1 when one is missed; ``--report-only`` reports without
failing, ``--smoke`` runs three conversations and enforces only the checks): after, follow-ups
right >= 0.85 and within 0.05 of first turns; the p50 of all turns after at most 1.25x before
(the same run: "unchanged" on a shared machine). Checks: every turn answered without an error.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

_MARKER = re.compile(r"\s*\[\d+\]")


def appended_history(
    question: str, history: Sequence[Any], count: Callable[[str], int], budget: int = 96
) -> str:
    """The question as the API built it before the condense stage (api/chat.py, up to
    commit 2a19ebe): earlier turns appended, most recent first, within ``budget`` tokens."""
    earlier: list[str] = []
    used = 0
    for turn in reversed(history):
        text = " ".join(turn.content.split())
        if turn.role == "assistant":
            text = " ".join(_MARKER.sub("", text).split()[:40])
        if not text:
            continue
        cost = count(text)
        if used + cost > budget:
            break
        used += cost
        earlier.append(text)
    if not earlier:
        return question
    return f"{question}\n\n(Earlier in this conversation: {' | '.join(earlier)})"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", type=Path, action="append", default=[], help="a dataset folder")
    ap.add_argument("--set-docs", type=Path, action="append", default=[], help="its docs folder")
    ap.add_argument("--cache", type=Path, default=None, help="eval index cache (evals.cache_dir)")
    ap.add_argument("--json-out", type=Path, default=None)
    add_goal_arguments(ap)
    args = ap.parse_args()

    from evals.answers import pipeline_runner
    from evals.conversations import evaluate_conversations, load_conversations
    from evals.datasets import load_beir, open_dataset_index
    from rag.core.config import load_settings
    from rag.core.tokens import load_tokenizer
    from rag.core.types import Turn
    from rag.indexing.embedding import embedder_for

    sets = args.set or [ROOT / "evals" / "chat"]
    docs = args.set_docs or [ROOT / "examples" / "docs"]
    overrides: dict[str, Any] = {}
    if args.cache:
        overrides["evals"] = {"cache_dir": str(args.cache)}
    settings = load_settings(overrides=overrides)
    embedder = embedder_for(settings)
    embedder.warm_up()
    encode = load_tokenizer(embedder.model_dir)

    def count(text: str) -> int:
        return len(encode(text))

    report: dict[str, Any] = {"sets": {}}
    answered_all = True
    for i, folder in enumerate(sets):
        data = load_beir(folder, "test", docs[i] if i < len(docs) else None)
        assert data.conversations is not None, f"{folder} has no conversations.jsonl"
        talks = load_conversations(data.conversations)[: 3 if args.smoke else None]
        dsi = open_dataset_index(settings, data, embedder, echo=lambda m: print(m, file=sys.stderr))
        before_settings = dsi.index.settings.model_copy(deep=True)
        before_settings.condense.enabled = False
        before = pipeline_runner(dsi.index, before_settings)
        after = pipeline_runner(dsi.index, dsi.index.settings)

        def old_way(question: str, history: Sequence[Turn], run: Any = before) -> Mapping[str, Any]:
            return run(appended_history(question, history, count))

        def new_way(question: str, history: Sequence[Turn], run: Any = after) -> Mapping[str, Any]:
            return run(question, history)

        started = time.perf_counter()
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        try:
            old_way("warm up", ())
            new_way("warm up", ())
            for talk in talks:  # alternating: both ways see the same machine
                results["before"].append(evaluate_conversations(old_way, [talk], dsi.to_doc))
                results["after"].append(evaluate_conversations(new_way, [talk], dsi.to_doc))
        finally:
            before.close()
            after.close()
            dsi.close()
        merged: dict[str, Any] = {}
        for way, parts in results.items():
            rows = [row for part in parts for row in part["per_turn"]]
            errors = [e for part in parts for e in part["errors"]]
            answered_all &= not errors
            merged[way] = _score(rows, errors)
        report["sets"][folder.name] = {
            "conversations": len(talks),
            "seconds": round(time.perf_counter() - started, 1),
            **merged,
        }
        print(_table(folder.name, merged), file=sys.stderr)

    goals = [Goal("answered", "every turn, no errors", answered_all, answered_all, True)]
    first = next(iter(report["sets"].values()))
    after_res, before_res = first["after"], first["before"]
    right_first = after_res["first_turn"]["answer_contains_gold"]
    right_follow = after_res["follow_up"]["answer_contains_gold"]
    p50_ratio = (
        after_res["latency_ms"]["p50"] / before_res["latency_ms"]["p50"]
        if before_res["latency_ms"]["p50"]
        else None
    )
    gap = right_first - right_follow if finite(right_first, right_follow) else None
    goals += [
        Goal(
            "after: follow-ups right",
            ">= 0.85",
            right_follow,
            finite(right_follow) and right_follow >= 0.85,
        ),
        Goal(
            "after: follow-ups within 0.05 of first turns",
            "first - follow-up <= 0.05",
            gap,
            gap is not None and gap <= 0.05,
        ),
        Goal(
            "p50 after / before (all turns, same run)",
            "<= 1.25",
            p50_ratio,
            p50_ratio is not None and p50_ratio <= 1.25,
        ),
    ]
    report["goal"] = (
        "on the first set, after: follow-ups right >= 0.85 and within 0.05 of first turns; "
        "p50 after <= 1.25x before"
    )
    return finish(report, goals, args, args.json_out)


def _score(rows: list[dict[str, Any]], errors: list[dict[str, str]]) -> dict[str, Any]:
    from evals.conversations import KINDS, measures
    from evals.retrieval import latency_summary

    first = [r for r in rows if r["kind"] == "first"]
    follow = [r for r in rows if r["kind"] != "first"]
    return {
        "first_turn": measures(first),
        "follow_up": measures(follow),
        "by_kind": {k: measures(rs) for k in KINDS if (rs := [r for r in rows if r["kind"] == k])},
        "latency_ms": latency_summary([r["latency_ms"] for r in rows]),
        "errors": errors,
        "per_turn": [
            {k: r[k] for k in ("id", "kind", "question", "standalone_question", "answer")}
            | {"right": r["contains_gold"], "abstained": r["abstained"]}
            for r in rows
        ],
    }


def _table(name: str, ways: dict[str, Any]) -> str:
    keys = (
        ("right", "answer_contains_gold"),
        ("cited", "gold_cited"),
        ("abstain", "abstention_rate_unanswerable"),
        ("false_abst", "false_abstention_rate_answerable"),
    )
    head = f"{'':<22}" + "".join(f"{k:>11}" for k, _ in keys) + f"{'p50_ms':>9}"
    lines = [f"== {name}", head]
    for way, res in ways.items():
        for part in ("first_turn", "follow_up"):
            m = res[part]
            cells = "".join(f"{'-' if m[key] is None else f'{m[key]:.3f}':>11}" for _, key in keys)
            lines.append(f"{way + ' ' + part:<22}{cells}{m['latency_ms']['p50']:>9.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
