"""Eval datasets (BEIR layout) and the isolated, cached indexes they are queried against.

A dataset folder holds ``queries.jsonl`` (``{"_id", "text"}``), ``qrels/<split>.tsv``
(``query-id  corpus-id  score``, header first) and either ``corpus.jsonl`` (``{"_id", "title",
"text"}``) or, given ``docs=FOLDER``, a folder of files whose qrels ``corpus-id`` is the file
path relative to that folder. Answer sets add ``answers.jsonl`` (``{"_id", "answerable",
"answers"}``).

The corpus goes through the normal ingestion path (parse → chunk → embed → store) into an
index of its own under the eval cache, never into the user's knowledge base:

- ``corpus.jsonl``: every document becomes ``docs/<id>.txt`` (title, blank line, text), so a
  chunk's ``source`` minus ``.txt`` is its corpus id (ids that are not safe file names get a
  safe name and an entry in ``ids.json``). The index is keyed by (corpus content hash,
  embedding identity, chunking config): a second run with the same key only re-queries.
- ``docs=FOLDER``: keyed by (folder, embedding identity, chunking config) and synced on each
  run, which costs one hash per unchanged file and re-embeds only what changed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rag.core.config import Settings, StoreSettings
from rag.core.errors import ConfigError, RagError
from rag.core.paths import PathFilter
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.parsing import ingested_suffixes

__all__ = [
    "AnswerKey",
    "Dataset",
    "DatasetError",
    "DatasetIndex",
    "load_beir",
    "materialize_corpus",
    "open_dataset_index",
    "safe_file_stem",
]

log = logging.getLogger(__name__)

# Bump when the corpus → files layout changes: cached indexes built the old way are not reused.
MATERIALIZE_VERSION = 1
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_EVAL_COLLECTION = "eval"


class DatasetError(RagError, ValueError):
    """The dataset folder cannot be used; the message says what is missing and what to do."""


@dataclass(frozen=True)
class AnswerKey:
    answerable: bool
    answers: list[str]


@dataclass
class Dataset:
    name: str
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    root: Path | None = None
    corpus: Path | None = None  # corpus.jsonl
    docs: Path | None = None  # a folder whose relative paths are the corpus ids
    answers: dict[str, AnswerKey] | None = None
    content_hash: str | None = None  # of the question/judgement files (what the scores depend on)
    # docs_exclude.txt: ingestion.exclude patterns for the docs folder (files that are not
    # the corpus, e.g. a Sphinx build's _sources/ copies of every page)
    docs_exclude: list[str] = field(default_factory=list)
    # conversations.jsonl: multi-turn golden sets (evals/conversations.py)
    conversations: Path | None = None
    # queries.jsonl's "half" of each question ("tune" / "report"): rules are tuned on one half
    # and reported on the other (`rag eval answers --half report`)
    halves: dict[str, str] = field(default_factory=dict)

    def judged_queries(self) -> dict[str, str]:
        """Queries with at least one relevant document (the ones retrieval metrics average over)."""
        return {
            qid: text
            for qid, text in self.queries.items()
            if any(grade > 0 for grade in self.qrels.get(qid, {}).values())
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.root) if self.root else None,
            "split": self.split,
            "corpus": "docs" if self.docs else "corpus.jsonl",
            "docs": str(self.docs) if self.docs else None,
            "docs_exclude": list(self.docs_exclude),
            "queries": len(self.queries),
            "judged_queries": len(self.judged_queries()),
            "conversations": str(self.conversations) if self.conversations else None,
            "content_hash": self.content_hash,
        }


# -- loading ---------------------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg}); fix or remove that line"
                ) from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object per line")
            yield row


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for lineno, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score'")
            try:
                grade = int(float(row[2])) if len(row) > 2 and row[2].strip() else 1
            except ValueError as exc:
                raise DatasetError(f"{path}:{lineno}: score {row[2]!r} is not a number") from exc
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode())
        digest.update(_file_sha256(p).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_beir(root: Path, split: str = "test", docs: Path | None = None) -> Dataset:
    """Read a BEIR-layout folder. With ``docs``, the corpus is that folder instead of corpus.jsonl."""
    root = root.expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist: give a folder with queries.jsonl and qrels/"
        )
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    conversations = root / "conversations.jsonl"
    # a folder of conversations alone (evals/chat) is an answer set without single questions
    alone = conversations.is_file() and not queries_path.is_file()
    if not queries_path.is_file() and not alone:
        raise DatasetError(f'{root} has no queries.jsonl (one {{"_id", "text"}} object per line)')
    if not qrels_path.is_file() and not alone:
        have = (
            sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
            if (root / "qrels").is_dir()
            else []
        )
        hint = f"available splits: {', '.join(have)}" if have else "the folder has no qrels/*.tsv"
        raise DatasetError(f"{root} has no qrels/{split}.tsv ({hint}); pick one with --split")
    corpus: Path | None = None
    if docs is not None:
        docs = docs.expanduser().resolve()
        if not docs.is_dir():
            raise DatasetError(f"--docs {docs} is not a folder")
    else:
        corpus = root / "corpus.jsonl"
        if not corpus.is_file():
            raise DatasetError(
                f'{root} has no corpus.jsonl: add one ({{"_id", "title", "text"}} per line), '
                "or pass --docs FOLDER when the qrels name files in a folder"
            )
    rows = [] if alone else [r for r in _read_jsonl(queries_path) if "_id" in r]
    queries = {str(r["_id"]): str(r.get("text", "")) for r in rows}
    halves = {str(r["_id"]): str(r["half"]) for r in rows if r.get("half")}
    qrels = {} if alone else _read_qrels(qrels_path)
    answers: dict[str, AnswerKey] | None = {} if alone else None
    answers_path = root / "answers.jsonl"
    hashed = [] if alone else [queries_path, qrels_path]
    if conversations.is_file():
        hashed.append(conversations)
    if answers_path.is_file():
        answers = {
            str(r["_id"]): AnswerKey(
                bool(r.get("answerable", True)), [str(a) for a in r.get("answers") or []]
            )
            for r in _read_jsonl(answers_path)
            if "_id" in r
        }
        hashed.append(answers_path)
    docs_exclude: list[str] = []
    exclude_path = root / "docs_exclude.txt"
    if docs is not None and exclude_path.is_file():
        docs_exclude = [
            line.strip()
            for line in exclude_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        try:
            PathFilter(docs_exclude)
        except ConfigError as exc:
            raise DatasetError(f"{exclude_path}: {exc}") from exc
        hashed.append(exclude_path)  # what is left out of the corpus changes the scores too
    include_path = root / "docs_include.txt"
    if docs is not None and include_path.is_file():
        docs_exclude += _outside(docs, _patterns(include_path))
        hashed.append(include_path)
    return Dataset(
        name=root.resolve().name,
        split=split,
        queries=queries,
        qrels=qrels,
        root=root.resolve(),
        corpus=corpus,
        docs=docs,
        answers=answers,
        content_hash=_hash_files(hashed)[:16],
        docs_exclude=docs_exclude,
        conversations=conversations.resolve() if conversations.is_file() else None,
        halves=halves,
    )


def _patterns(path: Path) -> list[str]:
    patterns = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    try:
        PathFilter(patterns)
    except ConfigError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    return patterns


def _outside(docs: Path, include: list[str]) -> list[str]:
    """``docs_include.txt`` (a sample of a big folder: only the files its patterns match are
    the corpus) as exclude patterns: every file and folder of ``docs`` it matches nothing in."""
    wanted = PathFilter(include)
    out: list[str] = []

    def walk(folder: Path, rel: str) -> bool:  # whether anything under it is wanted
        found: list[str] = []
        kept = False
        for entry in sorted(folder.iterdir()):
            name = f"{rel}{entry.name}"
            if entry.is_dir() and not entry.is_symlink():
                inner = len(out)
                if walk(entry, f"{name}/"):
                    kept = True
                else:
                    del out[inner:]  # the folder as a whole, not file by file
                    found.append(f"/{name}/")
            elif wanted.excludes(name):
                kept = True
            else:
                found.append(f"/{name}")
        out.extend(found)
        return kept

    walk(docs, "")
    return out


# -- corpus.jsonl → files ----------------------------------------------------------------
def safe_file_stem(corpus_id: str) -> str:
    """A file name for a corpus id: the id itself when it is a plain name, else a safe form + hash."""
    if _SAFE_STEM.match(corpus_id) and not corpus_id.endswith("."):
        return corpus_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", corpus_id).strip("._")[:60] or "doc"
    return f"{cleaned}-{hashlib.sha1(corpus_id.encode('utf-8')).hexdigest()[:12]}"


def materialize_corpus(corpus: Path, dest: Path) -> dict[str, str]:
    """Write each corpus document to ``dest/<stem>.txt``; returns {stem: corpus id} where they differ.

    Written to a sibling temp folder and renamed into place, so ``dest`` is complete or absent.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    renamed: dict[str, str] = {}
    seen: set[str] = set()
    used: set[str] = set()  # lower-cased: a case-insensitive file system must not merge two ids
    for row in _read_jsonl(corpus):
        if "_id" not in row:
            continue
        cid = str(row["_id"])
        if cid in seen:
            raise DatasetError(f"{corpus}: corpus id {cid!r} appears twice; ids must be unique")
        seen.add(cid)
        stem = safe_file_stem(cid)
        if stem.lower() in used:
            stem = f"{stem}-{hashlib.sha1(cid.encode('utf-8')).hexdigest()[:12]}"
        used.add(stem.lower())
        if stem != cid:
            renamed[stem] = cid
        title = str(row.get("title") or "").strip()
        text = str(row.get("text") or "").strip()
        body = f"{title}\n\n{text}" if title and text else (title or text)
        (tmp / f"{stem}.txt").write_text(body + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return renamed


# -- the isolated index ------------------------------------------------------------------
@dataclass
class DatasetIndex:
    """An open index over one dataset's corpus; ``close()`` releases it (and its cache lock)."""

    index: Index
    folder: Path  # what was ingested
    cache_dir: Path
    key: str
    cached: bool  # nothing had to be embedded: the cache already held this corpus
    build_seconds: float
    documents: int
    failed: list[dict[str, str]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    from_corpus_jsonl: bool = False  # sources are "<stem>.txt" files written from corpus.jsonl
    _lock_file: IO[str] | None = None

    def to_doc(self, source: str) -> str:
        """Chunk ``source`` → the dataset's corpus id."""
        if not self.from_corpus_jsonl or not source.endswith(".txt"):
            return source
        stem = source[: -len(".txt")]
        return self.renamed.get(stem, stem)

    def describe(self) -> dict[str, Any]:
        return {
            "cache_dir": str(self.cache_dir),
            "key": self.key[:16],
            "cached": self.cached,
            "build_seconds": round(self.build_seconds, 3),
            "documents": self.documents,
            "failed_documents": len(self.failed),
            "collection": self.index.collection,
        }

    def close(self) -> None:
        self.index.close()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def cache_root(settings: Settings) -> Path:
    configured = settings.evals.cache_dir
    return (
        Path(configured).expanduser().resolve()
        if configured
        else settings.resolved_data_dir() / "eval-cache"
    )


def isolated_settings(
    settings: Settings, data_dir: Path, dataset: Dataset | None = None
) -> Settings:
    """The user's settings, but pointed at a private data dir with the embedded store.

    Dataset indexes never touch the production store (a Qdrant server included): scores
    depend on the engine, embedding and chunking, which are the same.
    """
    iso = settings.model_copy(deep=True)
    iso.data_dir = data_dir
    iso.store = StoreSettings(backend="edge", collection=_EVAL_COLLECTION)
    extensions = iso.ingestion.extensions
    if extensions is not None and ".txt" not in extensions:  # None: every parser's, .txt too
        iso.ingestion.extensions = [*extensions, ".txt"]
    iso.ingestion.ignore_hidden = True
    if dataset is not None and dataset.docs_exclude:
        iso.ingestion.exclude = [*iso.ingestion.exclude, *dataset.docs_exclude]
    return iso


def _cache_key(settings: Settings, embedder: Embedder, dataset: Dataset) -> tuple[str, str]:
    if dataset.docs is not None:
        source: dict[str, Any] = {"kind": "docs", "folder": str(dataset.docs)}
        label = f"{dataset.name}-{dataset.docs.name}"
    else:
        assert dataset.corpus is not None
        source = {
            "kind": "corpus",
            "sha256": _file_sha256(dataset.corpus),
            "format": MATERIALIZE_VERSION,
        }
        label = dataset.name
    material = {
        "source": source,
        "embedding": embedder.identity().as_dict(),
        "chunking": settings.chunking.model_dump(),
        "extensions": sorted(ingested_suffixes(settings.ingestion.extensions)),
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:40] or "dataset"
    return key, slug


def open_dataset_index(
    settings: Settings,
    dataset: Dataset,
    embedder: Embedder,
    rebuild: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> DatasetIndex:
    """Open (building it on first use) the isolated index over ``dataset``'s corpus."""
    key, slug = _cache_key(settings, embedder, dataset)
    cache_dir = cache_root(settings) / f"{slug}-{key[:16]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock_file = (cache_dir / ".lock").open("w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if echo:
            echo(f"waiting for another eval that is using {cache_dir}")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        return _open_locked(
            settings, dataset, embedder, key, cache_dir, lock_file, rebuild, progress, echo
        )
    except BaseException:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()
        raise


def _open_locked(
    settings: Settings,
    dataset: Dataset,
    embedder: Embedder,
    key: str,
    cache_dir: Path,
    lock_file: IO[str],
    rebuild: bool,
    progress: Callable[[str, int, int], None] | None,
    echo: Callable[[str], None] | None,
) -> DatasetIndex:
    ready_path = cache_dir / "ready.json"
    data_dir = cache_dir / "index"
    if rebuild:
        ready_path.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(cache_dir / "docs", ignore_errors=True)
    ready: dict[str, Any] | None = None
    if ready_path.exists():
        with contextlib.suppress(OSError, ValueError):
            ready = json.loads(ready_path.read_text(encoding="utf-8"))
    if ready is not None and ready.get("key") != key:
        ready = None
    renamed: dict[str, str] = {}
    started = time.perf_counter()
    if dataset.docs is not None:
        folder = dataset.docs
    else:
        folder = cache_dir / "docs"
        assert dataset.corpus is not None
        if ready is None or not folder.is_dir():
            if echo:
                echo(f"writing {dataset.corpus} as files under {folder}")
            renamed = materialize_corpus(dataset.corpus, folder)
            (cache_dir / "ids.json").write_text(json.dumps(renamed), encoding="utf-8")
            ready = None
        else:
            renamed = json.loads((cache_dir / "ids.json").read_text(encoding="utf-8"))
    index = Index(isolated_settings(settings, data_dir, dataset), embedder=embedder)
    try:
        collection = index.open(create=True)
        if (
            ready is not None
            and int(ready.get("documents", 0))
            and not index.store.count(collection)
        ):
            ready = None  # the marker outlived its index (deleted by hand): build it again
        embedded = 0
        failed: list[dict[str, str]] = []
        # A corpus.jsonl index is immutable once built; a docs folder is re-synced every run.
        if ready is None or dataset.docs is not None:
            if echo and ready is None:
                echo(
                    f"ingesting {folder} into an isolated eval index at {data_dir} (cached for the next run)"
                )
            report = Ingestor(index).sync_folder(folder, progress=progress)
            embedded = report.embedded + report.chunks_deleted + report.deleted
            failed = report.failures
            documents = len(index.manifest.records(index.collection or "", status="ok"))
            ready = {
                "key": key,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.perf_counter() - started, 3),
                "documents": documents,
                "failed": failed,
                "dataset": dataset.describe(),
            }
            tmp = ready_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ready, indent=2), encoding="utf-8")
            os.replace(tmp, ready_path)
        else:
            failed = list(ready.get("failed") or [])
        cached = embedded == 0
        if failed and echo:
            echo(
                f"{len(failed)} corpus document(s) could not be ingested (first: {failed[0]['path']}: {failed[0]['reason']})"
            )
        return DatasetIndex(
            index=index,
            folder=folder,
            cache_dir=cache_dir,
            key=key,
            cached=cached,
            build_seconds=time.perf_counter() - started,
            documents=int(ready.get("documents", 0)),
            failed=failed,
            renamed=renamed,
            from_corpus_jsonl=dataset.docs is None,
            _lock_file=lock_file,
        )
    except BaseException:
        index.close()
        raise
