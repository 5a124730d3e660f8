"""PII detection quality on synthetic sentences: rag.guards.pii against default Presidio, same run.

Usage: python benchmarks/pii_quality.py [--sentences N] [--seed S] [--json-out FILE]
       [--smoke] [--report-only]

Fixtures are this project's own: sentence templates written here (support tickets, HR notes,
invoices, chat messages), filled by Faker (fixed seed) with names, street addresses (US, UK,
German), phone numbers (US formats and international ones, formatted by libphonenumber),
emails on real TLDs, card numbers, SSNs, IBANs and IPv4/IPv6 addresses. Nothing from
presidio-evaluator. A gold span counts as found when at least half of its characters are
covered by any detection; character precision is the share of detected characters that lie
inside gold spans (every sentence holds only the seeded values, so any other hit is a false
positive); every tenth sentence holds none at all (operational text like this project's
documents: retention periods, versions, regions, incident levels).

Baseline: ``AnalyzerEngine`` with Presidio's predefined recognizers over the same spaCy small
model (built offline the only way it can be), all of its results at its default threshold,
restricted to the entity types that name these categories (LOCATION counted for addresses).

Goals (exit 1 when missed; ``--smoke`` enforces only the checks):
- recall of seeded spans >= 0.90 at character precision >= 0.80 (rag.guards.pii, default settings)
- check: every sentence analysed, both detectors produced figures
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

# {slot} is a category; each template is filled with fresh values.
TEMPLATES = [
    "Please update the billing contact to {name}, reachable at {email}.",
    "Ship the replacement laptop to {address} before Friday.",
    "Customer {name} called from {phone_us} about the duplicate charge on card {card}.",
    "Our Berlin office forwarded a message from {name}: call back on {phone_intl}.",
    "Refund approved. Send it to IBAN {iban} in the name of {name}.",
    "The login attempts came from {ip} and later from {ip}.",
    "Employee record: {name}, SSN {ssn}, home address {address}.",
    "Hi team, {name} ({email}) will cover on-call this week; mobile {phone_intl}.",
    "Invoice 4471 was paid with {card}; receipt emailed to {email}.",
    "New hire paperwork for {name} lists {address} and phone {phone_us}.",
    "Escalation: {name} says the VPN drops when connecting from {ip}.",
    "Wire transfer details — beneficiary {name}, account {iban}.",
    "Can you reach {name} at {phone_us} or by email at {email}?",
    "The courier could not find {address}; the recipient {name} is not answering {phone_intl}.",
    "Tax form W-4 for {name} shows SSN {ssn}.",
    "Blocked {ip} after 40 failed logins for the account of {name}.",
    "{name} moved to {address}, please update the HR system.",
    "Forwarding voicemail from {phone_intl}: {name} wants a callback about the contract.",
    "Card ending in the number {card} belongs to {name}, who lives at {address}.",
    "Contact sheet: {name}, {email}, {phone_us}.",
    "Reimbursement to {iban} for {name}; questions to {email}.",
    "I met {name} and {name} at the conference; both asked for the slides.",
    "Server logs show {ip} requesting the admin page at 02:00.",
    "My social security number is {ssn} and my name is {name}.",
    "Send the signed NDA to {name}, {address}.",
    "Dial {phone_us} to reach {name} in accounts payable.",
    "Our supplier in Munich, contact {name}, can be called on {phone_intl}.",
    "Please delete the data of {name} (email {email}, IP {ip}) under GDPR.",
]

# Sentences with no personal data, in the style of this project's documents: every tenth
# fixture is one, so character precision also counts hits on ordinary operational text.
NEGATIVES = [
    "Backups are retained for 35 days and monthly snapshots are kept for 13 months.",
    "Full database backups run nightly at 02:00 UTC and are encrypted with AES-256.",
    "A SEV2 incident pages the on-call engineer, who acknowledges within 5 minutes.",
    "The public API allows 600 requests per minute per key; bursts of 50 are accepted.",
    "Laptops are replaced every three years and lost ones are reported within 24 hours.",
    "New employees receive 25 days of paid vacation per year.",
    "The Eiffel Tower was built between 1887 and 1889 for the World's Fair.",
    "Release 4.2.1 ships on Tuesday after the CI pipeline passes on the main branch.",
    "Order 88231 was refunded; the ticket is closed in the Zendesk queue.",
    "The payment service runs in eu-central-1 with a replica in eu-west-2.",
    "Rotate the staging credentials every 90 days using the Vault policy.",
    "Version 2 of the answer prompt cites passages like [1] after each sentence.",
]

INTL_LOCALES = ["en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "en_IN", "en_AU", "pt_BR"]
REGIONS = {"en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "it_IT": "IT", "es_ES": "ES",
           "nl_NL": "NL", "en_IN": "IN", "en_AU": "AU", "pt_BR": "BR"}  # fmt: skip
CATEGORY_TYPES = {
    "name": {"PERSON"},
    "address": {"STREET_ADDRESS", "LOCATION"},
    "phone_us": {"PHONE_NUMBER"},
    "phone_intl": {"PHONE_NUMBER"},
    "email": {"EMAIL_ADDRESS"},
    "card": {"CREDIT_CARD"},
    "ssn": {"US_SSN"},
    "iban": {"IBAN_CODE"},
    "ip": {"IP_ADDRESS"},
}


def value_makers(seed: int) -> dict[str, Callable[[], str]]:
    import phonenumbers
    from faker import Faker

    us = Faker("en_US")
    us.seed_instance(seed)
    intl = {loc: Faker(loc) for loc in INTL_LOCALES}
    for i, f in enumerate(intl.values()):
        f.seed_instance(seed + i + 1)
    rng = random.Random(seed)

    def address() -> str:
        kind = rng.random()
        if kind < 0.55:
            a = us.street_address()
            if rng.random() < 0.6:
                a += f", {us.city()}, {us.state_abbr()} {us.zipcode()}"
            return a
        if kind < 0.8:
            gb = intl["en_GB"]
            return f"{gb.building_number()} {gb.street_name()}, {gb.city()} {gb.postcode()}"
        de = intl["de_DE"]
        return f"{de.street_name()} {de.building_number()}, {de.postcode()} {de.city()}"

    def phone_intl() -> str:
        for _ in range(50):
            loc = rng.choice(INTL_LOCALES)
            raw = intl[loc].phone_number()
            try:
                n = phonenumbers.parse(raw, REGIONS[loc])
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(n):
                fmt = rng.choice(
                    [
                        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                        phonenumbers.PhoneNumberFormat.E164,
                    ]
                )
                return phonenumbers.format_number(n, fmt)
        return "+44 20 7946 0958"

    def phone_us() -> str:
        area, ex, line = rng.randint(201, 989), rng.randint(200, 989), rng.randint(0, 9999)
        fmt = rng.choice(["({a}) {e}-{l:04d}", "{a}-{e}-{l:04d}", "{a}.{e}.{l:04d}",
                          "+1 {a} {e} {l:04d}", "1-{a}-{e}-{l:04d}", "({a}){e}-{l:04d}x{x}"])  # fmt: skip
        return fmt.format(a=area, e=ex, l=line, x=rng.randint(10, 999))

    def email() -> str:
        return us.free_email() if rng.random() < 0.5 else us.company_email()

    def card() -> str:
        n = us.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex"]))
        if rng.random() < 0.5 and len(n) == 16:
            n = " ".join(n[i : i + 4] for i in range(0, 16, 4))
        return n

    def iban() -> str:
        loc = rng.choice(["de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES"])
        v = intl[loc].iban()
        if rng.random() < 0.5:
            v = " ".join(v[i : i + 4] for i in range(0, len(v), 4))
        return v

    def ip() -> str:
        return us.ipv4_public() if rng.random() < 0.8 else us.ipv6()

    def name() -> str:
        loc = rng.random()
        if loc < 0.7:
            return us.name() if rng.random() < 0.8 else f"{us.first_name()} {us.last_name()}"
        return rng.choice([intl["en_GB"], intl["de_DE"], intl["fr_FR"], intl["es_ES"]]).name()

    return {
        "name": name,
        "address": address,
        "phone_us": phone_us,
        "phone_intl": phone_intl,
        "email": email,
        "card": card,
        "ssn": us.ssn,
        "iban": iban,
        "ip": ip,
    }


def make_fixtures(n: int, seed: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    import re

    makers = value_makers(seed)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append((NEGATIVES[(i // 10) % len(NEGATIVES)], []))
            continue
        template = TEMPLATES[i % len(TEMPLATES)] if i < len(TEMPLATES) else rng.choice(TEMPLATES)
        text, spans, pos = "", [], 0
        for m in re.finditer(r"\{(\w+)\}", template):
            text += template[pos : m.start()]
            value = makers[m.group(1)]()
            spans.append((len(text), len(text) + len(value), m.group(1)))
            text += value
            pos = m.end()
        text += template[pos:]
        out.append((text, spans))
    return out


def score(
    fixtures: list[tuple[str, list[tuple[int, int, str]]]],
    detect: Callable[[str], list[tuple[int, int, str]]],
    types: Callable[[str], bool],
) -> dict[str, Any]:
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    detected_chars = true_chars = 0
    misses: list[str] = []
    t0 = time.perf_counter()
    for text, gold in fixtures:
        hits = [(s, e) for s, e, t in detect(text) if types(t)]
        covered = set()
        for s, e in hits:
            covered.update(range(s, e))
        gold_chars = set()
        for s, e, cat in gold:
            chars = set(range(s, e))
            gold_chars |= chars
            ok = len(chars & covered) * 2 >= len(chars)
            found[cat][0] += ok
            found[cat][1] += 1
            if not ok and len(misses) < 25:
                misses.append(f"{cat}: {text[s:e]!r}")
        detected_chars += len(covered)
        true_chars += len(covered & gold_chars)
    total = sum(v[1] for v in found.values())
    return {
        "recall": round(sum(v[0] for v in found.values()) / max(1, total), 4),
        "char_precision": round(true_chars / detected_chars, 4) if detected_chars else 0.0,
        "per_category_recall": {k: round(v[0] / v[1], 4) for k, v in sorted(found.items())},
        "spans": total,
        "ms_per_sentence": round((time.perf_counter() - t0) * 1000 / max(1, len(fixtures)), 2),
        "missed_examples": misses,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sentences", type=int, default=600)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.sentences = min(args.sentences, 40)
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from rag.guards.pii import PiiSettings, detector_for

    fixtures = make_fixtures(args.sentences, args.seed)
    settings = PiiSettings()
    ours = detector_for(settings)
    ours.warm_up()
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": settings.spacy_model}],
        }
    ).create_engine()
    baseline = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    baseline.analyze("warm up", language="en")
    wanted = set().union(*CATEGORY_TYPES.values())

    rag_pii = score(
        fixtures,
        lambda t: [(s.start, s.end, s.type) for s in ours.detect(t)],
        lambda t: t in set(settings.entities),
    )
    presidio = score(
        fixtures,
        lambda t: [(r.start, r.end, r.entity_type) for r in baseline.analyze(t, language="en")],
        lambda t: t in wanted,
    )
    results: dict[str, Any] = {
        "sentences": len(fixtures),
        "seed": args.seed,
        "rag_pii": rag_pii,
        "presidio_default": presidio,
        "recall_gain": round(rag_pii["recall"] - presidio["recall"], 4),
    }
    goals = [
        Goal("recall", ">= 0.90", rag_pii["recall"], rag_pii["recall"] >= 0.90),
        Goal(
            "char_precision",
            ">= 0.80",
            rag_pii["char_precision"],
            rag_pii["char_precision"] >= 0.80,
        ),
        Goal(
            "figures",
            "both detectors measured on every sentence",
            [rag_pii["spans"], presidio["spans"]],
            rag_pii["spans"] == presidio["spans"] > 0
            and finite(rag_pii["recall"], presidio["recall"]),
            check=True,
        ),
    ]
    results["goal"] = "recall of seeded spans >= 0.90 at character precision >= 0.80"
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
