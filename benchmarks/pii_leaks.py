"""PII leak rates end to end: seeded values that reach the model server and Langfuse.

Usage: python benchmarks/pii_leaks.py [--docs N] [--questions Q] [--seed S] [--half H] [--json-out FILE]
       [--smoke] [--report-only]

The held-out half of benchmarks/_pii_corpus.py's documents (generated at run time: chats,
e-mails with signatures, CVs, CRM notes, shipping forms, tickets in 20 locales) is ingested as
Markdown files with ``generation.chain: [openai, extractive]``, the default ``pii`` section and
Langfuse tracing on. The ``openai`` backend is a recording OpenAI-protocol server on loopback
(tests/rag/chat_server.py) that answers by quoting the first line of what it was sent that holds
a placeholder (so restored answers carry the values on to the trace); Langfuse is the loopback
stand-in (tests/langfuse_standin.py) that decodes what the real Langfuse SDK exports. Each
question names a person of one document and often carries the asker's own phone or e-mail.

Counted: the distinct seeded values (document labels and the askers' values) that were in what
the model was given (the request before pseudonymisation, recorded at
``rag.guards.pii.outbound.pseudonymise_request``); of those, the ones found in any request the
model server received, and in anything the Langfuse stand-in received. A value counts as found
when it appears whole (any case, any spacing), as a digit sequence with other separators, or
by a part that identifies it: a name's words that are no English words, an address's street
line, and only parts that never occur in the corpus outside the labels.

Goals (exit 1 when missed; ``--smoke`` enforces only the checks):
- seeded values reaching the model server / values given to the model <= 0.02
- seeded values reaching Langfuse / values given to the model <= 0.02
- check: every question answered, requests and spans recorded
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402
from benchmarks._pii_corpus import Doc, generate  # noqa: E402

_PH = re.compile(r"[<\[][A-Z][A-Z_]*_\d{1,4}[>\]]")


def questions(docs: list[Doc], n: int, seed: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """(question, [(category, value) asked with it]) for ``n`` documents that name a person."""
    from faker import Faker

    rng = random.Random(seed)
    fake = Faker(["en_GB", "de_DE", "fr_FR", "pl_PL", "fi_FI"])
    fake.seed_instance(seed)
    out = []
    named = [d for d in docs if any(s[2] == "person" for s in d.spans)]
    for i in range(n):
        d = named[i % len(named)]
        person = max((s for s in d.spans if s[2] == "person"), key=lambda s: len(s[3]))[3]
        asked = [("person", person)]
        q = rng.choice(
            [
                f"What is the phone number of {person}?",
                f"Where does {person} live?",
                f"What did {person} ask for?",
                f"How can I reach {person}?",
                f"Which card or account did {person} use?",
            ]
        )
        r = rng.random()
        if r < 0.35:
            phone = fake.phone_number()
            q += f" Call me back on {phone}."
            asked.append(("phone", phone))
        elif r < 0.6:
            email = fake.free_email()
            q += f" I am {email}."
            asked.append(("email", email))
        out.append((q, asked))
    return out


def _units(category: str, value: str, background: str) -> list[re.Pattern[str]]:
    """Patterns by which a seeded value counts as present in a text."""
    from rag.guards.pii.mentions import name_parts, street_parts
    from rag.guards.pii.text import is_english

    def words(v: str) -> re.Pattern[str]:
        return re.compile(
            r"(?<!\w)" + r"\s+".join(re.escape(w) for w in v.split()) + r"(?!\w)", re.IGNORECASE
        )

    units = [words(value)]
    digits = re.sub(r"\D", "", value)
    if category in ("phone", "card", "iban", "ssn") and len(digits) >= 7:
        core = digits[-9:] if category == "phone" else digits
        units.append(re.compile(r"(?<!\d)" + r"[\s\-./()]{0,3}".join(core) + r"(?!\d)"))
    parts: list[str] = []
    if category == "person":
        parts = [p for p in name_parts(value) if len(p) >= 3 and not is_english(p)]
    elif category == "address":
        parts = street_parts(value) + [
            ln.strip() for ln in re.split(r"[\n|]", value) if len(ln.strip()) >= 5
        ]
    for p in parts:
        pat = words(p)
        if not pat.search(background):
            units.append(pat)
    return units


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--half", choices=["heldout", "tune"], default="heldout")
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.docs, args.questions = min(args.docs, 8), min(args.questions, 6)
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    os.environ.pop("RAG_DATA_DIR", None)

    sys.path.insert(0, str(ROOT / "tests" / "rag"))
    sys.path.insert(0, str(ROOT / "tests"))
    from chat_server import ChatServer
    from langfuse_standin import LangfuseStandIn

    import rag.guards.pii.outbound as outbound
    from rag.core.config import load_settings
    from rag.core.types import Query
    from rag.indexing.embedding import embedder_for
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.observability import tracing_for
    from rag.query.pipeline import QueryPipeline

    docs = [d for d in generate(2 * args.docs, args.seed) if d.half == args.half][: args.docs]
    asked = questions(docs, args.questions, args.seed)

    class QuotingServer(ChatServer):
        def pieces(self, body: dict[str, Any]) -> list[str]:
            sent = "\n".join(m.get("content") or "" for m in body.get("messages", []))
            line = next((ln for ln in sent.splitlines() if _PH.search(ln)), "")
            self.reply = f"According to the notes: {line.strip()[:300]} [1]"
            return [w if i == 0 else " " + w for i, w in enumerate(self.reply.split(" "))]

    given_texts: list[str] = []
    real = outbound.pseudonymise_request

    def recording(request: Any, detector: Any, answers: str = "restore") -> Any:
        given_texts.append("\n".join(m.get("content") or "" for m in request.messages))
        return real(request, detector, answers)

    outbound.pseudonymise_request = recording  # type: ignore[assignment]
    base = Path(tempfile.mkdtemp(prefix="pii-leaks-"))
    server = QuotingServer()
    standin = LangfuseStandIn().__enter__()  # serving from here on
    answered = 0
    try:
        folder = base / "docs"
        folder.mkdir()
        for d in docs:
            (folder / f"{d.id}.md").write_text(f"# Note {d.id}\n\n{d.text}\n", encoding="utf-8")
        settings = load_settings(
            overrides={
                "data_dir": str(base / "data"),
                "cache": {"enabled": False},
                "generation": {
                    "chain": ["openai", "extractive"],
                    "openai": {"base_url": server.base_url},
                },
                "tracing": {
                    "public_key": f"pk-lf-bench-{uuid.uuid4().hex[:12]}",
                    "secret_key": "sk-lf-bench",
                    "base_url": standin.url,
                    "flush_interval_seconds": 0.5,
                    "export_timeout_seconds": 2.0,
                },
            }
        )
        index = Index(settings, embedder=embedder_for(settings))
        index.open(create=True)
        t0 = time.perf_counter()
        report = Ingestor(index).sync_folder(folder)
        ingest_s = time.perf_counter() - t0
        assert report.failed == 0, report.failures
        tracing = tracing_for(settings)
        pipeline = QueryPipeline(index, settings, tracer=tracing.tracer)
        t0 = time.perf_counter()
        for q, _ in asked:
            answered += bool(pipeline.run(Query(q)).answer)
        query_s = time.perf_counter() - t0
        standin.wait_for(lambda s: len(s.spans) >= len(asked), timeout=20)
        tracing.shutdown(5.0)
        pipeline.close()
        index.close()
        exported = standin.everything()
    finally:
        outbound.pseudonymise_request = real  # type: ignore[assignment]
        server.close()
        standin.stop()
        shutil.rmtree(base, ignore_errors=True)

    # The English word list that decides which name parts identify a person (the spaCy
    # model's own, as the detector loads it).
    import spacy

    from rag.guards.pii.text import load_english_words

    load_english_words(spacy.load(settings.pii.spacy_model))
    # The corpus with every labelled value blanked: parts found there identify nothing.
    background = "\n".join(
        "".join(
            "\0" if any(s <= i < e for s, e, _, _ in d.spans) else c for i, c in enumerate(d.text)
        )
        for d in docs
    )
    seeded = {(c, v) for d in docs for _, _, c, v in d.spans}
    seeded |= {cv for _, values in asked for cv in values}
    given_all = "\n".join(given_texts)
    sent_all = json.dumps(server.requests, ensure_ascii=False)
    units = {cv: _units(cv[0], cv[1], background) for cv in seeded}
    given = {cv for cv, pats in units.items() if pats[0].search(given_all)}
    to_model = {cv for cv in given if any(p.search(sent_all) for p in units[cv])}
    to_langfuse = {cv for cv in given if any(p.search(exported) for p in units[cv])}

    def by_type(values: set[tuple[str, str]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for c, _ in values:
            out[c] = out.get(c, 0) + 1
        return dict(sorted(out.items()))

    if os.environ.get("PII_LEAKS_DUMP"):
        with open(os.environ["PII_LEAKS_DUMP"], "w", encoding="utf-8") as f:
            for c, v in sorted(to_model):
                for p in units[(c, v)]:
                    for m in p.finditer(sent_all):
                        f.write(
                            f"{c} {v!r}: ...{sent_all[max(0, m.start() - 120) : m.end() + 60]!r}\n"
                        )
                        break
    model_rate = round(len(to_model) / max(1, len(given)), 4)
    langfuse_rate = round(len(to_langfuse) / max(1, len(given)), 4)
    results: dict[str, Any] = {
        "docs": len(docs),
        "half": args.half,
        "questions": len(asked),
        "answered": answered,
        "model_requests": len(server.requests),
        "spans_exported": len(standin.spans),
        "seeded_values": len(seeded),
        "given_to_model": len(given),
        "given_by_type": by_type(given),
        "reached_model_server": len(to_model),
        "reached_model_server_by_type": by_type(to_model),
        "reached_langfuse": len(to_langfuse),
        "reached_langfuse_by_type": by_type(to_langfuse),
        "model_leak_rate": model_rate,
        "langfuse_leak_rate": langfuse_rate,
        "model_leak_examples": sorted(v for _, v in to_model)[:25],
        "langfuse_leak_examples": sorted(v for _, v in to_langfuse)[:25],
        "ingest_seconds": round(ingest_s, 2),
        "query_seconds": round(query_s, 2),
    }
    goals = [
        Goal("model_leak_rate", "<= 0.02", model_rate, model_rate <= 0.02),
        Goal("langfuse_leak_rate", "<= 0.02", langfuse_rate, langfuse_rate <= 0.02),
        Goal(
            "figures",
            "every question answered, requests and spans recorded",
            [answered, len(server.requests), len(standin.spans)],
            answered == len(asked)
            and len(server.requests) > 0
            and len(standin.spans) > 0
            and len(given) > 0
            and finite(model_rate, langfuse_rate),
            check=True,
        ),
    ]
    results["goal"] = "<= 2% of the seeded values given to the model reach its server or Langfuse"
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
