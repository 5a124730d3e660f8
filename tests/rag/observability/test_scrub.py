"""The regular-expression floor of trace scrubbing (rag.observability.scrub.regex_scrub): what it
replaces, including the texts its fast paths (no "@", no digit) must still catch."""

from __future__ import annotations

import pytest

from rag.observability.scrub import regex_scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.roe@gmail.com today", "mail <EMAIL_ADDRESS> today"),  # no digit in the text
        ("mail j.roe2@corp.example.org", "mail <EMAIL_ADDRESS>"),
        ("call +44 20 7946 0958 now", "call <PHONE_NUMBER> now"),
        ("card 4111 1111 1111 1111.", "card <CREDIT_CARD>."),
        ("ssn 078-05-1120", "ssn <US_SSN>"),
        ("iban GB82 WEST 1234 5698 7654 32", "iban <IBAN_CODE>"),
        ("a@b.io and 555-123-4567", "<EMAIL_ADDRESS> and <PHONE_NUMBER>"),
        ("released 2026-03-14, retained 35 days", "released 2026-03-14, retained 35 days"),
        ("no personal data here", "no personal data here"),
        ("", ""),
    ],
)
def test_regex_scrub(text: str, expected: str) -> None:
    assert regex_scrub(text) == expected
