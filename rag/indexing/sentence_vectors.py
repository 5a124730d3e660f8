"""Sentence vectors made at ingest: what the answer path compares with the question, embedded once.

The extractive backend scores every sentence of every context passage (and the passage itself)
by its embedding similarity to the question, and verification weighs the answer's sentences
the same way. Embedding them per question cost about a second on a documentation folder of
17k chunks. Ingestion now cuts each chunk as the answer path does
(:func:`chunk_sentences`, built on :mod:`rag.core.sentences`), embeds those sentences in the
same model call as the chunks, and keeps their vectors here; the query side
(:class:`rag.verification.citations.SupportScorer`) looks texts up before it embeds anything,
so a question costs retrieval plus dot products.

Storage: one SQLite file per collection, ``<data_dir>/sentence-vectors/<collection>.sqlite``
(WAL: the API reads while the daemon writes), vectors as float16 (384 dimensions: 768 bytes a
sentence; ``int8`` with a per-vector scale halves that). Texts are keyed by a 64-bit hash
of their words (whitespace runs collapsed: the embedder's tokenizer reads a line break as a
space), so a passage merged from two chunks, or an answer sentence verified after it was
said, finds the same vector. ``chunk_keys`` records which chunks are covered (what ``rag
status`` counts) and lets a deleted chunk's sentences go.

The file records what made it (:func:`identity`: the embedding fingerprint, the sentence
cutting revision, the encoding); a file made otherwise is emptied, and a collection built
before sentences were stored gets them on the next sync (or ``rag reindex``), said in the log
and in ``rag status``. Until then answers embed the missing sentences per question, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.sentences import (
    MIN_ANSWER_WORDS,
    SEGMENTS_REVISION,
    passage_segments,
    without_headings,
)

__all__ = [
    "CODECS",
    "SentenceVectorFile",
    "SentenceVectors",
    "chunk_sentences",
    "embed_sentences",
    "identity",
    "text_key",
]

log = logging.getLogger(__name__)

FORMAT = 1  # the file's tables; raise on a change (an old file is then emptied and refilled)
DEFAULT_DTYPE = "float16"
_FOLDER = "sentence-vectors"
_LOOKUP_BATCH = 500  # SQLite's bound on variables per statement is far above this

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (key INTEGER PRIMARY KEY, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunk_keys (
    chunk_id TEXT NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (chunk_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunk_keys_by_key ON chunk_keys (key);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def _encode_f16(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype=np.float16).tobytes()


def _decode_f16(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.float16).astype(np.float32)


def _encode_i8(v: np.ndarray) -> bytes:
    v = np.asarray(v, dtype=np.float32)
    scale = float(np.max(np.abs(v))) / 127.0 or 1.0
    q = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
    return np.float32(scale).tobytes() + q.tobytes()


def _decode_i8(b: bytes) -> np.ndarray:
    scale = float(np.frombuffer(b[:4], dtype=np.float32)[0])
    out: np.ndarray = np.frombuffer(b[4:], dtype=np.int8).astype(np.float32) * np.float32(scale)
    return out


# How a vector is kept: name -> (encode, decode).
CODECS: dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]] = {
    "float16": (_encode_f16, _decode_f16),
    "int8": (_encode_i8, _decode_i8),
}


def text_key(text: str) -> int:
    """The 64-bit key of ``text``: its words, whitespace runs collapsed."""
    digest = hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def chunk_sentences(text: str, title: str | None, section: Sequence[str]) -> list[str]:
    """The sentences of a chunk the extractive backend scores when the chunk is a passage
    (``rag.generate.extractive.candidates``: its segments, headings cut off, short ones and
    questions left out)."""
    known = {h.lower() for h in (title or "", *section) if h}
    out: list[str] = []
    for segment in passage_segments(text):
        sentence = without_headings(segment, known)
        if len(sentence.split()) >= MIN_ANSWER_WORDS and not sentence.rstrip().endswith("?"):
            out.append(sentence)
    return list(dict.fromkeys(out))


def identity(fingerprint: str, dtype: str = DEFAULT_DTYPE) -> dict[str, Any]:
    """What the stored vectors depend on: the model's weights, how chunks are cut into
    sentences, how vectors are encoded. Recorded in the file and the collection's metadata."""
    return {"format": FORMAT, "segments": SEGMENTS_REVISION, "dtype": dtype, "model": fingerprint}


class SentenceVectorFile:
    """One collection's sentence vectors (thread-safe; one connection, one lock)."""

    def __init__(self, path: Path, made_by: Mapping[str, Any]):
        self.path = path
        self.made_by = dict(made_by)
        self._encode, self._decode = CODECS[str(made_by["dtype"])]
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT v FROM meta WHERE k='identity'").fetchone()
        found = json.loads(row[0]) if row else None
        if found != self.made_by:
            if found is not None:
                log.warning(
                    "the sentence vectors of %s were made by %s, not %s: they are recomputed "
                    "on the next sync (answers embed sentences per question until then)",
                    path.stem,
                    found,
                    self.made_by,
                )
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM vectors")
            self._db.execute("DELETE FROM chunk_keys")
            self._db.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('identity', ?)",
                (json.dumps(self.made_by, sort_keys=True),),
            )
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_BATCH):
                part = wanted[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(part))
                for key, blob in self._db.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({marks})", part
                ):
                    out[int(key)] = self._decode(blob)
        return out

    def put(self, chunks: Mapping[str, Sequence[int]], vectors: Mapping[int, np.ndarray]) -> None:
        """Store ``vectors`` and record each chunk's keys (one transaction)."""
        rows = [(k, self._encode(v)) for k, v in vectors.items()]
        links = [(cid, k) for cid, keys in chunks.items() for k in dict.fromkeys(keys)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO chunk_keys (chunk_id, key) VALUES (?, ?)", links
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def covered(self, chunk_ids: Iterable[str]) -> set[str]:
        """Those of ``chunk_ids`` whose sentences are stored."""
        ids = list(dict.fromkeys(chunk_ids))
        out: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), _LOOKUP_BATCH):
                part = ids[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(part))
                out.update(
                    r[0]
                    for r in self._db.execute(
                        f"SELECT DISTINCT chunk_id FROM chunk_keys WHERE chunk_id IN ({marks})",
                        part,
                    )
                )
        return out

    def chunk_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(DISTINCT chunk_id) FROM chunk_keys").fetchone()
        return int(row[0])

    def vector_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def forget(self, chunk_ids: Iterable[str]) -> None:
        """Deleted chunks: their links go, and the vectors no other chunk links to."""
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(ids), _LOOKUP_BATCH):
                    part = ids[start : start + _LOOKUP_BATCH]
                    marks = ",".join("?" * len(part))
                    keys = [
                        r[0]
                        for r in self._db.execute(
                            f"SELECT key FROM chunk_keys WHERE chunk_id IN ({marks})", part
                        )
                    ]
                    self._db.execute(f"DELETE FROM chunk_keys WHERE chunk_id IN ({marks})", part)
                    self._db.executemany(
                        "DELETE FROM vectors WHERE key = ? AND NOT EXISTS "
                        "(SELECT 1 FROM chunk_keys WHERE chunk_keys.key = vectors.key)",
                        [(k,) for k in dict.fromkeys(keys)],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


class SentenceVectors:
    """The sentence vectors of an index's collections: one file each, opened on first use.

    ``lookup(collection, texts)`` is the read side (None where a text has none);
    ``encode`` embeds chunks and their sentences together at ingest (see
    :meth:`rag.indexing.ingest.Ingestor`); ``hits``/``misses`` count lookups."""

    def __init__(self, data_dir: Path, fingerprint: Callable[[], str], dtype: str = DEFAULT_DTYPE):
        if dtype not in CODECS:
            raise ValueError(f"sentence vector dtype {dtype!r}: one of {', '.join(CODECS)}")
        self.folder = data_dir / _FOLDER
        self.dtype = dtype
        self._fingerprint = fingerprint
        self._files: dict[str, SentenceVectorFile] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def identity(self) -> dict[str, Any]:
        return identity(self._fingerprint(), self.dtype)

    def path(self, collection: str) -> Path:
        return self.folder / f"{collection}.sqlite"

    def file(self, collection: str, create: bool = True) -> SentenceVectorFile | None:
        with self._lock:
            found = self._files.get(collection)
            if found is None and (create or self.path(collection).exists()):
                found = SentenceVectorFile(self.path(collection), self.identity())
                self._files[collection] = found
            return found

    def lookup(self, collection: str | None, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The stored vector of each text, None where there is none (not stored yet)."""
        f = self.file(collection, create=False) if collection else None
        if f is None:
            self.misses += len(texts)
            return [None] * len(texts)
        keys = [text_key(t) for t in texts]
        found = f.get(keys)
        out = [found.get(k) for k in keys]
        hit = sum(v is not None for v in out)
        self.hits += hit
        self.misses += len(out) - hit
        return out

    def coverage(self, collection: str, chunks: int) -> dict[str, Any]:
        """``rag status``'s view: how many of the collection's ``chunks`` have theirs."""
        f = self.file(collection, create=False)
        covered = f.chunk_count() if f is not None else 0
        out: dict[str, Any] = {
            "chunks": covered,
            "of": chunks,
            "vectors": f.vector_count() if f is not None else 0,
            "dtype": self.dtype,
            "complete": covered >= chunks,
        }
        if covered < chunks:
            out["note"] = (
                f"{chunks - covered} chunk(s) have no stored sentence vectors (an index built "
                "before they were stored): the next sync or `rag reindex` computes them; until "
                "then answers embed those sentences per question"
            )
        return out

    def drop(self, collection: str) -> None:
        """The collection is gone (a reindex replaced it): its file goes too."""
        with self._lock:
            f = self._files.pop(collection, None)
        if f is not None:
            f.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path(collection)}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            files, self._files = list(self._files.values()), {}
        for f in files:
            f.close()


def embed_sentences(
    embed: Callable[[list[str]], np.ndarray],
    sentence_texts: Sequence[str],
    known: Mapping[int, np.ndarray],
) -> tuple[dict[int, np.ndarray], int]:
    """The vectors of ``sentence_texts`` by key, ``known`` ones (the chunks' own, by the key of
    their text: a one-sentence chunk) not embedded again; each distinct text once. Returns
    every vector by key, ``known`` included, and how many texts were embedded."""
    by_key: dict[int, np.ndarray] = dict(known)
    todo: dict[int, str] = {}
    for s in sentence_texts:
        k = text_key(s)
        if k not in by_key and k not in todo:
            todo[k] = s
    if todo:
        by_key.update(zip(todo, embed(list(todo.values())), strict=True))
    return by_key, len(todo)
