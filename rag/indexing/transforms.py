"""The ingestion seam: document transforms between parsing and chunking.

A transform takes a parsed document and returns the document to chunk (redacted, normalised,
enriched metadata, …). Its ``identity()`` is recorded in the collection's metadata next to the
embedding model: an index built with other transforms (or other settings of the same ones) is
refused on open with :class:`~rag.core.errors.EmbeddingMismatchError`, and ``rag reindex`` rebuilds
it with the configured ones. Contract, as for query stages: cheap construction, ``warm_up()``
for heavy loading, one typed ``run``. Text offsets (``Section.start``/``end``) must stay valid
for the text returned::

    index = Index(settings, transforms=[MyRedactor()])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.contracts import DocumentTransform
from rag.core.documents import ParsedDocument

__all__ = ["DocumentTransform", "apply_transforms", "transforms_identity"]


def transforms_identity(transforms: Sequence[DocumentTransform]) -> list[dict[str, Any]]:
    return [{"name": t.name, **t.identity()} for t in transforms]


def apply_transforms(
    transforms: Sequence[DocumentTransform], document: ParsedDocument, source: str
) -> ParsedDocument:
    for t in transforms:
        document = t.run(document, source)
    return document
