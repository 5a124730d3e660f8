"""PII recall on multi-locale documents: stock Presidio, the policy as shipped before, this one.

Usage: python benchmarks/pii_recall.py [--docs N] [--seed S] [--half heldout|tune|all]
       [--shipped-tree DIR] [--json-out FILE] [--dump FILE] [--smoke] [--report-only]

The documents come from benchmarks/_pii_corpus.py, generated at run time (nothing committed):
Faker in 20 locales filling chat transcripts, e-mails with signature blocks, CV headers, CRM
notes, shipping forms and security tickets with names (full, first name alone, lower case),
phone numbers as each locale writes them (trunk prefixes, extensions, short local numbers),
postal addresses in each locale's format on one or several lines, e-mail addresses, card
numbers grouped several ways, IBANs, SSNs and IP addresses, around ordinary text (orders,
dates, versions, amounts, companies, cities) that must not be flagged. A different generator
from benchmarks/pii_quality.py's. Even documents are the ``tune`` half, odd ones ``heldout``
(phrasings split between the halves too); the goals are judged on ``--half`` (heldout).

Scoring: a labelled value counts as found when at least half of its characters are covered
by detections of a counted type; character precision is the share of detected characters
that lie inside labelled values (anything else detected is a false positive). Per type:
recall, and the precision of the detections of that type.

Detectors, same documents, same run:
- ``stock``: ``AnalyzerEngine`` with Presidio's predefined recognizers on the same spaCy small
  model (built offline the only way it can be), its results at its default threshold, counting
  the types that name these categories (LOCATION for addresses);
- ``shipped`` (with ``--shipped-tree DIR``, a checkout of an earlier commit): that tree's
  ``rag pii scan`` over the same documents, as a subprocess;
- ``policy``: ``rag.guards.pii`` with default settings (every configured entity counts: what
  it finds is what every sink scrubs);
- ``policy+sweep``: the same plus the recall-first check applied to what leaves the process
  (``rag.guards.pii.sweep``), for information.

Goals on the held-out half (exit 1 when missed; ``--smoke`` enforces only the checks):
- recall of high-risk values (person, phone, e-mail, address, card, IBAN, SSN, IP) >= 0.90
- character precision >= 0.85
- recall never below stock Presidio's, per type
- check: every document analysed by every detector, figures finite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402
from benchmarks._pii_corpus import CATEGORIES, Doc, generate  # noqa: E402

STOCK_TYPES = {
    "PERSON",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "LOCATION",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
}
Detection = tuple[int, int, str]


def score(docs: list[Doc], found: list[list[Detection]], counted: set[str]) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    type_chars: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [inside gold, all]
    detected = inside = 0
    misses: dict[str, list[str]] = defaultdict(list)
    false_hits: list[str] = []
    for doc, hits in zip(docs, found, strict=True):
        hits = [h for h in hits if h[2] in counted]
        gold_chars: set[int] = set()
        for s, e, _, _ in doc.spans:
            gold_chars.update(range(s, e))
        covered: set[int] = set()
        for s, e, t in hits:
            chars = set(range(s, e))
            covered |= chars
            type_chars[t][0] += len(chars & gold_chars)
            type_chars[t][1] += len(chars)
            if not chars & gold_chars and len(false_hits) < 40:
                false_hits.append(f"{t}: {doc.text[s:e]!r}")
        for s, e, cat, value in doc.spans:
            chars = set(range(s, e))
            ok = len(chars & covered) * 2 >= len(chars)
            per[cat][0] += ok
            per[cat][1] += 1
            if not ok and len(misses[cat]) < 12:
                misses[cat].append(value)
        detected += len(covered)
        inside += len(covered & gold_chars)
    total = sum(v[1] for v in per.values())
    return {
        "recall": round(sum(v[0] for v in per.values()) / max(1, total), 4),
        "char_precision": round(inside / detected, 4) if detected else 0.0,
        "recall_by_type": {c: round(per[c][0] / per[c][1], 4) for c in CATEGORIES if per[c][1]},
        "char_precision_by_detected_type": {
            t: round(v[0] / v[1], 4) for t, v in sorted(type_chars.items()) if v[1]
        },
        "values": total,
        "missed_examples": dict(misses),
        "false_positive_examples": false_hits,
    }


def stock_presidio(spacy_model: str) -> Callable[[str], list[Detection]]:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": spacy_model}],
        }
    ).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    engine.analyze("warm up", language="en")
    return lambda t: [(r.start, r.end, r.entity_type) for r in engine.analyze(t, language="en")]


def shipped(tree: Path, docs: list[Doc]) -> list[list[Detection]]:
    """``rag pii scan`` of an earlier checkout over the documents (its default settings)."""
    with tempfile.TemporaryDirectory(prefix="pii-shipped-") as tmp:
        src = Path(tmp) / "docs.jsonl"
        src.write_text(
            "".join(json.dumps({"id": i, "text": d.text}) + "\n" for i, d in enumerate(docs)),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update(
            PYTHONPATH=str(tree),
            RAG_DATA_DIR=str(Path(tmp) / "data"),
            TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="",
        )
        proc = subprocess.run(
            [sys.executable, "-c", "from app.cli import main; main()", "pii", "scan", str(src)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"rag pii scan in {tree} failed: {proc.stderr[-2000:]}")
    out: list[list[Detection]] = [[] for _ in docs]
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        out[int(row["id"])] = [(e["start"], e["end"], e["type"]) for e in row["entities"]]
    return out


def timed(docs: list[Doc], detect: Callable[[str], list[Detection]]) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    found = [detect(d.text) for d in docs]
    return found, round((time.perf_counter() - t0) * 1000 / max(1, len(docs)), 2)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--docs", type=int, default=800, help="documents generated (both halves)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--half", choices=["heldout", "tune", "all"], default="heldout")
    ap.add_argument("--shipped-tree", type=Path, help="a checkout whose `rag pii scan` to compare")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--dump", type=Path, help="write the documents (JSONL, with labels) here")
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.docs = min(args.docs, 24)
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

    from rag.guards.pii import PiiSettings, detector_for
    from rag.guards.pii.sweep import sweep

    docs = [d for d in generate(args.docs, args.seed) if args.half in ("all", d.half)]
    if args.dump:
        args.dump.write_text(
            "".join(json.dumps(d.as_dict(), ensure_ascii=False) + "\n" for d in docs),
            encoding="utf-8",
        )
    settings = PiiSettings()
    ours = detector_for(settings)
    ours.warm_up()
    counted = set(settings.entities)

    def policy(text: str) -> list[Detection]:
        return [(s.start, s.end, s.type) for s in ours.detect(text)]

    results: dict[str, Any] = {
        "docs": len(docs),
        "generated": args.docs,
        "half": args.half,
        "seed": args.seed,
        "values_by_type": {
            c: sum(1 for d in docs for s in d.spans if s[2] == c) for c in CATEGORIES
        },
    }
    found_policy, ms_policy = timed(docs, policy)
    results["policy"] = {**score(docs, found_policy, counted), "ms_per_doc": ms_policy}
    swept = [
        found + [(s.start, s.end, s.type) for s in sweep(d.text, [_span(f) for f in found])]
        for d, found in zip(docs, found_policy, strict=True)
    ]
    results["policy+sweep"] = score(docs, swept, counted | {"SWEEP"})
    found_stock, ms_stock = timed(docs, stock_presidio(settings.spacy_model))
    results["stock"] = {**score(docs, found_stock, STOCK_TYPES), "ms_per_doc": ms_stock}
    if args.shipped_tree:
        results["shipped"] = score(docs, shipped(args.shipped_tree, docs), counted)
        results["shipped"]["tree"] = str(args.shipped_tree)

    new, stock = results["policy"], results["stock"]
    below = [
        c
        for c in CATEGORIES
        if c in stock["recall_by_type"] and new["recall_by_type"][c] < stock["recall_by_type"][c]
    ]
    results["table"] = _table(results)
    goals = [
        Goal("recall", ">= 0.90", new["recall"], new["recall"] >= 0.90),
        Goal("char_precision", ">= 0.85", new["char_precision"], new["char_precision"] >= 0.85),
        Goal("never_below_stock", "no type below stock Presidio's recall", below, not below),
        Goal(
            "figures",
            "every document analysed by every detector",
            [new["values"], stock["values"]],
            new["values"] == stock["values"] > 0
            and finite(new["recall"], stock["recall"], new["char_precision"]),
            check=True,
        ),
    ]
    results["goal"] = (
        "held-out recall >= 0.90 at character precision >= 0.85, never below stock Presidio"
    )
    print(results["table"], file=sys.stderr)
    return finish(results, goals, args, args.json_out)


def _span(d: Detection) -> Any:
    from rag.guards.pii import Span

    return Span(d[2], d[0], d[1], 1.0)


def _table(results: dict[str, Any]) -> str:
    cols = [c for c in ("stock", "shipped", "policy", "policy+sweep") if c in results]
    head = "| type | " + " | ".join(cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for c in CATEGORIES:
        cells = [f"{results[k]['recall_by_type'].get(c, float('nan')):.3f}" for k in cols]
        lines.append(f"| {c} ({results['values_by_type'][c]}) | " + " | ".join(cells) + " |")
    lines.append("| **recall** | " + " | ".join(f"{results[k]['recall']:.3f}" for k in cols) + " |")
    lines.append(
        "| **char precision** | "
        + " | ".join(f"{results[k]['char_precision']:.3f}" for k in cols)
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
