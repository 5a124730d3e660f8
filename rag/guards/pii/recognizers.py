"""Recognizers where Presidio's defaults are weak: street addresses, phone numbers written the
international way (and US ones at a usable score), API keys and tokens, and a deployment's own
regular expressions (``pii.patterns``).

Imports Presidio: loaded only when an engine is built (:mod:`rag.guards.pii.engine`).
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from presidio_analyzer import (
    AnalysisExplanation,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts

from rag.core.pii_settings import PiiPattern

# Case matters in these patterns (capitalised names, upper-case prefixes): Presidio's default
# flags include IGNORECASE.
_FLAGS = re.DOTALL | re.MULTILINE

__all__ = [
    "ApiKeyRecognizer",
    "IntlPhoneRecognizer",
    "MastercardSeries2Recognizer",
    "PersonTitleRecognizer",
    "StreetAddressRecognizer",
    "custom_recognizers",
]

# USPS street suffixes (Publication 28, appendix C1) with their common abbreviations, and a few
# British ones; matched case-sensitively as a capitalised word.
_SUFFIXES = [
    "Alley",
    "Aly",
    "Annex",
    "Anx",
    "Arcade",
    "Arc",
    "Avenue",
    "Ave",
    "Av",
    "Bayou",
    "Beach",
    "Bend",
    "Bluff",
    "Bluffs",
    "Bottom",
    "Boulevard",
    "Blvd",
    "Branch",
    "Bridge",
    "Brook",
    "Brooks",
    "Burg",
    "Burgs",
    "Bypass",
    "Camp",
    "Canyon",
    "Cape",
    "Causeway",
    "Center",
    "Centers",
    "Circle",
    "Cir",
    "Circles",
    "Cliff",
    "Cliffs",
    "Club",
    "Common",
    "Commons",
    "Corner",
    "Corners",
    "Course",
    "Court",
    "Ct",
    "Courts",
    "Cove",
    "Coves",
    "Creek",
    "Crescent",
    "Cres",
    "Crest",
    "Crossing",
    "Crossroad",
    "Curve",
    "Dale",
    "Dam",
    "Divide",
    "Drive",
    "Dr",
    "Drives",
    "Estate",
    "Estates",
    "Expressway",
    "Expy",
    "Extension",
    "Extensions",
    "Fall",
    "Falls",
    "Ferry",
    "Field",
    "Fields",
    "Flat",
    "Flats",
    "Ford",
    "Fords",
    "Forest",
    "Forge",
    "Forges",
    "Fork",
    "Forks",
    "Fort",
    "Freeway",
    "Fwy",
    "Garden",
    "Gardens",
    "Gateway",
    "Glen",
    "Glens",
    "Green",
    "Greens",
    "Grove",
    "Groves",
    "Harbor",
    "Harbors",
    "Haven",
    "Heights",
    "Hts",
    "Highway",
    "Hwy",
    "Hill",
    "Hills",
    "Hollow",
    "Inlet",
    "Island",
    "Islands",
    "Isle",
    "Junction",
    "Junctions",
    "Key",
    "Keys",
    "Knoll",
    "Knolls",
    "Lake",
    "Lakes",
    "Land",
    "Landing",
    "Lane",
    "Ln",
    "Light",
    "Lights",
    "Loaf",
    "Lock",
    "Locks",
    "Lodge",
    "Loop",
    "Mall",
    "Manor",
    "Manors",
    "Meadow",
    "Meadows",
    "Mews",
    "Mill",
    "Mills",
    "Mission",
    "Motorway",
    "Mount",
    "Mountain",
    "Mountains",
    "Neck",
    "Orchard",
    "Oval",
    "Overpass",
    "Park",
    "Parks",
    "Parkway",
    "Pkwy",
    "Parkways",
    "Pass",
    "Passage",
    "Path",
    "Pike",
    "Pine",
    "Pines",
    "Place",
    "Pl",
    "Plain",
    "Plains",
    "Plaza",
    "Plz",
    "Point",
    "Points",
    "Port",
    "Ports",
    "Prairie",
    "Radial",
    "Ramp",
    "Ranch",
    "Rapid",
    "Rapids",
    "Rest",
    "Ridge",
    "Ridges",
    "River",
    "Road",
    "Rd",
    "Roads",
    "Route",
    "Row",
    "Rue",
    "Run",
    "Shoal",
    "Shoals",
    "Shore",
    "Shores",
    "Skyway",
    "Spring",
    "Springs",
    "Spur",
    "Spurs",
    "Square",
    "Sq",
    "Squares",
    "Station",
    "Sta",
    "Stravenue",
    "Stream",
    "Street",
    "St",
    "Streets",
    "Summit",
    "Terrace",
    "Ter",
    "Throughway",
    "Trace",
    "Track",
    "Trafficway",
    "Trail",
    "Trl",
    "Trailer",
    "Tunnel",
    "Turnpike",
    "Underpass",
    "Union",
    "Unions",
    "Valley",
    "Valleys",
    "Via",
    "Viaduct",
    "View",
    "Views",
    "Village",
    "Villages",
    "Ville",
    "Vista",
    "Walk",
    "Walks",
    "Wall",
    "Way",
    "Ways",
    "Well",
    "Wells",
    "Close",
    "Gate",
    "Hill",
    "Rise",
    "Wharf",
    "Yard",
]
_SUFFIX = "(?:" + "|".join(sorted(set(_SUFFIXES), key=len, reverse=True)) + r")\.?"
_WORD = r"[A-Z][A-Za-z'\-]+"
_UNIT = (
    r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Floor|Fl\.?|Room|Rm\.?|#)\s*[A-Za-z0-9\-]{1,6})"
)
_US_STATE = r"[A-Z]{2}"
_CITY = r"[A-Z][A-Za-z'\-]+(?:\s[A-Z][A-Za-z'\-]+){0,3}"
_TAIL = rf"(?:,?\s+{_CITY},?\s+{_US_STATE}\s+\d{{5}}(?:-\d{{4}})?)"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}"
_UK_TAIL = rf"(?:,?\s+{_CITY},?\s+{_UK_POSTCODE})"
_DE_TAIL = r"(?:,?\s+\d{5}\s+[A-ZÄÖÜ][\wäöüß\-]+(?:\s[A-ZÄÖÜ][\wäöüß\-]+)?)"
_ADDRESS_PATTERNS = [
    # 123 Main Street [Suite 4][, Springfield, IL 62704] / [, London W1A 1AA]
    Pattern(
        "street_number_first",
        rf"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:{_WORD}\s+){{0,3}}{_SUFFIX}(?![A-Za-z])(?:\s+(?:[NS][EW]|[NSEW])\b)?{_UNIT}?(?:{_TAIL}|{_UK_TAIL})?",
        0.6,
    ),
    # Hauptstraße 5[, 10115 Berlin] / Lindenweg 12a
    Pattern(
        "street_name_first",
        rf"\b[A-ZÄÖÜ][\wäöüß\-]*(?:[Ss]tra(?:ß|ss)e|[Ss]tr\.|[Ww]eg|[Gg]asse|[Pp]latz|[Aa]llee|[Rr]ing|[Dd]amm|[Uu]fer)\s+\d{{1,4}}[a-z]?(?:-\d{{1,4}})?\b{_DE_TAIL}?",
        0.6,
    ),
    # PO Box 1234 / P.O. Box 12
    Pattern("po_box", r"\bP\.?\s?O\.?\s+Box\s+\d{1,6}\b", 0.6),
    # military: USNS Smith, FPO AE 12345 / PSC 1234, Box 5678, APO AA 12345
    Pattern(
        "military",
        r"\b(?:(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+|PSC\s+\d{4},\s+Box\s+\d{4}|Unit\s+\d{4}\s+Box\s+\d{4}),?\s+[AF]PO\s+A[AEP]\s+\d{5}\b",
        0.7,
    ),
]


class StreetAddressRecognizer(PatternRecognizer):
    """Postal addresses: number-first (US, UK), name-first (German), PO boxes, APO/FPO."""

    def __init__(self, context: list[str] | None = None) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            patterns=_ADDRESS_PATTERNS,
            context=context or ["address", "lives", "live", "located", "ship", "mail", "street"],
            name="StreetAddressRecognizer",
            global_regex_flags=_FLAGS,
        )


# A phone candidate: an optional +/00 prefix, digits with the usual separators, an extension.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+])(?:\+|00)?\(?\d[\d().\-\s/]{6,20}\d(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?![\w])"
)
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d{1,6}$")


class IntlPhoneRecognizer(EntityRecognizer):
    """Phone numbers, US and international, checked with libphonenumber.

    ``+44 20 7946 0958`` or ``0044 ...``: possible for its country code; otherwise possible as a
    US/Canadian number (``(212) 555-0187``, ``212.555.0187x12``, ``001-212-555-0187``). Scored 0.6
    (Presidio's own scores 0.4 without context words), 0.75 with the ``+`` form.
    """

    def __init__(self, context: list[str] | None = None, default_region: str = "US") -> None:
        super().__init__(
            supported_entities=["PHONE_NUMBER"],
            name="IntlPhoneRecognizer",
            context=context
            or ["phone", "call", "tel", "telephone", "mobile", "cell", "fax", "reach", "text"],
        )
        self.default_region = default_region

    def load(self) -> None:
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for m in _PHONE_CANDIDATE.finditer(text):
            raw = m.group(0).rstrip(" -./")
            start, end = m.start(), m.start() + len(raw)
            number = _EXTENSION.sub("", raw)
            digits = sum(c.isdigit() for c in number)
            if digits < 7 or digits > 15:
                continue
            score = self._score(number, digits)
            if score:
                results.append(
                    RecognizerResult(
                        "PHONE_NUMBER",
                        start,
                        end,
                        score,
                        analysis_explanation=AnalysisExplanation(
                            recognizer="IntlPhoneRecognizer", original_score=score
                        ),
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: "IntlPhoneRecognizer",
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
        return results

    def _score(self, number: str, digits: int) -> float:
        compact = number.strip()
        if compact.startswith("001"):  # the US international prefix dialled from abroad
            compact = "+1" + compact[3:]
        elif compact.startswith("00"):
            compact = "+" + compact[2:]
        try:
            if compact.startswith("+"):
                parsed = phonenumbers.parse(compact, None)
                return 0.75 if phonenumbers.is_possible_number(parsed) else 0.0
            if digits < 10:
                return 0.0
            parsed = phonenumbers.parse(compact, self.default_region)
        except phonenumbers.NumberParseException:
            return 0.0
        if not phonenumbers.is_possible_number(parsed):
            return 0.0
        # Ten bare digits are as likely an order number: separators make it a phone number.
        return 0.6 if any(c in number for c in "()-. ") else 0.3


_KEY_PATTERNS = [
    Pattern("openai", r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}\b", 0.95),
    Pattern("anthropic", r"\bsk-ant-[A-Za-z0-9_\-]{20,}\b", 0.95),
    Pattern("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b", 0.95),
    Pattern("gitlab", r"\bglpat-[A-Za-z0-9_\-]{20,}\b", 0.95),
    Pattern("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.95),
    Pattern("slack", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}\b", 0.95),
    Pattern("google", r"\bAIza[0-9A-Za-z_\-]{35}\b", 0.95),
    Pattern("stripe", r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0.95),
    Pattern("langfuse", r"\b(?:sk|pk)-lf-[A-Za-z0-9\-]{16,}\b", 0.95),
    Pattern("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\b", 0.95),
    Pattern(
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        1.0,
    ),
    # Bearer <token> / api_key=<value> / "password": "<value>"
    Pattern(
        "assigned_secret",
        r"(?i)(?<=bearer\s)[A-Za-z0-9._~+/\-]{16,}=*|(?<=(?:api[_-]?key|token|secret|password|passwd)[\"']?\s?[:=]\s?[\"']?)[^\s\"',;]{8,}",
        0.8,
    ),
    # A long random-looking token: letters and digits mixed, 32+ characters
    Pattern(
        "generic_token",
        r"\b(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{32,}\b",
        0.4,
    ),
]


class ApiKeyRecognizer(PatternRecognizer):
    """API keys, access tokens and private keys of the common providers, and assigned secrets."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="API_KEY",
            patterns=_KEY_PATTERNS,
            context=["key", "token", "secret", "api", "password", "credential", "bearer"],
            name="ApiKeyRecognizer",
            global_regex_flags=_FLAGS,
        )


_TITLE_NAME = r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+[A-Z][a-z]+(?:[\s\-][A-Z][a-z]+){0,2}\b"


class PersonTitleRecognizer(PatternRecognizer):
    """A title and the capitalised words after it: ``Dr. Anna Müller``, ``Mr Smith``."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON",
            patterns=[Pattern("title_name", _TITLE_NAME, 0.85)],
            name="PersonTitleRecognizer",
            global_regex_flags=_FLAGS,
        )


class MastercardSeries2Recognizer(PatternRecognizer):
    """Mastercard's 2221-2720 range (Presidio's card pattern knows only 51-55), Luhn-checked."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            patterns=[
                Pattern(
                    "mastercard_2_series",
                    r"\b2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
                    0.5,
                )
            ],
            context=["card", "credit", "visa", "mastercard", "paid"],
            name="MastercardSeries2Recognizer",
            global_regex_flags=_FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = [int(c) for c in pattern_text if c.isdigit()]
        total = 0
        for i, d in enumerate(reversed(digits)):
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        return total % 10 == 0


def custom_recognizers(patterns: list[PiiPattern], context: dict[str, list[str]]) -> list[Any]:
    """This project's recognizers plus ``pii.patterns``, with ``pii.context_words`` applied."""
    from rag.guards.pii.multilocale import multilocale_recognizers

    out: list[Any] = [
        StreetAddressRecognizer(context.get("STREET_ADDRESS")),
        ApiKeyRecognizer(),
        PersonTitleRecognizer(),
        MastercardSeries2Recognizer(),
        *multilocale_recognizers(),
    ]
    for i, p in enumerate(patterns):
        out.append(
            PatternRecognizer(
                supported_entity=p.entity,
                patterns=[Pattern(f"pii.patterns[{i}]", p.regex, p.score)],
                context=p.context or context.get(p.entity) or [],
                name=f"ConfiguredPattern{i}",
            )
        )
    return out
