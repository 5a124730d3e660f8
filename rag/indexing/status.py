"""Read-side views of an index: the ``rag status`` summary and the ``rag export`` stream.

Both read the vector store itself (chunk counts, exported chunks), and the manifest for
per-file decisions. They run in whichever process holds the store: the CLI directly, or
the running daemon when asked over its control API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rag.guards.injection import injection_status
from rag.indexing.index import Index

__all__ = ["collect_status", "export_chunks"]


def collect_status(index: Index) -> dict[str, Any]:
    collection = index.collection or index.open(create=False)
    identity = index.embedder.identity()
    records = index.manifest.records(collection)
    meta = index.store.collection_metadata(collection)
    chunks = index.store.count(collection)
    return {
        "documents": sum(1 for r in records if r.status == "ok"),
        "chunks": chunks,
        "failed": [
            {"path": r.source, "reason": r.reason or ""} for r in records if r.status == "failed"
        ],
        "skipped": [
            {"path": r.source, "reason": r.reason or ""} for r in records if r.status == "skipped"
        ],
        "embedding": {
            "model": identity.model,
            "dimension": identity.dimension,
            "fingerprint": identity.fingerprint,
            "normalize": identity.normalize,
            "dtype": index.embedder.dtype if index.embedder._model is not None else None,
            # What encoded this index's documents (its identity) and what encodes queries:
            # the setting, what warm-up resolved it to ("auto": int8 or fp32) and why.
            "document_precision": identity.document_precision,
            "query_precision": (shown := index.embedder.query_precision_shown())["setting"],
            "query_precision_resolved": shown["resolved"],
            "query_precision_reason": shown["reason"],
        },
        "collection": collection,
        "alias": index.alias,
        "backend": index.store.name,
        "created_at": meta.get("created_at"),
        "roots": index.manifest.roots(),
        "last_run": index.manifest.get_value("last_run"),
        "last_eval": index.manifest.get_value("last_eval"),
        # Chunks the prompt-injection detector flagged at ingest (kept out of answers by default).
        "injection": injection_status(index.store, collection),
        # The answer path's sentence vectors, stored at ingest (rag.indexing.sentence_vectors).
        "sentence_vectors": index.sentence_vectors.coverage(collection, chunks),
        "data_dir": str(index.data_dir),
    }


def export_chunks(index: Index) -> Iterator[dict[str, Any]]:
    """One dict per chunk, read from the vector store (not from the manifest)."""
    collection = index.collection or index.open(create=False)
    for point in index.store.scroll(collection):
        payload = dict(point.payload)
        source = payload.pop("source", None)
        text = payload.pop("text", None)
        yield {"id": point.id, "source": source, "text": text, **payload}
