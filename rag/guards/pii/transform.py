"""``pii.ingest: redact``: stored chunks hold ``<PERSON>``, ``<EMAIL_ADDRESS>`` instead of the
values, and the per-chunk detection that spares queries from analysing passages.

:class:`PiiRedactTransform` is a :class:`~rag.indexing.transforms.DocumentTransform`: its identity (the
policy and the detector fingerprint) is locked in the collection's metadata like the embedding
model, so changing the policy makes the index refuse to open until ``rag reindex`` rebuilds it.
Section offsets are remapped onto the redacted text.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rag.core.documents import ParsedDocument, Section
from rag.core.pii_settings import PiiSettings
from rag.guards.pii.engine import Detector, detector_for

if TYPE_CHECKING:
    from rag.contracts import DocumentTransform
    from rag.core.config import Settings

__all__ = ["PiiRedactTransform", "configured_transforms", "detects_at_ingest"]

VERSION = 1


class PiiRedactTransform:
    name = "pii-redact"

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        self._detector: Detector | None = None

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = detector_for(self.settings)
        return self._detector

    def identity(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "policy": "redact",
            "detector": self.settings.detector_fingerprint(),
            "entities": sorted(self.settings.entities),
        }

    def warm_up(self) -> None:
        self.detector.warm_up()

    def run(self, document: ParsedDocument, source: str) -> ParsedDocument:
        text = document.text
        spans = self.detector.detect(text)
        if not spans:
            return document
        out: list[str] = []
        # (old offset, shift after it): positions after a replaced span move by the difference
        marks: list[int] = []
        shifts: list[int] = []
        pos, shift = 0, 0
        for s in spans:
            out.append(text[pos : s.start])
            label = f"<{s.type}>"
            out.append(label)
            shift += len(label) - (s.end - s.start)
            marks.append(s.end)
            shifts.append(shift)
            pos = s.end
        out.append(text[pos:])
        new_text = "".join(out)
        starts = [s.start for s in spans]

        def moved(offset: int) -> int:
            i = bisect_right(marks, offset)  # spans ended at or before offset
            base = offset + (shifts[i - 1] if i else 0)
            # inside a replaced span: its start
            j = bisect_right(starts, offset) - 1
            if j >= i and j < len(spans) and spans[j].start < offset < spans[j].end:
                return spans[j].start + (shifts[j - 1] if j else 0)
            return min(base, len(new_text))

        sections = [
            replace(sec, start=moved(sec.start), end=moved(sec.end)) for sec in document.sections
        ]
        return ParsedDocument(
            new_text,
            document.title,
            [Section(s.start, s.end, s.heading_path, s.page) for s in sections],
            dict(document.metadata),
        )


def configured_transforms(settings: Settings) -> list[DocumentTransform]:
    """The transforms ``settings.pii`` asks for at ingest (none with ``pii.ingest: off``)."""
    pii = settings.pii
    if pii.enabled and pii.ingest == "redact":
        return [PiiRedactTransform(pii)]
    return []


def detects_at_ingest(settings: Settings) -> bool:
    """Whether chunks get their PII recorded at ingest (``pii`` in the payload): when a backend
    will be sent passages pseudonymised (``openai`` in the chain, or ``scrub_in_process``)."""
    pii = settings.pii
    if not pii.enabled or pii.ingest == "redact":
        return False  # redacted chunks hold no values left to find
    return "openai" in settings.generation.chain or pii.scrub_in_process
