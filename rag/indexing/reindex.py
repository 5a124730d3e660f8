"""Blue/green reindex: rebuild the watched folders into the next versioned collection, then
switch the alias to it atomically.

The live collection keeps serving while the new one is built (by an ``Ingestor`` pinned to
it); a failure drops the half-built collection and leaves the live one untouched. The old
collection is deleted after the switch unless ``store.keep_old_collections``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.store import StoreError

__all__ = ["reindex"]


def reindex(
    index: Index,
    roots: list[Path] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Build a new collection from ``roots`` (default: every folder ingested so far), then
    switch the alias to it. Returns what changed: previous/new collection, counts, seconds."""
    with index.write_lock:
        store, manifest = index.store, index.manifest
        old = store.get_alias(index.alias)
        folders = roots or [Path(r) for r in manifest.roots()]
        if not folders:
            raise StoreError(
                "nothing to reindex: no folder has been ingested yet (run `rag ingest PATH`)"
            )
        missing = [str(f) for f in folders if not Path(f).is_dir()]
        if missing:
            raise StoreError(f"cannot reindex: watched folder(s) missing: {', '.join(missing)}")
        identity = index.embedder.identity()
        new = index.next_collection_name()
        store.create_collection(new, identity.dimension, index.collection_metadata(identity))
        started = time.perf_counter()
        try:
            ingestor = Ingestor(index, collection=new)
            totals: dict[str, Any] = {}
            for folder in folders:
                report = ingestor.sync_folder(Path(folder), progress=progress)
                for k, v in report.as_dict().items():
                    totals[k] = totals.get(k, 0) + v if isinstance(v, (int, float)) else v
        except BaseException:
            # The live index is untouched; drop the half-built one.
            store.delete_collection(new)
            manifest.drop_collection(new)
            index.sentence_vectors.drop(new)
            raise
        store.flush(new)
        store.switch_alias(index.alias, new)
        index.collection = new
        keep = index.settings.store.keep_old_collections
        if old and old != new and not keep:
            store.delete_collection(old)
            manifest.drop_collection(old)
            index.sentence_vectors.drop(old)
        return {
            "previous": old,
            "collection": new,
            "kept_previous": bool(old and keep),
            "seconds": round(time.perf_counter() - started, 3),
            **{k: v for k, v in totals.items() if k != "seconds"},
        }
