"""The versioned, embedding-locked index: alias → physical collection, plus its manifest.

``Index.open()`` resolves the alias (creating ``<alias>_v1`` on first use), refuses to
work with a collection built by another embedding model, and checks the store against the
manifest (``verify_store``): files whose chunks the store lost are marked for the next sync
to redo, so a deleted or emptied store is rebuilt instead of silently answering nothing.
``rag.indexing.reindex.reindex`` builds the next version beside the live one (``next_collection_name``)
and switches the alias atomically (blue/green).
"""

from __future__ import annotations

import copy
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rag.core.access import Labeller
from rag.core.config import Settings
from rag.core.datadir import private_data_dir
from rag.core.diskspace import DiskSpace
from rag.core.errors import EmbeddingMismatchError
from rag.core.tokens import load_tokenizer
from rag.indexing.chunking import Chunker
from rag.indexing.embedding import Embedder, EmbeddingIdentity, embedder_for
from rag.indexing.manifest import Manifest
from rag.indexing.sentence_vectors import SentenceVectors
from rag.indexing.sparse import Bm25Encoder
from rag.indexing.transforms import DocumentTransform, transforms_identity
from rag.store import StoreError, VectorStore, open_store

__all__ = ["SCHEMA_VERSION", "EmbeddingMismatchError", "Index"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Documents whose chunks ``verify_store`` looks up on every open, beyond the total count.
STORE_SAMPLE = 16


class Index:
    """Owns the store, embedder, chunker and manifest for one data dir. Cheap to construct."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        transforms: Sequence[DocumentTransform] = (),
    ):
        self.settings = settings
        # Between parsing and chunking; their identity is locked in the collection like the model.
        self.transforms: list[DocumentTransform] = list(transforms)
        from rag.guards.pii.logs import install_log_scrubbing
        from rag.guards.pii.transform import configured_transforms  # pii.ingest: redact

        self.transforms += configured_transforms(settings)
        install_log_scrubbing(settings)  # this project's log records carry no PII
        # 0700 (and the umask tightened) before the store or the manifest writes anything.
        self.data_dir = private_data_dir(settings.resolved_data_dir())
        # Free space asked before each write (storage.min_free_mb): uploads, ingestion, the store.
        self.disk = DiskSpace(self.data_dir, settings.storage.min_free_mb)
        self.store = store or open_store(settings)
        self.embedder = embedder or embedder_for(settings)
        self.sparse = Bm25Encoder()
        # What the answer path compares with the question, embedded at ingest (per collection).
        self.sentence_vectors = SentenceVectors(
            self.data_dir, lambda: self.embedder.identity().vectors_fingerprint
        )
        self.alias = settings.store.collection
        self._manifest: Manifest | None = None
        self._chunker: Chunker | None = None
        self._labeller: Labeller | None = None
        self.collection: str | None = None
        # One writer at a time per process (daemon sync, reindex, API uploads).
        self.write_lock = threading.RLock()

    # -- parts -----------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self.data_dir / "manifest.sqlite")
        return self._manifest

    @property
    def labeller(self) -> Labeller:
        """Who may read a file (``access`` settings and ``.access.yaml`` sidecars): the one
        labeller ingestion writes chunks with and the API checks files against."""
        if self._labeller is None:
            self._labeller = Labeller(self.settings.access)
        return self._labeller

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            c = self.settings.chunking
            self._chunker = Chunker(
                c.chunk_tokens, c.overlap_tokens, load_tokenizer(self.embedder.model_dir)
            )
        return self._chunker

    def warm_up(self) -> None:
        """Load the model and the splitter's lazy parts now, not inside the first sync."""
        from rag.core.documents import ParsedDocument, Section

        self.embedder.warm_up()
        for transform in self.transforms:
            transform.warm_up()
        sample = "Warm-up text. It has two sentences."
        self.chunker.run(
            ParsedDocument(sample, "warm-up", [Section(0, len(sample))]), "warm-up", "warm-up"
        )
        self.sparse.embed_document(sample)

    def collection_metadata(self, identity: EmbeddingIdentity) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "embedding": identity.as_dict(),
            "chunking": self.settings.chunking.model_dump(),
            "transforms": transforms_identity(self.transforms),
            # Not locked like the model: a collection without them gets them on the next sync.
            "sentence_vectors": self.sentence_vectors.identity(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def stored_vectors(self, texts: Sequence[str]) -> list[Any]:
        """The vectors ingestion stored for ``texts`` in the live collection (None where it has
        none): what :class:`rag.verification.citations.SupportScorer` looks up before embedding."""
        return self.sentence_vectors.lookup(self.collection, texts)

    # -- open / lock -----------------------------------------------------------------
    def open(self, create: bool = True) -> str:
        """Resolve the live collection and check its embedding lock. Returns its name."""
        identity = self.embedder.identity()
        live = self.store.get_alias(self.alias)
        if live is None:
            if not create:
                raise StoreError(f"no index yet at {self.data_dir}: run `rag ingest PATH` first")
            live = self.next_collection_name()
            self.store.create_collection(
                live, identity.dimension, self.collection_metadata(identity)
            )
            self.store.switch_alias(self.alias, live)
        self.check_lock(live, identity)
        self.collection = live
        self.verify_store(live)
        return live

    def verify_store(self, collection: str) -> int:
        """Mark for redo the files the manifest records as indexed whose chunks ``collection``
        lacks (the store was deleted, restored from an old backup, or lost writes). Returns
        how many; the next sync re-ingests them (re-embedding what the store no longer has).

        Cheap when all is well: the store's total count against the manifest's, and the chunks
        of a sample of documents. Only a mismatch costs a per-document look.
        """
        with self.write_lock:
            rows = [r for r in self.manifest.records(collection, status="ok") if r.chunks > 0]
            if not rows:
                return 0
            # Two rows may share a document id (one relative path in two watched folders).
            per_doc: dict[str, int] = {}
            for r in rows:
                per_doc[r.doc_id] = min(per_doc.get(r.doc_id, r.chunks), r.chunks)
            have = self.store.count(collection)
            sample = random.sample(sorted(per_doc), min(STORE_SAMPLE, len(per_doc)))
            if have >= sum(per_doc.values()) and all(
                self.store.count(collection, {"doc_id": d}) >= per_doc[d] for d in sample
            ):
                return 0
            counts = Counter(p.payload.get("doc_id") for p in self.store.scroll(collection))
            lost = [r for r in rows if counts.get(r.doc_id, 0) < per_doc[r.doc_id]]
            marked = self.manifest.mark_redo(
                lost, "the vector store lost this file's chunks: the next sync re-ingests it"
            )
        if marked:
            log.warning(
                "the vector store (collection %s) holds %d chunk(s) where the manifest records "
                "%d: %d file(s) will be re-ingested by the next sync",
                collection,
                have,
                sum(per_doc.values()),
                marked,
            )
        return marked

    def check_lock(self, collection: str, identity: EmbeddingIdentity) -> None:
        meta = self.store.collection_metadata(collection)
        stored = meta.get("embedding") or {}
        want = identity.as_dict()
        mismatched = [
            k
            for k in ("model", "dimension", "fingerprint", "normalize")
            if stored.get(k) != want[k]
        ]
        stored_transforms = meta.get("transforms") or []
        wanted_transforms = transforms_identity(self.transforms)
        if not mismatched and stored_transforms != wanted_transforms:

            def names(ts: list[dict[str, Any]]) -> str:
                return ", ".join(str(t.get("name")) for t in ts) or "none"

            raise EmbeddingMismatchError(
                f"index '{self.alias}' (collection {collection}) was built with document "
                f"transforms [{names(stored_transforms)}] ({stored_transforms}), but the "
                f"configured ones are [{names(wanted_transforms)}] ({wanted_transforms}). Chunks "
                "made one way would be mixed with chunks made the other. Run `rag reindex` to "
                "rebuild the index with the configured transforms, or configure the ones it was "
                "built with."
            )
        if mismatched:
            have = EmbeddingIdentity(
                **{k: stored.get(k) for k in ("model", "dimension", "fingerprint", "normalize")},  # type: ignore[arg-type]
                document_precision=stored.get("document_precision", "fp32"),
            )
            raise EmbeddingMismatchError(
                f"index '{self.alias}' (collection {collection}) was built with {have.describe()}, "
                f"but the configured embedding model is {identity.describe()} "
                f"(differs in: {', '.join(mismatched)}). Mixing them would return wrong neighbours. "
                "Run `rag reindex` to rebuild the index with the configured model, or set "
                "embedding.model_path back to the model the index was built with."
            )
        # Recorded since int8 document encoding existed; an index without it was built at fp32.
        built_at = stored.get("document_precision", "fp32")
        if built_at != identity.document_precision:
            raise EmbeddingMismatchError(
                f"index '{self.alias}' (collection {collection}) holds documents encoded at "
                f"{built_at}, but embedding.document_precision is {identity.document_precision}: "
                "new chunks and the answer path's question vectors would be encoded otherwise "
                "than the stored ones. Run `rag reindex` to re-encode the index at "
                f"{identity.document_precision}, or set embedding.document_precision back to "
                f"{built_at} (embedding.query_precision may differ from it)."
            )

    def view(self, collection: str) -> Index:
        """This index reading ``collection`` instead of the live one: a reindex's candidate and
        the live collection evaluated side by side. Shares the store, embedder and manifest
        with this index, so a view is never closed (close the index)."""
        other = copy.copy(self)
        other.collection = collection
        return other

    def next_collection_name(self) -> str:
        """The next free ``<alias>_v<N>``: where a first open or a reindex creates the collection."""
        pattern = re.compile(rf"^{re.escape(self.alias)}_v(\d+)$")
        versions = [
            int(m.group(1)) for c in self.store.list_collections() if (m := pattern.match(c))
        ]
        return f"{self.alias}_v{max(versions, default=0) + 1}"

    def close(self) -> None:
        """Close the store, then the manifest. A store that fails to close (its files were
        deleted under it) is logged, not raised: shutting down still ends cleanly."""
        self.sentence_vectors.close()
        try:
            self.store.close()
        except Exception as exc:  # noqa: BLE001 - reported, and nothing is left to do with it
            log.warning("the vector store did not close cleanly: %s", exc)
        finally:
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None
