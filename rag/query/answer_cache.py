"""The index-aware answer cache: a repeated question answered without retrieval or generation,
and never an answer the documents no longer back.

An entry is found two ways, always within one *scope*: the same normalised question (NFKC,
case-folded, spaces collapsed, trailing punctuation dropped), or a question whose embedding
(the index's own model) is at least ``cache.semantic_threshold`` cosine-close
(``benchmarks/answer_cache.py`` calibrates it on paraphrase and different-question pairs).
A semantic match must also keep the question's numbers, names and contrast words
(``compatible``: "SEV1" is not "SEV2", "before" is not "after", which embeddings barely tell
apart). The scope is a hash of everything else the answer depends on: the tenant, the filters, the
prompt the query would get (name, version and its text), the generator chain (backends,
models, generation and verification settings), the index (live collection, which a reindex
changes, its embedding identity and the precision queries are embedded at, retrieval and
rerank settings), the query's temperature and max_tokens, and the stage and output-filter
names. Any of them changing is a miss.

Each entry records the chunks its answer cited (ids and text hashes) and, for each cited
document, the ids of all its chunks (ids are document id + text hash, so any edit of the
document's text changes them). A hit is checked against the store before it is served: a
cited chunk changed or gone, or its document edited or deleted, deletes the entry and the
question is answered afresh. Exact, not a TTL; and cheap (one point lookup and one filtered
id scroll per cited document).

Permissions (rag/core/access.py): an entry also records the groups of the documents its
answer cites (of its whole context when it keeps unsupported sentences). The same question
asked by askers whose answers cite documents of other groups keeps an entry per such access
class; a hit is served only when the asker may read every one of those documents now,
checked in the store with the asker's read filter (a group revoked since counts), else it
is passed over and kept for those who may.

Only verified answers are stored: not abstentions (a document added later may answer them),
not degraded answers (a backend had failed), not ``generate: false`` context. A hit answers
with ``cached: true``, zero ``usage`` (nothing was spent) and ``timings_ms.cache``; a stream
gets the answer's text, citations and done events. Entries live in
``<data_dir>/answer-cache.sqlite`` (0600, WAL), at most ``cache.max_entries``, least recently
used dropped first; several processes on one data dir share it (each sees the others' entries).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.contracts import QueryState
from rag.core.access import DRAWN_ON, Reader, read_filter
from rag.core.config import CacheSettings, Settings
from rag.core.datadir import private_sqlite
from rag.core.errors import ConfigError
from rag.core.types import Answer, CitationsEvent, StreamEvent, TokenEvent, Usage
from rag.generate import GeneratorChain
from rag.query.guard import question_scan
from rag.store import StoredPoint, VectorStore

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = [
    "AnswerCache",
    "CacheLookup",
    "CacheStep",
    "cached_events",
    "compatible",
    "normalise_question",
]

log = logging.getLogger(__name__)

CACHE_FILE = "answer-cache.sqlite"
STORE_SUFFIX = "_answers"  # cache.backend store: the collection beside the index's
# Semantic candidates looked at per lookup: entries of other access classes (answers drawn
# from documents this asker may not read) are passed over, so a few more than one.
NEIGHBOURS = 8
# 2: entries record the groups of every document their answer drew on (permissions).
SCHEMA = 2
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s?!.。？！…]+$")


def normalise_question(question: str) -> str:
    text = unicodedata.normalize("NFKC", question).casefold()
    return _TRAILING.sub("", _SPACE.sub(" ", text).strip())


# Words that flip or pick what a question asks while barely moving its embedding ("before" vs
# "after" Norman architecture: cosine 0.986 with MiniLM; benchmarks/answer_cache.py).
_CONTRAST_CLASSES = {
    "start": "start begin begins began open opens opened opening",
    "end": "end ends ended finish finishes close closes closed closing",
    "before": "before prior earlier previous",
    "after": "after later next",
    "first": "first earliest",
    "last": "last latest final",
    "max": "max maximum most highest largest biggest top longest",
    "min": "min minimum least lowest smallest fewest shortest",
    "more": "more above over exceeding",
    "less": "less fewer below under",
    "not": "not no never without except",
    "new": "new newer newest young younger youngest",
    "old": "old older oldest",
    "north": "north northern",
    "south": "south southern",
    "east": "east eastern",
    "west": "west western",
    "left": "left",
    "right": "right",
}
_CONTRAST = {w: c for c, words in _CONTRAST_CLASSES.items() for w in words.split()}
_WORD = re.compile(r"[\w'’-]+")


def _distinctive(question: str) -> set[str]:
    """What a paraphrase must keep: numbers, names (capitalised words after the first, and
    acronyms) and contrast words (as their class)."""
    out: set[str] = set()
    words = _WORD.findall(unicodedata.normalize("NFKC", question))
    for i, word in enumerate(words):
        w = re.sub(r"['’]s$", "", word)
        low = w.casefold()
        if low in _CONTRAST:
            out.add(_CONTRAST[low])  # synonyms count as one ("begin" is "start")
        elif any(ch.isdigit() for ch in w) or (i > 0 and w[:1].isupper()):
            out.add(low)
    return out


def compatible(a: str, b: str) -> bool:
    """Whether two close questions may share an answer: the same numbers, names and contrast
    words. The semantic match needs this as well as the cosine."""
    return _distinctive(a) == _distinctive(b)


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class CacheLookup:
    """What ``lookup`` found out: the scope, the question's normalised form and vector."""

    scope: str
    normalised: str
    vector: np.ndarray | None = None
    answer: Answer | None = None
    how: str = ""  # "exact" | "semantic" on a hit
    drawn_on: list[list[str]] = field(default_factory=list)  # a hit's documents' groups


@dataclass
class _Entry:
    id: str
    answer: str  # the Answer's JSON
    # JSON: {"collection", "chunks": {id: text_hash}, "documents": {doc_id: [ids]},
    # "access": {doc_id: groups}} (access: every document of the context the answer came from)
    cited: str
    asked: str  # the question as asked (the semantic match compares it)
    # The access class: a digest of the groups in ``access``. Askers whose answers drew on
    # documents of other groups keep entries of their own for the same question.
    access: str = ""


class LocalEntries:
    """Entries in ``<data_dir>/answer-cache.sqlite`` (0600, WAL); the vectors also in memory,
    reloaded when another process changed the file (``PRAGMA data_version``)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        self._db = private_sqlite(path)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, scope TEXT, "
                "question TEXT, vector BLOB, answer TEXT, cited TEXT, created REAL, used REAL, "
                "asked TEXT)"
            )
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(entries)")}
            if "asked" not in columns:  # a file from before semantic matches kept the question
                self._db.execute("ALTER TABLE entries ADD COLUMN asked TEXT")
            if "access" not in columns:  # a file from before permissions
                self._db.execute("ALTER TABLE entries ADD COLUMN access TEXT")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS entries_question ON entries (scope, question)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries (used)")
        # For the semantic search: scope -> (entry ids, unit vectors matrix).
        self._vectors: dict[str, tuple[list[int], np.ndarray]] = {}
        self._version: int | None = None
        self._dropped: set[int] = set()

    def exact(self, scope: str, question: str) -> list[_Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, answer, cited, asked, access FROM entries WHERE scope = ? AND "
                "question = ? ORDER BY used DESC",
                (scope, question),
            ).fetchall()
        return [_Entry(str(i), a, c, q or "", x or "") for i, a, c, q, x in rows]

    def nearest(self, scope: str, unit: np.ndarray, threshold: float) -> list[_Entry]:
        self._refresh()
        with self._lock:
            ids, matrix = self._vectors.get(scope, ([], np.zeros((0, 0), np.float32)))
            if not ids:
                return []
            scores = matrix @ unit
            order = np.argsort(-scores)[:NEIGHBOURS]
            picked = [
                ids[i] for i in order if scores[i] >= threshold and ids[i] not in self._dropped
            ]
            out = []
            for entry_id in picked:
                row = self._db.execute(
                    "SELECT id, answer, cited, asked, access FROM entries WHERE id = ?",
                    (entry_id,),
                ).fetchone()
                if row is not None:
                    out.append(_Entry(str(row[0]), row[1], row[2], row[3] or "", row[4] or ""))
        return out

    def _refresh(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            if version == self._version:
                return
            rows = self._db.execute(
                "SELECT id, scope, vector FROM entries WHERE vector IS NOT NULL"
            ).fetchall()
            grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
            for entry_id, scope, blob in rows:
                grouped.setdefault(scope, []).append((entry_id, np.frombuffer(blob, np.float32)))
            self._vectors = {
                s: ([i for i, _ in items], np.vstack([v for _, v in items]))
                for s, items in grouped.items()
            }
            self._version = version
            self._dropped = set()

    def touch(self, entry_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE entries SET used = ? WHERE id = ?", (time.time(), entry_id))

    def put(
        self,
        scope: str,
        question: str,
        unit: np.ndarray | None,
        entry: _Entry,
        max_entries: int,
    ) -> None:
        blob = unit.astype(np.float32).tobytes() if unit is not None else None
        now = time.time()
        with self._lock, self._db:
            same = (scope, question, entry.access)
            self._dropped.update(
                int(r[0])
                for r in self._db.execute(
                    "SELECT id FROM entries WHERE scope = ? AND question = ? AND access IS ?",
                    same,
                )
            )
            self._db.execute(
                "DELETE FROM entries WHERE scope = ? AND question = ? AND access IS ?", same
            )
            cur = self._db.execute(
                "INSERT INTO entries (scope, question, vector, answer, cited, created, used, "
                "asked, access) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scope,
                    question,
                    blob,
                    entry.answer,
                    entry.cited,
                    now,
                    now,
                    entry.asked,
                    entry.access,
                ),
            )
            entry_id = int(cur.lastrowid or 0)
            over = int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]) - max_entries
            if over > 0:
                self._db.execute(
                    "DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY used "
                    "LIMIT ?)",
                    (over,),
                )
            # Our own writes leave data_version alone: the vectors in memory follow them here.
            if over > 0 or self._version is None:
                self._version = None  # evicted rows: reload on the next search
            elif unit is not None:
                ids, matrix = self._vectors.get(scope, ([], np.zeros((0, len(unit)), np.float32)))
                keep = [i for i, e in enumerate(ids) if e not in self._dropped]
                self._vectors[scope] = (
                    [ids[i] for i in keep] + [entry_id],
                    np.vstack([matrix[keep], unit.astype(np.float32)[None, :]]),
                )

    def delete(self, entry_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            self._dropped.add(int(entry_id))  # skipped by the search until the next reload

    def clear(self) -> int:
        with self._lock, self._db:
            n = int(self._db.execute("DELETE FROM entries").rowcount)
            self._version = None
        return n

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class StoreEntries:
    """Entries as points of a collection of the vector store (``<store.collection>_answers``):
    question embeddings as vectors, the rest in the payload. On a Qdrant server every API
    replica shares it. The least recently used go first, ``used`` refreshed at most hourly."""

    TOUCH_SECONDS = 3600.0

    def __init__(self, store: VectorStore, collection: str, dimension: int):
        self.store = store
        self.collection = collection
        self._lock = threading.Lock()
        if collection not in store.list_collections():
            try:
                store.create_collection(collection, dimension, {"kind": "answer-cache"})
            except Exception:
                if collection not in store.list_collections():
                    raise

    @staticmethod
    def _id(scope: str, question: str, access: str = "") -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rag-answer-cache:{scope}:{question}:{access}"))

    @staticmethod
    def _entry(point_id: str, payload: dict[str, Any]) -> _Entry:
        return _Entry(
            point_id,
            str(payload.get("answer", "")),
            str(payload.get("cited", "{}")),
            str(payload.get("asked", "")),
            str(payload.get("access", "")),
        )

    def exact(self, scope: str, question: str) -> list[_Entry]:
        # Every access class of the question (a few at most): by filter, not by one id.
        points = self.store.scroll(self.collection, filter={"scope": scope, "question": question})
        found = sorted(points, key=lambda p: -float(p.payload.get("used", 0)))
        return [self._entry(p.id, p.payload) for p in found]

    def nearest(self, scope: str, unit: np.ndarray, threshold: float) -> list[_Entry]:
        hits = self.store.search_dense(self.collection, unit.tolist(), NEIGHBOURS, {"scope": scope})
        return [self._entry(h.id, h.payload) for h in hits if h.score >= threshold]

    def touch(self, entry_id: str) -> None:
        points = self.store.retrieve(self.collection, [entry_id], with_vectors=True)
        if points and time.time() - float(points[0].payload.get("used", 0)) > self.TOUCH_SECONDS:
            point = points[0]
            point.payload["used"] = time.time()
            self.store.upsert(self.collection, [point])

    def put(
        self,
        scope: str,
        question: str,
        unit: np.ndarray | None,
        entry: _Entry,
        max_entries: int,
    ) -> None:
        if unit is None:
            return  # the store needs a vector per point
        now = time.time()
        payload = {
            "scope": scope,
            "question": question,
            "asked": entry.asked,
            "answer": entry.answer,
            "cited": entry.cited,
            "access": entry.access,
            "used": now,
        }
        point = StoredPoint(self._id(scope, question, entry.access), payload, dense=unit.tolist())
        with self._lock:
            self.store.upsert(self.collection, [point])
            over = self.store.count(self.collection) - max_entries
            if over > 0:
                ages = sorted(
                    (float(p.payload.get("used", 0)), p.id)
                    for p in self.store.scroll(self.collection)
                )
                self.store.delete(self.collection, [i for _, i in ages[:over]])
            self.store.flush(self.collection)

    def delete(self, entry_id: str) -> None:
        self.store.delete(self.collection, [entry_id])

    def clear(self) -> int:
        ids = [p.id for p in self.store.scroll(self.collection)]
        self.store.delete(self.collection, ids)
        return len(ids)

    def count(self) -> int:
        return self.store.count(self.collection)

    def close(self) -> None:
        return None  # the index closes its store


class AnswerCache:
    """The cache's entries and counters, for one index; :class:`CacheStep` is its stage."""

    def __init__(
        self,
        settings: CacheSettings,
        data_dir: Path,
        store: VectorStore | None = None,
        collection: str | None = None,
        dimension: int | None = None,
        index: Index | None = None,
    ):
        """``cache.backend: local`` keeps entries under ``data_dir``; ``store`` in
        ``collection`` of ``store`` (the index's, vectors of ``dimension``). ``index``: the
        index whose answers it holds (a hit is checked against its store)."""
        self.settings = settings
        self.index = index
        self.entries: LocalEntries | StoreEntries
        if settings.backend == "store":
            if store is None or collection is None or dimension is None:
                raise ConfigError("cache.backend store needs the index's store")
            self.entries = StoreEntries(store, collection, dimension)
        else:
            self.entries = LocalEntries(data_dir / CACHE_FILE)
        self.hits = 0
        self.misses = 0
        self.invalidated = 0
        self.stored = 0
        self.hits_by_kind: dict[str, int] = {"exact": 0, "semantic": 0}
        self.saved_cost = 0.0
        self.saved_tokens = 0
        self._stats_lock = threading.Lock()

    @classmethod
    def for_index(cls, settings: CacheSettings, index: Index) -> AnswerCache:
        return cls(
            settings,
            index.data_dir,
            store=index.store,
            collection=f"{index.alias}{STORE_SUFFIX}",
            dimension=index.embedder.dimension,
            index=index,
        )

    def _index(self) -> Index:
        if self.index is None:
            raise ConfigError("this answer cache has no index: build it with AnswerCache.for_index")
        return self.index

    # -- lookup --------------------------------------------------------------------------
    def lookup(self, scope: str, state: QueryState, *, peek: bool = False) -> CacheLookup:
        """A checked hit (``.answer``), or what a later ``store`` needs. ``peek``: exact
        matches only, and a miss is not counted (the real lookup follows)."""
        index = self._index()
        found = CacheLookup(scope, normalise_question(state.question))
        candidates = [(e, "exact") for e in self.entries.exact(scope, found.normalised)]
        threshold = self.settings.semantic_threshold
        if not candidates and threshold is not None and not peek:
            found.vector = np.asarray(index.embedder.embed_query(state.question))
            state.query_vector = found.vector.tolist()  # Retrieve reuses it on a miss
            candidates += [
                (e, "semantic")
                for e in self.entries.nearest(scope, _unit(found.vector), threshold)
                if compatible(state.question, e.asked)
            ]
        reader = state.query.reader(index.settings)
        for entry, how in candidates:
            cited = json.loads(entry.cited)
            if not self._valid(index, cited, state):
                self.entries.delete(entry.id)
                self.invalidated += 1
                continue
            # Another asker's answer, drawn from documents this one may not read (now: a
            # group revoked since counts): passed over, kept for those who may.
            if self._readable(index, cited, reader):
                if index.disk.problem() is None:  # a full volume: the hit is served, not noted
                    self.entries.touch(entry.id)
                answer = Answer.model_validate_json(entry.answer)
                with self._stats_lock:  # what answering afresh would have spent again
                    self.saved_cost += answer.usage.cost
                    self.saved_tokens += answer.usage.prompt_tokens + answer.usage.completion_tokens
                answer.cached = True
                answer.usage = Usage()
                answer.fallbacks = []
                answer.degraded = False
                found.answer, found.how = answer, how
                found.drawn_on = [list(g) for g in (cited.get("access") or {}).values()]
                self.hits += 1
                self.hits_by_kind[how] += 1
                return found
        if not peek:
            self.misses += 1
        return found

    @staticmethod
    def _readable(index: Index, cited: dict[str, Any], reader: Reader) -> bool:
        """Whether ``reader`` may read every document the answer drew on, by their groups in
        the store now (the reader's filter, as retrieval applies it)."""
        access: dict[str, Any] | None = cited.get("access")
        collection = index.collection
        if access is None or collection is None:
            return False  # no record of what it drew on: never served
        doc_ids = sorted(access)
        if not doc_ids:
            return False
        flt = {"doc_id": doc_ids, **read_filter(reader)}
        readable = {p.payload.get("doc_id") for p in index.store.scroll(collection, filter=flt)}
        return readable >= set(doc_ids)

    def _valid(self, index: Index, cited: dict[str, Any], state: QueryState) -> bool:
        """The cited chunks still hold the same text and their documents are unedited."""
        collection = index.collection
        if collection is None or cited.get("collection") != collection:
            return False
        chunks: dict[str, str] = cited.get("chunks") or {}
        if not chunks:
            return False
        tenant = state.query.tenant or index.settings.tenant
        points = index.store.retrieve(collection, list(chunks))
        if len(points) != len(chunks):
            return False
        for p in points:
            if p.payload.get("text_hash") != chunks.get(p.id) or p.payload.get("tenant") != tenant:
                return False
        for doc_id, ids in (cited.get("documents") or {}).items():
            now = sorted(index.store.ids_where(collection, {"doc_id": doc_id, "tenant": tenant}))
            if now != ids:
                return False
        return True

    # -- store ---------------------------------------------------------------------------
    def store(self, state: QueryState, found: CacheLookup) -> bool:
        """Keep ``state.answer`` if it is a verified, undegraded answer with citations."""
        answer = state.answer
        if (
            answer is None
            or answer.cached
            or answer.abstained
            or answer.degraded
            or not answer.citations
            or not answer.generator
        ):
            return False
        # The passages the answer cites, by their context numbers: the answer's own [n] are
        # renumbered 1..k in order of use, so they do not name context passages.
        numbers = set(state.verified.passages) if state.verified is not None else set()
        passages = [p for p in state.context.passages if p.n in numbers]
        ids = sorted({i for p in passages for i in p.chunk_ids})
        if not ids:
            return False
        index = self._index()
        collection = index.collection
        if collection is None:
            return False
        tenant = state.query.tenant or index.settings.tenant
        points = index.store.retrieve(collection, ids)
        chunks = {p.id: p.payload.get("text_hash") for p in points}
        if len(chunks) != len(ids):
            return False  # changed while we answered: not worth keeping
        documents = {
            d: sorted(index.store.ids_where(collection, {"doc_id": d, "tenant": tenant}))
            for d in sorted({p.doc_id for p in passages})
        }
        # Who may be served it: the groups of the documents it cites. Every sentence of the
        # answer is verified against those (unsupported ones are dropped); an answer that
        # keeps unsupported sentences (generation.verify.unsupported: mark) may carry what an
        # uncited passage said, so every document of its context counts.
        drawn = state.context.passages if answer.unsupported else passages
        shown = sorted({i for p in drawn for i in p.chunk_ids})
        access = {
            str(p.payload.get("doc_id")): sorted(p.payload.get("groups") or [])
            for p in index.store.retrieve(collection, shown)
        }
        if not set(documents) <= set(access):
            return False
        cited = {
            "collection": collection,
            "chunks": chunks,
            "documents": documents,
            "access": access,
        }
        vector = found.vector
        if vector is None and (
            self.settings.semantic_threshold is not None or self.settings.backend == "store"
        ):
            vector = np.asarray(index.embedder.embed_query(state.asked))
        stored = answer.model_copy(update={"timings_ms": {}})
        entry = _Entry(
            "",
            stored.model_dump_json(),
            json.dumps(cited, sort_keys=True),
            state.asked,
            _digest(sorted({tuple(g) for g in access.values()})),
        )
        if index.disk.problem(len(entry.answer) + len(entry.cited)) is not None:
            # Under the data dir's free-space floor nothing is written, a cache entry neither
            # (with cache.backend: store it is an upsert into the memory-mapped store): the
            # answer is returned, just not kept.
            return False
        self.entries.put(
            found.scope,
            found.normalised,
            _unit(vector) if vector is not None else None,
            entry,
            self.settings.max_entries,
        )
        self.stored += 1
        return True

    # -- upkeep --------------------------------------------------------------------------
    def clear(self) -> int:
        return self.entries.clear()

    def __len__(self) -> int:
        return self.entries.count()

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "invalidated": self.invalidated,
            "stored": self.stored,
            "hits_by_kind": dict(self.hits_by_kind),
            "saved_cost": self.saved_cost,
            "saved_tokens": self.saved_tokens,
            "entries": len(self),
        }

    def close(self) -> None:
        self.entries.close()


def _unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / (float(np.linalg.norm(v)) or 1.0)


def cached_events(answer: Answer) -> Iterator[StreamEvent]:
    """A cached answer as a stream: its text, its citations (the done event follows)."""
    if answer.answer:
        yield TokenEvent(answer.answer)
    yield CitationsEvent(answer.citations)


class CacheStep:
    """The ``cache`` stage, right after ``prompt``: a repeated question is answered from the
    cache (the walk ends here) and a fresh answer is kept once it is complete.

    The scope is computed once per query from what the state already holds (the selected
    prompt, tenant, filters, the live collection) and what this pipeline fixes (the chain,
    the settings that shape answers, the route of stages and filters). Not cached: queries
    without generation, attacked questions (answered afresh and flagged), unknown prompts."""

    name = "cache"

    def __init__(self, cache: AnswerCache, settings: Settings, chain: GeneratorChain):
        self.cache = cache
        self.settings = settings
        self.chain = chain
        self._static: dict[tuple[str, ...], str] = {}

    def warm_up(self) -> None:
        return None

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        scope = self.scope(state)
        if scope is None:
            return
        found = self.cache.lookup(scope, state)
        if found.answer is not None:
            state.answer = found.answer
            state.extras[DRAWN_ON] = found.drawn_on
            yield from cached_events(found.answer)
            return

        def keep(done: QueryState) -> None:
            self.cache.store(done, found)

        state.after_answer.append(keep)

    def peek(self, state: QueryState) -> Answer | None:
        """An exact, checked hit for ``state`` (no embedding, a miss not counted): cheap enough
        to ask before a query waits for a backend slot."""
        scope = self.scope(state)
        if scope is None:
            return None
        return self.cache.lookup(scope, state, peek=True).answer

    def scope(self, state: QueryState) -> str | None:
        """The hash of what the answer depends on besides the question; None: don't cache."""
        q, prompt = state.query, state.prompt
        index = self.cache.index
        if not q.generate or prompt is None or index is None or index.collection is None:
            return None
        guard = self.settings.injection
        if guard.enabled and guard.questions and question_scan(state).flagged:
            return None
        scope: dict[str, object] = {}
        if state.condensed is not None:
            # A follow-up's answer depends on its conversation too (the extractive chain
            # answers where the previous answer was and does not repeat it): only the same
            # conversation's same turn shares it, never a first turn with the same words.
            scope["conversation"] = [
                state.condensed.asked,
                state.condensed.reason,
                [t.content for t in q.history if t.role == "assistant"],
            ]
        return _digest(
            {
                **scope,
                "static": self._static_scope(state.route),
                "tenant": q.tenant or self.settings.tenant,
                "filters": q.filters or {},
                "prompt": [
                    prompt.name,
                    prompt.version,
                    prompt.system,
                    prompt.user,
                    prompt.temperature,
                    prompt.max_tokens,
                    list(prompt.stop),
                ],
                "collection": index.collection,
                "query": [q.temperature, q.max_tokens],
            }
        )

    def _static_scope(self, route: tuple[str, ...]) -> str:
        """What a pipeline fixes for its lifetime (chain, settings, route), hashed once."""
        digest = self._static.get(route)
        if digest is None:
            settings = self.settings
            index = self.cache._index()
            embedding = index.embedder.identity().as_dict()
            # Entries are found by their questions' vectors, and retrieval by the query's: what
            # embeds queries as warm-up resolved it (embedding.query_precision "auto": int8 or
            # fp32). fp32 is left out, so caches made before precisions existed keep their scope.
            if (queries := index.embedder.query_precision) != "fp32":
                embedding["query_precision"] = queries
            digest = self._static[route] = _digest(
                {
                    "schema": SCHEMA,
                    "chain": [g.describe() for g in self.chain.generators],
                    "generation": settings.generation.model_dump(
                        mode="json", exclude={"openai": {"api_key"}}
                    ),
                    "embedding": embedding,
                    "retrieval": settings.retrieval.model_dump(mode="json"),
                    "rerank": settings.rerank.model_dump(mode="json"),
                    "route": list(route),
                }
            )
        return digest
