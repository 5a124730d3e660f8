"""Plain data that flows between stages: parsed documents and their chunks."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Chunk", "ParsedDocument", "Section", "chunk_id", "document_id", "text_hash"]

# Fixed namespace so ids are stable across machines and versions.
_ID_NAMESPACE = uuid.UUID("6f1c2a34-5b7e-4d0a-9c1e-2f3b4a5d6e7f")


def document_id(tenant: str, source: str, *, upload: bool = False) -> str:
    """Document id from its tenant, its path and which kind of root holds it.

    ``source`` is the path relative to a watched folder, or ``<tenant>/<path>`` for an upload
    (under ``<data_dir>/tenants/``). The two namespaces meet (a watched folder with a folder
    ``default/`` and the default tenant's own uploads): ``upload`` keeps their ids apart.
    Watched documents keep the id they always had.
    """
    kind = "upload:" if upload else ""
    return str(uuid.uuid5(_ID_NAMESPACE, f"doc:{kind}{tenant}:{source}"))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(doc_id: str, chunk_text_hash: str) -> str:
    """Deterministic chunk id from (document id, chunk text hash): re-ingest upserts in place."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"chunk:{doc_id}:{chunk_text_hash}"))


@dataclass(frozen=True)
class Section:
    """A span of the parsed text under one heading path (or one PDF page)."""

    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass
class ParsedDocument:
    text: str
    title: str
    sections: list[Section]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    id: str
    doc_id: str
    source: str
    text: str
    text_hash: str
    title: str
    section: list[str]
    page: int | None
    start: int
    end: int
    index: int
    tenant: str
    # PII found at ingest (rag.guards.pii.outbound.chunk_pii), stored so queries skip analysing it
    pii: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        extra = {"pii": self.pii} if self.pii is not None else {}
        return {
            **extra,
            "doc_id": self.doc_id,
            "source": self.source,
            "text": self.text,
            "text_hash": self.text_hash,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "chunk_index": self.index,
            "tenant": self.tenant,
        }
