"""Scrubbing what traces and feedback export: the PII layer (``rag.guards.pii``) where it is there,
a regular-expression floor always.

Two passes, so the request path stays cheap (Presidio with spaCy costs ~45 ms per KB):

- :meth:`TraceScrubber.quick` on the request thread: e-mail addresses, phone numbers and
  card-like digit runs, by regular expression (microseconds);
- :meth:`TraceScrubber.full` on the exporter's thread (the SDK's ``mask_otel_spans`` hook,
  which sees every attribute before it leaves the process): ``rag.guards.pii.Scrubber`` when it
  imports and is enabled, then the regular expressions again. If it raises, the SDK drops
  the batch: masking fails closed.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["TraceScrubber", "regex_scrub"]

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, optionally grouped by spaces or dashes (cards, IBAN-like account numbers)
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# +44 20 7946 0958, (555) 123-4567, 555-123-4567, 0151 496 0000
_PHONE = re.compile(
    r"(?<![\w.+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?![\w.])"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,4})?\b")
# Every pattern but the e-mail one needs a digit, and that one an "@": checked first, since
# most strings in a trace have neither and the patterns cost ~2 ms per trace scanning them.
_DIGIT = re.compile(r"\d")


def regex_scrub(text: str) -> str:
    """E-mail addresses, card and account numbers, SSNs and phone numbers replaced by ``<TYPE>``."""
    if not text:
        return text
    if "@" in text:
        text = _EMAIL.sub("<EMAIL_ADDRESS>", text)
    if not _DIGIT.search(text):
        return text
    text = _IBAN.sub("<IBAN_CODE>", text)
    text = _CARD.sub("<CREDIT_CARD>", text)
    text = _SSN.sub("<US_SSN>", text)
    return _PHONE.sub(_phone, text)


def _phone(m: re.Match[str]) -> str:
    found = m.group(0)
    digits = sum(c.isdigit() for c in found)
    return "<PHONE_NUMBER>" if 7 <= digits <= 15 and not _DATE.match(found) else found


class TraceScrubber:
    """``quick`` (request thread) and ``full`` (export thread) scrubbing of free text."""

    def __init__(self, settings: Any = None):
        self._settings = settings
        self._full: Callable[[str], str] | None = None
        self._many: Callable[[list[str]], list[str]] | None = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> Any:
        """The settings it was made with (their ``pii`` section): a copy elsewhere scrubs alike."""
        return self._settings

    def quick(self, text: str) -> str:
        return regex_scrub(text)

    def _load(self) -> Callable[[str], str]:
        with self._lock:
            if self._full is None:
                scrubber = _pii_scrubber(self._settings)
                if scrubber is None:
                    self._full = regex_scrub
                    self._many = lambda texts: [regex_scrub(t) for t in texts]
                else:
                    self._full, self._many = scrubber.scrub, scrubber.scrub_many
            return self._full

    def known(self, text: str, pairs: list[tuple[str, str]]) -> str:
        """``text`` with known PII values (and their parts: a first name, a street line)
        replaced by ``<TYPE>``: values found in the retrieved chunks at ingest."""
        if not text or not pairs:
            return text
        try:
            from rag.guards.pii import scrub_values
        except ImportError:
            return text
        return scrub_values(text, pairs)

    def full(self, text: str) -> str:
        if not text or not text.strip():
            return text
        return regex_scrub(self._load()(text))

    def full_many(self, texts: list[str]) -> list[str]:
        """:meth:`full` of each text, the PII layer's model run over them in one batch."""
        self._load()
        assert self._many is not None
        return [regex_scrub(t) for t in self._many(texts)]

    def value(self, value: Any, scrub: Callable[[str], str] | None = None) -> Any:
        """Strings inside ``value`` (dicts, lists) scrubbed, with ``quick`` unless told."""
        scrub = scrub or self.quick
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, dict):
            return {k: self.value(v, scrub) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, scrub) for v in value]
        return value


def _pii_scrubber(settings: Any) -> Any:
    """``rag.guards.pii``'s scrubber for these settings (``scrub``, ``scrub_many``), or None
    when the package is not there or the policy is off."""
    try:
        from rag.guards.pii import scrubber_for
    except ImportError:
        return None
    try:
        scrubber = scrubber_for(getattr(settings, "pii", None))
        return scrubber if scrubber.enabled else None
    except Exception as exc:  # noqa: BLE001 - a broken PII engine leaves the regex floor
        log.warning("PII scrubber unavailable for traces (%s): regular expressions only", exc)
        return None
