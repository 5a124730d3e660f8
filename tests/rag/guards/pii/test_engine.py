"""The detector: Presidio built offline, this project's recognizers, the pii section's knobs."""

from __future__ import annotations

import pytest

from rag.guards.pii import Detector, PiiPattern, PiiSettings, Scrubber, detector_for


@pytest.fixture(scope="module")
def detector() -> Detector:
    d = detector_for(PiiSettings())
    d.warm_up()
    return d


def _found(detector: Detector, text: str) -> dict[str, str]:
    return {text[s.start : s.end]: s.type for s in detector.detect(text)}


def test_a_fresh_engine_builds_and_detects_with_the_network_blocked() -> None:
    # A Detector of its own (not the process's cached one): spaCy model, recognizers and the
    # email recognizer's public suffix list all load offline.
    d = Detector(PiiSettings(allow_list=["nothing-here"]))
    d.warm_up()
    found = _found(d, "Write to maria.garcia@outlook.com or call (415) 555-0134.")
    assert found == {"maria.garcia@outlook.com": "EMAIL_ADDRESS", "(415) 555-0134": "PHONE_NUMBER"}


@pytest.mark.parametrize(
    ("text", "value", "entity"),
    [
        (
            "Ship it to 1600 Pennsylvania Avenue NW, Washington, DC 20500 today.",
            "1600 Pennsylvania Avenue NW, Washington, DC 20500",
            "STREET_ADDRESS",
        ),
        (
            "She moved to 8916 Lynch Harbor Suite 419, Thompsontown, AS 90444.",
            "8916 Lynch Harbor Suite 419, Thompsontown, AS 90444",
            "STREET_ADDRESS",
        ),
        (
            "Our office: 221B Baker Street, London NW1 6XE.",
            "221B Baker Street, London NW1 6XE",
            "STREET_ADDRESS",
        ),
        (
            "Deliver it to Hauptstraße 5, 10115 Berlin please.",
            "Hauptstraße 5, 10115 Berlin",
            "STREET_ADDRESS",
        ),
        (
            "Call the Paris desk on +33 1 42 68 53 00 after nine.",
            "+33 1 42 68 53 00",
            "PHONE_NUMBER",
        ),
        ("Her mobile is +49 151 23456789.", "+49 151 23456789", "PHONE_NUMBER"),
        ("Dial 0044 20 7946 0958 from abroad.", "0044 20 7946 0958", "PHONE_NUMBER"),
        ("Or 001-212-555-0187x123 for the US office.", "001-212-555-0187x123", "PHONE_NUMBER"),
        (
            "The key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t leaked.",
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
            "API_KEY",
        ),
        (
            "Token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 in the repo.",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "API_KEY",
        ),
        ("aws key AKIAIOSFODNN7EXAMPLE was rotated", "AKIAIOSFODNN7EXAMPLE", "API_KEY"),
        (
            "Authorization: Bearer 9f8e7d6c5b4a39281716abcdef",
            "9f8e7d6c5b4a39281716abcdef",
            "API_KEY",
        ),
        ("Paid with 2223 0031 2200 3222 yesterday.", "2223 0031 2200 3222", "CREDIT_CARD"),
        (
            "IBAN DE89 3704 0044 0532 0130 00 for the refund.",
            "DE89 3704 0044 0532 0130 00",
            "IBAN_CODE",
        ),
        ("Contact Dr. Anna Kowalski about it.", "Dr. Anna Kowalski", "PERSON"),
    ],
)
def test_custom_recognizers(detector: Detector, text: str, value: str, entity: str) -> None:
    assert _found(detector, text).get(value) == entity, detector.detect(text)


def test_no_false_positives_on_the_projects_own_facts(detector: Detector) -> None:
    # Presidio's defaults flag these (DATE_TIME, PERSON, LOCATION): the facts users ask about.
    for text in [
        "Backups are retained for 35 days and monthly snapshots are kept for 13 months.",
        "Full database backups run nightly at 02:00 UTC and are encrypted with AES-256.",
        "Backup restores are tested every quarter.",
        "A SEV2 incident pages the on-call engineer; CI runs on every merge.",
        "Every engineer gets a laptop with 32 GB of memory. Order 1234567890 shipped.",
    ]:
        assert detector.detect(text) == [], text


def test_allow_list_thresholds_context_words_and_patterns() -> None:
    text = "Ask Jonathan Meyer about ticket EMP-123456; hotline 555-0199-22."
    base = _found(Detector(PiiSettings()), text)
    assert base.get("Jonathan Meyer") == "PERSON"
    assert "EMP-123456" not in base

    allowed = Detector(PiiSettings(allow_list=["jonathan meyer"]))
    assert "Jonathan Meyer" not in _found(allowed, text), "allow list: case-insensitive, exact"

    strict = Detector(PiiSettings(thresholds={"PERSON": 0.95}))
    assert "Jonathan Meyer" not in _found(strict, text), "a per-entity threshold above NER's 0.85"

    own = Detector(
        PiiSettings(
            entities=["PERSON", "EMPLOYEE_ID"],
            patterns=[PiiPattern(entity="EMPLOYEE_ID", regex=r"\bEMP-\d{6}\b", score=0.3)],
            thresholds={"EMPLOYEE_ID": 0.5},
            context_words={"EMPLOYEE_ID": ["ticket"]},
        )
    )
    # 0.3 alone is under the threshold; the context word "ticket" lifts it over.
    assert _found(own, text).get("EMP-123456") == "EMPLOYEE_ID"
    no_context = Detector(
        PiiSettings(
            entities=["EMPLOYEE_ID"],
            patterns=[PiiPattern(entity="EMPLOYEE_ID", regex=r"\bEMP-\d{6}\b", score=0.3)],
            thresholds={"EMPLOYEE_ID": 0.5},
        )
    )
    assert _found(no_context, text) == {}


def test_scrubber_is_cheap_until_used_and_off_when_disabled() -> None:
    s = Scrubber(PiiSettings(enabled=False))
    assert s.scrub("jane.doe@gmail.com") == "jane.doe@gmail.com"
    assert s._detector is None, "a disabled scrubber never builds an engine"
    on = Scrubber(PiiSettings())
    assert on.scrub("Mail jane.doe@gmail.com now") == "Mail <EMAIL_ADDRESS> now"
    assert on.scrub_value({"q": ["call 212-555-0187"], "n": 3}) == {
        "q": ["call <PHONE_NUMBER>"],
        "n": 3,
    }


def test_the_light_path_finds_what_the_full_engine_finds(detector: Detector) -> None:
    # No two capitalised words in a row: spaCy's models are skipped; the spans must not change.
    texts = [
        "how long are backups kept? i am john.miller@gmail.com, call (415) 555-0134.",
        "refund to iban DE89 3704 0044 0532 0130 00 or card 4111 1111 1111 1111 please",
        "the key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t came from 10.20.30.40, ssn 219-09-9999",
        "ship to 42 Baker Street, mobile +49 151 23456789.",
    ]
    assert detector._light is not None
    for text in texts:
        light = detector.detect(text)
        full_engine = detector._light
        detector._light = None  # force spaCy for this call
        try:
            full = detector.detect(text)
        finally:
            detector._light = full_engine
        assert light == full and light, text
    # Two capitalised words in a row go through spaCy (a name is possible).
    assert [s.type for s in detector.detect("ask Sarah Connor")] == ["PERSON"]


def test_detecting_a_batch_finds_what_one_call_each_finds(detector: Detector) -> None:
    # The export of a batch of traces scrubs its questions and answers in one spaCy pass.
    texts = [
        "Does John Miller keep the production backups? Mail john.miller@gmail.com.",
        "ship to 42 Baker Street, mobile +49 151 23456789.",
        "",
        "Ask Sarah Connor or Maria Garcia in Berlin about the SEV1 postmortem.",
        "how long are backups kept?",
        "Employee David Chen (DE89 3704 0044 0532 0130 00) wants a refund.",
    ]
    assert detector.detect_many(texts) == [detector.detect(t) for t in texts]
    found = detector.detect_many(texts)
    assert [s.type for s in found[0]].count("PERSON") == 1 and not found[2]
    assert Scrubber(PiiSettings()).scrub_many(texts) == [
        Scrubber(PiiSettings()).scrub(t) for t in texts
    ]
