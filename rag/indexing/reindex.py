"""Blue/green reindex: rebuild the watched folders into the next versioned collection, then
switch the alias to it atomically — when it proves itself.

The live collection keeps serving while the new one is built (by an ``Ingestor`` pinned to
it); a failure drops the half-built collection and leaves the live one untouched. With a
``gate`` (``evals.releases.index_gate``: the retrieval and answer evals on both collections),
the alias moves only when the gate finds no regression beyond ``evals.regression_threshold``;
otherwise the new collection is dropped, the live one keeps serving and the result says why
(``promoted: false``, ``regressions``, ``reason``). ``force`` switches anyway (the regressions
are still reported). The old collection is deleted after the switch unless
``store.keep_old_collections``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.store import StoreError

__all__ = ["ReleaseGate", "reindex"]

# (live collection's view, candidate's view) -> verdict: {"promote": bool, "regressions": [...],
# "reason": str | None, ...}. A gate that cannot judge (nothing to compare) promotes and says so.
ReleaseGate = Callable[[Index, Index], Mapping[str, Any]]


def _drop(index: Index, collection: str) -> None:
    index.store.delete_collection(collection)
    index.manifest.drop_collection(collection)
    index.sentence_vectors.drop(collection)


def reindex(
    index: Index,
    roots: list[Path] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    gate: ReleaseGate | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build a new collection from ``roots`` (default: every folder ingested so far), then
    switch the alias to it unless ``gate`` refuses it (and ``force`` is off). Returns what
    happened: ``promoted``, previous/new collection, ``regressions``, counts, seconds."""
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
        verdict: dict[str, Any] | None = None
        try:
            ingestor = Ingestor(index, collection=new)
            totals: dict[str, Any] = {}
            for folder in folders:
                report = ingestor.sync_folder(Path(folder), progress=progress)
                for k, v in report.as_dict().items():
                    totals[k] = totals.get(k, 0) + v if isinstance(v, (int, float)) else v
            store.flush(new)
            if gate is not None and old and old != new:
                verdict = dict(gate(index.view(old), index.view(new)))
        except BaseException:
            # The live index is untouched; drop the half-built one.
            _drop(index, new)
            raise
        counts = {k: v for k, v in totals.items() if k != "seconds"}
        regressions = list((verdict or {}).get("regressions") or [])
        refused = verdict is not None and not verdict.get("promote", True)
        if refused and not force:
            # The candidate is worse: the live collection keeps serving; the candidate goes.
            _drop(index, new)
            return {
                "promoted": False,
                "previous": old,
                "collection": old,
                "candidate": new,
                "regressions": regressions,
                "reason": verdict.get("reason") if verdict else None,
                "gate": verdict,
                "seconds": round(time.perf_counter() - started, 3),
                **counts,
            }
        store.switch_alias(index.alias, new)
        index.collection = new
        keep = index.settings.store.keep_old_collections
        if old and old != new and not keep:
            _drop(index, old)
        return {
            "promoted": True,
            "forced": bool(refused and force),
            "previous": old,
            "collection": new,
            "kept_previous": bool(old and keep),
            "regressions": regressions,
            "reason": verdict.get("reason") if verdict else None,
            "gate": verdict,
            "seconds": round(time.perf_counter() - started, 3),
            **counts,
        }
