"""Per-request pseudonyms and the way back, streamed pieces included."""

from __future__ import annotations

import itertools

import pytest

from rag.guards.pii import PLACEHOLDER, PiiSettings, Pseudonymiser, detector_for


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    d = detector_for(PiiSettings())
    d.warm_up()
    return d


def test_the_same_value_gets_the_same_placeholder_in_one_request(detector) -> None:  # type: ignore[no-untyped-def]
    p = Pseudonymiser(detector)
    out = p.messages(
        [
            {"role": "system", "content": "Answer from the passages."},
            {
                "role": "user",
                "content": "Passage: John Miller (john.miller@gmail.com) owns billing.",
            },
            {
                "role": "user",
                "content": "What does John Miller own? Mail JOHN.MILLER@GMAIL.COM too.",
            },
        ]
    )
    assert out[0]["content"] == "Answer from the passages."
    assert out[1]["content"] == "Passage: <PERSON_1> (<EMAIL_ADDRESS_1>) owns billing."
    assert out[2]["content"] == "What does <PERSON_1> own? Mail <EMAIL_ADDRESS_1> too."
    assert "Miller" not in str(out) and "gmail" not in str(out).lower()
    # Another request numbers from 1 again: placeholders mean nothing across requests.
    q = Pseudonymiser(detector)
    assert q.pseudonymise("Call 212-555-0187.") == "Call <PHONE_NUMBER_1>."


def test_restore_and_redact(detector) -> None:  # type: ignore[no-untyped-def]
    p = Pseudonymiser(detector)
    p.pseudonymise("John Miller, john.miller@gmail.com")
    answer = (
        "<PERSON_1> can be reached at < EMAIL_ADDRESS_1 > or [EMAIL_ADDRESS_1]; PERSON_1 agrees."
    )
    assert p.restore(answer) == (
        "John Miller can be reached at john.miller@gmail.com or john.miller@gmail.com; John Miller agrees."
    )
    # A placeholder the request never issued: never shown as one.
    assert p.restore("Ask <PERSON_7>.") == "Ask [PERSON]."
    r = Pseudonymiser(detector, answers="redact")
    r.pseudonymise("John Miller, john.miller@gmail.com")
    assert r.restore(answer) == (
        "[PERSON] can be reached at [EMAIL_ADDRESS] or [EMAIL_ADDRESS]; [PERSON] agrees."
    )
    assert not PLACEHOLDER.search(r.restore(answer))
    # Identifiers that merely look like one stay: SEV_2 was never issued, REF is no entity.
    assert (
        p.restore("A SEV_2 page, see [ref_1] and <h_2>.") == "A SEV_2 page, see [ref_1] and <h_2>."
    )


@pytest.mark.parametrize("mode", ["restore", "redact"])
def test_restore_across_every_token_boundary(detector, mode: str) -> None:  # type: ignore[no-untyped-def]
    p = Pseudonymiser(detector, answers=mode)
    p.pseudonymise("John Miller wrote from john.miller@gmail.com and called +44 20 7946 0958.")
    answer = "Yes: <PERSON_1> (<EMAIL_ADDRESS_1>) rang from <PHONE_NUMBER_1>. Done <PERSON_1>"
    whole = p.restore(answer)
    assert "<" not in whole and "_1" not in whole
    # Every way of cutting the answer in two, three and per character gives the same text,
    # and no released piece ever holds part of a placeholder.
    cuts = [[i] for i in range(1, len(answer))] + [
        [i, j] for i in range(1, len(answer), 7) for j in range(i + 1, len(answer), 5)
    ]
    cuts.append(list(range(1, len(answer))))
    for cut in cuts:
        bounds = [0, *cut, len(answer)]
        pieces = [answer[a:b] for a, b in itertools.pairwise(bounds)]
        stream = p.stream()
        released = [stream.feed(piece) for piece in pieces] + [stream.flush()]
        assert "".join(released) == whole, pieces
        for r in released:
            assert "<" not in r and "PERSON_" not in r and "ADDRESS_" not in r, (pieces, released)


def test_an_unfinished_placeholder_at_the_end_is_not_swallowed(detector) -> None:  # type: ignore[no-untyped-def]
    p = Pseudonymiser(detector)
    p.pseudonymise("John Miller")
    s = p.stream()
    assert s.feed("x < y and a <PERS") == "x < y and a "
    assert s.flush() == "<PERS", "not a placeholder after all: the text as written"
