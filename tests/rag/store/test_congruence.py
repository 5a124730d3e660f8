"""Congruence: one suite run against every backend of rag.store's ``VectorStore`` interface.

In the style of qdrant-client's own congruence tests: the same randomly generated points (seeded
numpy: dense unit vectors, sparse vectors, chunk-like payloads) are loaded into every backend,
the same random queries and filters (drawn from those payloads) are run on each, and every
answer is compared, tie-aware, with an exact numpy oracle and with the ``edge`` backend's.

The backends are every entry of ``rag.store.STORES`` (a store registered before this module
is collected, e.g. from a conftest, is held to the same suite), each opened by its factory
from settings as ``open_store`` would:

- ``edge``: qdrant-edge-py, Qdrant's own Rust engine (segments, payload indexes, HNSW) in process;
- ``qdrant``, twice: ``qdrant-local``, qdrant-client's local mode (no ``store.url``: a folder
  under the data dir), the *client's own* pure-Python/numpy re-implementation of Qdrant's
  semantics: not the server's engine, which is why it is worth comparing with the engine at
  all; and ``qdrant-server``, qdrant-client against a real Qdrant server at ``$QDRANT_URL``
  (with ``$QDRANT_API_KEY`` if set), skipped when no server is configured.

Below the indexing threshold every backend searches by brute force, so dense and sparse search
must agree exactly (up to float32 rounding and the order of equal scores). The HNSW index that
``optimize()`` builds on edge is approximate: it is held to a recall against brute force instead.
"""

from __future__ import annotations

import functools
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.core.config import DEFAULT_CONFIG, StoreSettings, load_settings
from rag.store import STORES, Filter, Hit, SparseVec, StoredPoint, StoreError, VectorStore
from rag.store.edge import EdgeStore

DIM = 32
N_POINTS = 400
VOCAB = 400  # sparse term ids; the upper ones are never used by a point
USED_VOCAB = 300
TENANTS = ("acme", "globex", "initech")
# Who may read a document (rag/core/access.py): "all" is everyone in the tenant; [] nobody
# but a principal with every group; a list matches a reader holding any of it.
GROUP_LABELS = (["all"], ["all"], ["hr"], ["eng"], ["eng", "hr"], ["legal"], [])
HEADINGS = ("Overview", "Setup", "Billing", "Retries", "Limits", "Security", "FAQ", "Appendix")
COLLECTION = "chunks"
SCORE_TOL = 1e-5  # relative to max(1, |score|): float32 rounding, nothing more
TIE = 1e-5  # scores this close are a tie: those points may come back in either order

QDRANT_URL = os.environ.get("QDRANT_URL")
NO_SERVER = "QDRANT_URL not set: no Qdrant server to compare against"
REFERENCE = "edge"


@dataclass(frozen=True)
class Kind:
    """One backend under test: a ``STORES`` name and the ``store`` settings it is opened with."""

    backend: str
    store: dict[str, Any]
    shared: bool = False  # a server: this run's collections and aliases get a unique prefix


def store_kinds() -> dict[str, Kind]:
    """Every registered store; ``qdrant`` as local mode and as a server."""
    kinds: dict[str, Kind] = {}
    for name in STORES.names():
        if name == "qdrant":
            kinds["qdrant-local"] = Kind(name, {})
            server = {"url": QDRANT_URL, "api_key": os.environ.get("QDRANT_API_KEY")}
            kinds["qdrant-server"] = Kind(name, server, shared=True)
        else:
            kinds[name] = Kind(name, {})
    return kinds


KINDS = store_kinds()
BACKENDS = [
    pytest.param(
        kind,
        id=kind,
        marks=[pytest.mark.skipif(not QDRANT_URL, reason=NO_SERVER)]
        if kind == "qdrant-server"
        else [],
    )
    for kind in KINDS
]


# -- the data -------------------------------------------------------------------------------
def make_points(n: int, seed: int) -> list[StoredPoint]:
    """``n`` chunks of ``n // 10`` documents, like rag's: a document's chunks share its
    ``doc_id``, ``source`` and ``tenant``; PDFs have pages (and some were OCRed), Markdown and
    HTML have none (``page`` is None); ``section`` is a heading path (a list). About one chunk
    in twelve repeats an earlier chunk's text (same vectors, same ``text_hash``), as the same
    paragraph in two documents does, so exact score ties are common."""
    rng = np.random.default_rng(seed)
    n_docs = max(3, n // 10)
    docs = []
    for k in range(n_docs):
        ext = ("pdf", "md", "html")[int(rng.integers(3))]
        tenant = TENANTS[int(rng.integers(len(TENANTS)))]
        docs.append((f"doc-{k:03d}", f"{tenant}/manuals/file-{k:03d}.{ext}", tenant, ext))
    # Drawn from their own generator: the other fields stay what they were before groups.
    labels = np.random.default_rng(seed + 1)
    doc_groups = {
        f"doc-{k:03d}": GROUP_LABELS[int(labels.integers(len(GROUP_LABELS)))] for k in range(n_docs)
    }
    dense = rng.normal(size=(n, DIM))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    term_p = 1.0 / np.arange(1, USED_VOCAB + 1) ** 0.9  # Zipf-like: IDF varies widely
    term_p /= term_p.sum()
    points: list[StoredPoint] = []
    chunk_index: dict[str, int] = {}
    for i in range(n):
        doc_id, source, tenant, ext = docs[int(rng.integers(n_docs))]
        index = chunk_index[doc_id] = chunk_index.get(doc_id, -1) + 1
        dup = points[int(rng.integers(len(points)))] if points and rng.random() < 0.08 else None
        if dup is not None:
            vec, sparse, text_hash = dup.dense, dup.sparse, dup.payload["text_hash"]
        else:
            terms = np.unique(rng.choice(USED_VOCAB, size=int(rng.integers(2, 12)), p=term_p))
            weights = rng.uniform(0.1, 3.0, len(terms)).round(4)
            vec = dense[i].tolist()
            sparse = SparseVec([int(t) for t in terms], [float(w) for w in weights])
            text_hash = f"{rng.integers(2**62):016x}"
        depth = int(rng.integers(1, 4))
        section = [str(h) for h in rng.choice(HEADINGS, size=depth, replace=False)]
        points.append(
            StoredPoint(
                id=str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                payload={
                    "doc_id": doc_id,
                    "source": source,
                    "tenant": tenant,
                    "groups": list(doc_groups[doc_id]),
                    "readers": [f"{tenant}/{g}" for g in doc_groups[doc_id]],
                    "title": f"Manual {doc_id}",
                    "text": f"chunk {index} of {doc_id}",
                    "text_hash": text_hash,
                    "section": section,
                    "page": int(rng.integers(1, 21)) if ext == "pdf" else None,
                    "ocr": bool(ext == "pdf" and rng.random() < 0.3),
                    "chunk_index": index,
                    "start": index * 800,
                    "end": index * 800 + 799,
                },
                dense=vec,
                sparse=sparse,
            )
        )
    return points


FILTER_KEYS = (
    "doc_id",
    "source",
    "tenant",
    "page",
    "section",
    "ocr",
    "text_hash",
    "groups",
    "readers",
)


def _values(payload: dict[str, Any], key: str) -> list[Any]:
    """A payload field's values as Qdrant matches them: a list's elements, else the value."""
    value = payload.get(key)
    return list(value) if isinstance(value, list) else [value]


def random_filters(points: Sequence[StoredPoint], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` filters of one to three keys, each an exact value or a match-any list. Values are
    taken from a random anchor point (so most filters match something, combined ones too),
    widened with other values of the field, and now and then replaced by one no point has."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[Any]] = {}
    for key in FILTER_KEYS:
        seen = {v for p in points for v in _values(p.payload, key)} - {None}
        pools[key] = sorted(seen, key=repr)
    absent: dict[type, Any] = {str: "no-such-value", int: 10_000, bool: True}
    out: list[dict[str, Any]] = []
    while len(out) < n:
        anchor = points[int(rng.integers(len(points)))].payload
        keys = rng.choice(FILTER_KEYS, size=int(rng.choice([1, 1, 2, 2, 3])), replace=False)
        flt: dict[str, Any] = {}
        for key in map(str, keys):
            own = [v for v in _values(anchor, key) if v is not None]
            pool = pools[key]
            value = own[int(rng.integers(len(own)))] if own else pool[int(rng.integers(len(pool)))]
            if rng.random() < 0.1 and not isinstance(value, bool):
                value = absent[type(value)]
            if isinstance(value, bool) or rng.random() < 0.5:
                flt[key] = value
            else:  # match any: the value and up to three others of the field
                others = [pool[int(j)] for j in rng.choice(len(pool), size=int(rng.integers(0, 4)))]
                flt[key] = list(dict.fromkeys([value, *others]))
        out.append(flt)
    return out


# Cases a random draw rarely hits; they have each been an incongruence somewhere.
SPECIAL_FILTERS: list[dict[str, Any]] = [
    {"doc_id": []},  # match any of nothing: matches nothing
    {"no_such_key": "x"},
    {"section": "Billing"},  # a list field matches on any element
    {"section": ["Billing", "FAQ"]},
    {"ocr": True},  # a boolean matches booleans...
    {"ocr": False, "tenant": "acme"},
    {"page": True},  # ...and never the integer 1
    {"ocr": 1},  # nor does an integer match a boolean
    {"page": "3"},  # nor a string an integer
    {"page": [1, 2, 3], "tenant": ["acme", "initech"]},
    # The read filter of a reader (rag.core.access.read_filter): "all" or one of its groups,
    # in its tenant; an empty label matches no reader's list.
    {"readers": ["acme/all", "acme/eng"]},
    {"readers": "globex/all"},
    {"tenant": "acme", "groups": ["all", "eng"]},
    {"tenant": "globex", "groups": ["all"]},
    {"groups": ["hr", "legal"]},
    {"groups": "eng"},
]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # Qdrant's types: True is no 1, "3" no 3


def matches(payload: dict[str, Any], flt: Filter | None) -> bool:
    """The oracle's filter: every key matches; a list in the filter matches any of it."""
    for key, want in (flt or {}).items():
        wanted = list(want) if isinstance(want, (list, tuple)) else [want]
        if not any(_same(have, w) for have in _values(payload, key) for w in wanted):
            return False
    return True


class Oracle:
    """Exact answers over ``points``, computed the way Qdrant defines them: cosine for dense,
    dot product with IDF ``ln(1 + (N - df + 0.5) / (df + 0.5))`` applied to the query for
    sparse (N: the points with a sparse vector, df: those among them with the term)."""

    def __init__(self, points: Sequence[StoredPoint]):
        self.points = list(points)
        self.by_id = {p.id: p for p in self.points}
        self.dense = np.array([p.dense for p in self.points], dtype=np.float64)
        self.dense /= np.linalg.norm(self.dense, axis=1, keepdims=True)
        self.postings: dict[int, list[tuple[int, float]]] = {}
        for row, p in enumerate(self.points):
            for t, v in zip(p.sparse.indices, p.sparse.values, strict=True):  # type: ignore[union-attr]
                self.postings.setdefault(t, []).append((row, v))
        self.n_sparse = sum(1 for p in self.points if p.sparse and p.sparse.indices)
        self._masks: dict[str, np.ndarray] = {}

    def mask(self, flt: Filter | None) -> np.ndarray:
        key = repr(flt)
        if key not in self._masks:
            self._masks[key] = np.array([matches(p.payload, flt) for p in self.points], dtype=bool)
        return self._masks[key]

    def ids(self, flt: Filter | None) -> list[str]:
        return [p.id for p, ok in zip(self.points, self.mask(flt), strict=True) if ok]

    def dense_ranking(self, query: Sequence[float], flt: Filter | None) -> list[tuple[str, float]]:
        q = np.asarray(query, dtype=np.float64)
        scores = self.dense @ (q / np.linalg.norm(q))
        rows = np.flatnonzero(self.mask(flt))
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        return [(self.points[r].id, float(scores[r])) for r in rows]

    def idf(self, term: int) -> float:
        df = len(self.postings.get(term, []))
        return math.log(1.0 + (self.n_sparse - df + 0.5) / (df + 0.5))

    def sparse_ranking(self, query: SparseVec, flt: Filter | None) -> list[tuple[str, float]]:
        acc: dict[int, float] = {}
        for t, qv in zip(query.indices, query.values, strict=True):
            weight = qv * self.idf(t)
            for row, v in self.postings.get(t, []):
                acc[row] = acc.get(row, 0.0) + weight * v
        mask = self.mask(flt)
        hits = [(self.points[r].id, s) for r, s in acc.items() if mask[r]]
        return sorted(hits, key=lambda x: -x[1])


def dense_queries(points: Sequence[StoredPoint], seed: int) -> list[list[float]]:
    """Random unit vectors, and stored points' own vectors (each finds itself, and its
    duplicates, at a score of 1.0: a tie)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(30, DIM))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    own = [points[int(i)].dense or [] for i in rng.choice(len(points), 10, replace=False)]
    return [*out.tolist(), *own]


def sparse_queries(points: Sequence[StoredPoint], seed: int) -> list[SparseVec]:
    """Random term sets with random weights, stored points' own sparse vectors, single common
    terms (many points tie), and terms no point has (fewer hits than the limit, or none)."""
    rng = np.random.default_rng(seed)
    out: list[SparseVec] = []
    for _ in range(25):
        terms = np.unique(rng.choice(USED_VOCAB, size=int(rng.integers(1, 7))))
        out.append(SparseVec([int(t) for t in terms], rng.uniform(0.2, 2.0, len(terms)).tolist()))
    out += [points[int(i)].sparse for i in rng.choice(len(points), 8, replace=False)]  # type: ignore[misc]
    out += [SparseVec([0], [1.0]), SparseVec([1], [0.5]), SparseVec([2, 3], [1.0, 1.0])]
    out += [SparseVec([VOCAB - 1], [1.0]), SparseVec([7, VOCAB - 2], [1.0, 2.0])]
    return out


LIMITS = (10, 1, 5, 25)


# -- comparing answers ------------------------------------------------------------------------
def _close(a: float, b: float, tol: float = SCORE_TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def assert_matches_oracle(
    ranking: Sequence[tuple[str, float]],
    hits: Sequence[Hit],
    limit: int,
    oracle: Oracle,
    label: str,
) -> None:
    """``hits`` are a true top-``limit`` of ``ranking`` (the oracle's full, exact answer): as many
    as there should be, the oracle's scores position by position, each hit a point that matches
    (and has the score it was given), no point twice, payloads as stored. Points with equal
    scores may come in any order, and at the limit any of a tie may be the one kept."""
    expected = ranking[:limit]
    got = [(h.id, round(h.score, 6)) for h in hits]
    assert len(hits) == len(expected), f"{label}: {len(hits)} hits, expected {len(expected)}: {got}"
    assert len({h.id for h in hits}) == len(hits), f"{label}: a point came back twice: {got}"
    true_score = dict(ranking)
    for pos, (hit, (want_id, want)) in enumerate(zip(hits, expected, strict=True)):
        assert hit.id in true_score, (
            f"{label}: #{pos} {hit.id} should not be a hit at all (filter or no shared term)"
        )
        assert _close(hit.score, want), (
            f"{label}: #{pos} scores {hit.score!r}, expected {want!r} ({want_id}): {got}"
        )
        assert _close(hit.score, true_score[hit.id]), (
            f"{label}: #{pos} {hit.id} scored {hit.score!r}, its true score is {true_score[hit.id]!r}"
        )
        assert hit.payload == oracle.by_id[hit.id].payload, f"{label}: #{pos} payload differs"


def assert_same_hits(reference: Sequence[Hit], hits: Sequence[Hit], limit: int, label: str) -> None:
    """Two backends' answers to one query agree: same length, scores equal position by position,
    the same ids in order, except that within a tie group (scores within ``TIE``) they are
    compared as sets; a tie cut by the limit may keep different members in each."""
    ref = [(h.id, round(h.score, 6)) for h in reference]
    got = [(h.id, round(h.score, 6)) for h in hits]
    assert len(hits) == len(reference), f"{label}: {got}\n  reference: {ref}"
    for pos, (a, b) in enumerate(zip(reference, hits, strict=True)):
        assert _close(a.score, b.score), f"{label}: score #{pos}: {got}\n  reference: {ref}"
    start = 0
    for end in range(1, len(reference) + 1):
        last = end == len(reference)
        if not last and reference[end - 1].score - reference[end].score <= TIE * max(
            1.0, abs(reference[end].score)
        ):
            continue  # still in the tie group
        if not (last and len(reference) == limit):  # a group the limit cut may differ
            want = {h.id for h in reference[start:end]}
            have = {h.id for h in hits[start:end]}
            assert want == have, f"{label}: positions {start}..{end - 1}: {got}\n  reference: {ref}"
        start = end
    payloads = {h.id: h.payload for h in reference}
    for h in hits:
        if h.id in payloads:
            assert h.payload == payloads[h.id], f"{label}: payload of {h.id} differs"


# -- the backends ---------------------------------------------------------------------------
@dataclass
class Backend:
    kind: str
    store: VectorStore
    prefix: str = ""  # a server is shared: this run's collections and aliases are prefixed

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def cleanup(self) -> None:
        try:
            if self.prefix:
                for c in self.store.list_collections():
                    if c.startswith(self.prefix):
                        self.store.delete_collection(c)
        finally:
            self.store.close()


def open_backend(kind: str, root: Path) -> Backend:
    """The store ``STORES`` builds for ``kind``'s settings (as ``open_store`` would)."""
    spec = KINDS[kind]
    # The store section built here, not read from the environment (a RAG_STORE__* of the
    # developer's must not turn the edge case into a server one).
    settings = load_settings(DEFAULT_CONFIG, {"data_dir": str(root)}).model_copy(
        update={"store": StoreSettings(**spec.store, backend=spec.backend)}
    )
    store = STORES.get(spec.backend)(settings)
    prefix = f"rag_congruence_{uuid.uuid4().hex[:8]}_" if spec.shared else ""
    return Backend(kind, store, prefix=prefix)


def load(backend: Backend, name: str, points: Sequence[StoredPoint], batch: int = 128) -> str:
    collection = backend.name(name)
    backend.store.create_collection(collection, DIM, {"embedding": {"model": "m", "dim": DIM}})
    for i in range(0, len(points), batch):
        backend.store.upsert(collection, points[i : i + batch])
    backend.store.flush(collection)
    return collection


@dataclass
class Corpus:
    points: list[StoredPoint]
    oracle: Oracle
    filters: list[dict[str, Any]]
    dense: list[list[float]]
    sparse: list[SparseVec]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    points = make_points(N_POINTS, seed=20240611)
    filters = random_filters(points, 30, seed=7) + SPECIAL_FILTERS
    return Corpus(
        points, Oracle(points), filters, dense_queries(points, 11), sparse_queries(points, 13)
    )


@pytest.fixture(scope="module")
def loaded_backends(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus
) -> Iterator[Callable[[str], tuple[Backend, str]]]:
    """Each backend, loaded with the corpus once per module (on first use)."""
    made: dict[str, tuple[Backend, str]] = {}

    def get(kind: str) -> tuple[Backend, str]:
        if kind not in made:
            backend = open_backend(kind, tmp_path_factory.mktemp(kind))
            made[kind] = (backend, load(backend, COLLECTION, corpus.points))
        return made[kind]

    yield get
    for backend, _ in made.values():
        backend.cleanup()


@pytest.fixture(params=BACKENDS)
def loaded(
    request: pytest.FixtureRequest, loaded_backends: Callable[[str], tuple[Backend, str]]
) -> tuple[Backend, str]:
    return loaded_backends(request.param)


@pytest.fixture
def reference(loaded_backends: Callable[[str], tuple[Backend, str]]) -> tuple[Backend, str]:
    return loaded_backends(REFERENCE)


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty store of each backend."""
    backend = open_backend(request.param, tmp_path)
    yield backend
    backend.cleanup()


def _cases(corpus: Corpus, queries: Sequence[Any]) -> Iterator[tuple[int, Any, Filter | None, int]]:
    """Each query unfiltered and under one of the filters, at one of the limits."""
    for i, query in enumerate(queries):
        for j, flt in enumerate((None, corpus.filters[i % len(corpus.filters)])):
            yield i, query, flt, LIMITS[(i + j) % len(LIMITS)]
    for k, flt in enumerate(corpus.filters):  # and every filter once, on some query
        yield k, queries[k % len(queries)], flt, 10


# -- the suite --------------------------------------------------------------------------------
def test_count_and_ids_where(
    loaded: tuple[Backend, str], reference: tuple[Backend, str], corpus: Corpus
) -> None:
    (backend, c), (ref, rc) = loaded, reference
    assert backend.store.count(c) == N_POINTS
    for flt in [None, *corpus.filters]:
        want = corpus.oracle.ids(flt)
        label = f"{backend.kind} filter={flt}"
        assert backend.store.count(c, flt) == len(want), label
        if flt is None:
            continue
        got = backend.store.ids_where(c, flt)
        assert len(got) == len(set(got)) and set(got) == set(want), label
        assert got == ref.store.ids_where(rc, flt), f"{label}: not in {REFERENCE}'s order"


def test_scroll_pages_through_every_point_once(
    loaded: tuple[Backend, str], reference: tuple[Backend, str], corpus: Corpus
) -> None:
    (backend, c), (ref, rc) = loaded, reference
    for flt in [None, *corpus.filters[::3]]:
        label = f"{backend.kind} filter={flt}"
        got = list(backend.store.scroll(c, filter=flt, with_vectors=True, batch_size=37))
        ids = [p.id for p in got]
        assert len(ids) == len(set(ids)) and set(ids) == set(corpus.oracle.ids(flt)), label
        assert ids == [p.id for p in ref.store.scroll(rc, filter=flt, batch_size=64)], label
        for p in got:
            src = corpus.oracle.by_id[p.id]
            assert p.payload == src.payload, label
            assert p.dense is not None and np.allclose(p.dense, src.dense or [], atol=1e-6)
            assert p.sparse is not None and src.sparse is not None, label
            assert p.sparse.indices == src.sparse.indices, label
            assert np.allclose(p.sparse.values, src.sparse.values, rtol=1e-6), label


def test_retrieve(loaded: tuple[Backend, str], corpus: Corpus) -> None:
    backend, c = loaded
    rng = np.random.default_rng(3)
    wanted = [corpus.points[int(i)].id for i in rng.choice(N_POINTS, 25, replace=False)]
    missing = [str(uuid.UUID(int=i)) for i in (1, 2)]
    for with_vectors in (False, True):
        got = {p.id: p for p in backend.store.retrieve(c, wanted + missing, with_vectors)}
        assert set(got) == set(wanted), backend.kind
        for pid, p in got.items():
            src = corpus.oracle.by_id[pid]
            assert p.payload == src.payload
            if with_vectors:
                assert p.dense is not None and np.allclose(p.dense, src.dense or [], atol=1e-6)
                assert p.sparse is not None and p.sparse.indices == src.sparse.indices  # type: ignore[union-attr]
            else:
                assert p.dense is None and p.sparse is None
    assert backend.store.retrieve(c, missing) == []


def test_field_values(loaded: tuple[Backend, str], corpus: Corpus) -> None:
    backend, c = loaded
    for key in (*FILTER_KEYS, "chunk_index", "no_such_key"):
        want = {v for p in corpus.points for v in _values(p.payload, key)} - {None}
        assert backend.store.field_values(c, key) == want, f"{backend.kind} {key}"


def test_dense_search_is_exact_and_agrees(
    loaded: tuple[Backend, str], reference: tuple[Backend, str], corpus: Corpus
) -> None:
    (backend, c), (ref, rc) = loaded, reference
    for i, query, flt, limit in _cases(corpus, corpus.dense):
        label = f"{backend.kind} dense query {i} limit={limit} filter={flt}"
        hits = backend.store.search_dense(c, query, limit, flt)
        assert_matches_oracle(
            corpus.oracle.dense_ranking(query, flt), hits, limit, corpus.oracle, label
        )
        if backend.kind != REFERENCE:
            assert_same_hits(ref.store.search_dense(rc, query, limit, flt), hits, limit, label)


def test_sparse_search_is_exact_and_agrees(
    loaded: tuple[Backend, str], reference: tuple[Backend, str], corpus: Corpus
) -> None:
    (backend, c), (ref, rc) = loaded, reference
    for i, query, flt, limit in _cases(corpus, corpus.sparse):
        label = f"{backend.kind} sparse query {i} {query.indices} limit={limit} filter={flt}"
        hits = backend.store.search_sparse(c, query, limit, flt)
        assert_matches_oracle(
            corpus.oracle.sparse_ranking(query, flt), hits, limit, corpus.oracle, label
        )
        if backend.kind != REFERENCE:
            assert_same_hits(ref.store.search_sparse(rc, query, limit, flt), hits, limit, label)
    assert backend.store.search_sparse(c, SparseVec([], []), 5) == []


@pytest.mark.parametrize(
    "bad",
    [{"ocr": [True]}, {"page": [1, "2"]}, {"page": 1.5}, {"doc_id": None}, {"doc_id": b"doc"}],
    ids=["bool-list", "mixed-list", "float", "none", "bytes"],
)
def test_filters_outside_the_language_are_refused(
    loaded: tuple[Backend, str], bad: dict[str, Any]
) -> None:
    """Not silently a different filter (qdrant-edge read ``[True]`` as ``[1]``)."""
    backend, c = loaded
    with pytest.raises(StoreError):
        backend.store.count(c, bad)
    with pytest.raises(StoreError):
        backend.store.search_dense(c, [1.0] * DIM, 3, bad)
    with pytest.raises(StoreError):
        list(backend.store.scroll(c, filter=bad))


def test_writes_deletes_and_overwrites(fresh: Backend) -> None:
    """After upserting twice, deleting points (one by one and a whole document's, found with
    ``ids_where``) and overwriting others, every answer is the oracle's over the live points:
    sparse IDF included, which must not go on counting deleted or overwritten points."""
    store = fresh.store
    points = make_points(240, seed=5)
    c = load(fresh, "writes", points)
    store.upsert(c, points[:50])  # the same ids again: no duplicates
    rng = np.random.default_rng(8)
    live = {p.id: p for p in points}
    gone = [points[int(i)].id for i in rng.choice(len(points), 60, replace=False)]
    store.delete(c, [*gone, str(uuid.UUID(int=3))])  # an unknown id is no error
    for pid in gone:
        del live[pid]
    doc = next(iter(live.values())).payload["doc_id"]
    doc_ids = store.ids_where(c, {"doc_id": doc})
    assert sorted(doc_ids) == sorted(pid for pid, p in live.items() if p.payload["doc_id"] == doc)
    store.delete(c, doc_ids)
    for pid in doc_ids:
        del live[pid]
    changed = make_points(30, seed=6)  # new vectors and payloads under existing ids
    for old, new in zip(list(live)[:30], changed, strict=True):
        new.id = old
        live[old] = new
    store.upsert(c, changed)
    store.flush(c)

    oracle = Oracle(list(live.values()))
    assert store.count(c) == len(live)
    filters = [None, *random_filters(oracle.points, 12, seed=9)]
    for flt in filters:
        assert store.count(c, flt) == len(oracle.ids(flt)), f"{fresh.kind} {flt}"
        assert sorted(p.id for p in store.scroll(c, filter=flt, batch_size=50)) == sorted(
            oracle.ids(flt)
        )
    for i, query in enumerate(dense_queries(oracle.points, 21)[::2]):
        flt = filters[i % len(filters)]
        label = f"{fresh.kind} after writes: dense query {i} filter={flt}"
        hits = store.search_dense(c, query, 10, flt)
        assert_matches_oracle(oracle.dense_ranking(query, flt), hits, 10, oracle, label)
    for i, sq in enumerate(sparse_queries(oracle.points, 23)):
        flt = filters[i % len(filters)]
        label = f"{fresh.kind} after writes: sparse query {i} {sq.indices} filter={flt}"
        hits = store.search_sparse(c, sq, 10, flt)
        assert_matches_oracle(oracle.sparse_ranking(sq, flt), hits, 10, oracle, label)
    assert store.retrieve(c, gone[:5]) == []


def test_set_payload_relabels_in_place(fresh: Backend) -> None:
    """``set_payload`` (how a permission change relabels a document) sets the fields on every
    point the filter matches and nothing else: other fields, other points and the vectors stay,
    and filtered search, counts and scrolls see the new labels at once."""
    store = fresh.store
    points = make_points(200, seed=31)
    c = load(fresh, "relabel", points)
    docs = sorted({p.payload["doc_id"] for p in points})[:4]
    store.set_payload(c, {"groups": ["board"]}, {"doc_id": docs})
    store.flush(c)
    live = []
    for p in points:
        payload = dict(p.payload)
        if payload["doc_id"] in docs:
            payload["groups"] = ["board"]
        live.append(StoredPoint(p.id, payload, p.dense, p.sparse))
    oracle = Oracle(live)
    stored = {p.id: p for p in store.scroll(c, with_vectors=True)}
    for p in live:
        assert stored[p.id].payload == p.payload, f"{fresh.kind} {p.id}"
        assert np.allclose(stored[p.id].dense or [], p.dense or [], atol=1e-6)
    for flt in [
        {"groups": "board"},
        {"groups": ["all", "board"], "tenant": "acme"},
        {"groups": "hr"},
    ]:
        assert sorted(store.ids_where(c, flt)) == sorted(oracle.ids(flt)), f"{fresh.kind} {flt}"
        assert store.count(c, flt) == len(oracle.ids(flt))
        query = live[0].dense or []
        label = f"{fresh.kind} relabelled: dense filter={flt}"
        assert_matches_oracle(
            oracle.dense_ranking(query, flt),
            store.search_dense(c, query, 10, flt),
            10,
            oracle,
            label,
        )


def test_collection_metadata_and_alias(fresh: Backend) -> None:
    store, n = fresh.store, fresh.name
    store.create_collection(n("kb_v1"), DIM, {"embedding": {"model": "m", "dimension": DIM}})
    assert n("kb_v1") in store.list_collections()
    assert store.collection_metadata(n("kb_v1"))["embedding"] == {"model": "m", "dimension": DIM}
    assert store.get_alias(n("kb")) is None
    store.switch_alias(n("kb"), n("kb_v1"))
    assert store.get_alias(n("kb")) == n("kb_v1")
    assert store.resolve(n("kb")) == n("kb_v1")
    store.create_collection(n("kb_v2"), DIM, {})
    store.switch_alias(n("kb"), n("kb_v2"))
    assert store.get_alias(n("kb")) == n("kb_v2")
    with pytest.raises(StoreError):
        store.create_collection(n("kb_v2"), DIM, {})
    with pytest.raises(StoreError):
        store.switch_alias(n("kb"), n("missing"))
    store.delete_collection(n("kb_v1"))
    mine = [c for c in store.list_collections() if c.startswith(fresh.prefix)]
    assert mine == [n("kb_v2")]
    with pytest.raises(StoreError):
        store.collection_metadata(n("kb_v1"))


def test_sparse_search_uses_idf(fresh: Backend) -> None:
    """A rare term must outrank a common one: IDF is applied by the engine."""
    store = fresh.store
    c = fresh.name("idf")
    store.create_collection(c, DIM, {})
    common, rare = 1, 2
    pts = [
        StoredPoint(
            id=str(uuid.UUID(int=i + 1)),
            payload={"i": i},
            dense=[1.0] * DIM,
            sparse=SparseVec([common], [1.0]),
        )
        for i in range(10)
    ]
    pts.append(
        StoredPoint(
            id=str(uuid.UUID(int=99)),
            payload={"i": 99},
            dense=[1.0] * DIM,
            sparse=SparseVec([rare], [1.0]),
        )
    )
    store.upsert(c, pts)
    hits = store.search_sparse(c, SparseVec([common, rare], [1.0, 1.0]), 3)
    assert hits[0].payload["i"] == 99
    assert store.search_sparse(c, SparseVec([], []), 3) == []


# -- HNSW (edge: the only backend whose index rag builds itself) ------------------------------
N_HNSW = 3000


def _recall(
    store: VectorStore,
    c: str,
    oracle: Oracle,
    queries: Sequence[Sequence[float]],
    flt: Filter | None,
    full: bool = True,
) -> float:
    """Recall@10 of ``store``'s search against brute force; every hit must match ``flt`` and
    carry its true score (HNSW may miss points, never invent them). ``full``: a whole page of
    hits whenever ten points match (a graph walked under a narrow filter may find fewer)."""
    found = total = 0
    for query in queries:
        ranking = oracle.dense_ranking(query, flt)
        true_score = dict(ranking)
        truth = {pid for pid, _ in ranking[:10]}
        hits = store.search_dense(c, query, 10, flt)
        assert len(hits) == min(10, len(ranking)) if full else len(hits) <= 10
        for h in hits:
            assert h.id in true_score, f"{h.id} does not match {flt}"
            assert _close(h.score, true_score[h.id])
        found += len(truth & {h.id for h in hits})
        total += len(truth)
    return found / total if total else 1.0  # a filter nothing matches: nothing to miss


@functools.cache
def _hnsw_case() -> tuple[list[StoredPoint], Oracle, list[list[float]], list[dict[str, Any]]]:
    points = make_points(N_HNSW, seed=99)
    oracle = Oracle(points)
    rng = np.random.default_rng(100)
    queries = rng.normal(size=(150, DIM))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    filters: list[dict[str, Any]] = [
        {"tenant": "acme"},
        {"tenant": ["globex", "initech"]},
        *random_filters(points, 8, 101),
    ]
    return points, oracle, queries.tolist(), filters


def test_optimize_builds_hnsw_with_high_recall(tmp_path: Path) -> None:
    """``optimize()`` past the (lowered) indexing threshold builds an HNSW index; its answers
    stay within 5% of brute force @10, filtered ones match the filter."""
    points, oracle, queries, filters = _hnsw_case()
    store = EdgeStore(tmp_path / "edge", indexing_threshold_kb=16)  # 3000 x 32 floats: 375 KB
    c = "c"
    store.create_collection(c, DIM, {})
    for i in range(0, len(points), 500):
        store.upsert(c, points[i : i + 500])
    # Sparse vectors sit in an inverted index from the start; the dense ones are searched by
    # brute force until optimize() builds their HNSW graph.
    before = store._shard(c).info().indexed_vectors_count
    assert _recall(store, c, oracle, queries[:20], None) == 1.0
    assert store.optimize(c) is True
    assert store._shard(c).info().indexed_vectors_count - before == N_HNSW
    assert _recall(store, c, oracle, queries, None) >= 0.95
    for flt in filters:
        assert _recall(store, c, oracle, queries[:30], flt) >= 0.95, flt
    store.close()


class _GraphForFilters(EdgeStore):
    """Edge with HNSW's full-scan threshold at 1 KB: Qdrant's planner answers a filter that
    matches few points by scanning them, and only past this threshold walks the graph; here
    every filter matching more than 8 points goes through the graph, filtered on the way."""

    def _config(self, dimension: int) -> Any:
        import qdrant_edge as q

        base = super()._config(dimension)
        return q.EdgeConfig(
            vectors=base.vectors,
            sparse_vectors=base.sparse_vectors,
            optimizers=base.optimizers,
            hnsw_config=q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1),
        )


def test_filtered_hnsw_search_returns_only_matching_points(tmp_path: Path) -> None:
    points, oracle, queries, filters = _hnsw_case()
    store = _GraphForFilters(tmp_path / "edge", indexing_threshold_kb=16)
    store.create_collection("c", DIM, {})
    store.upsert("c", points)
    assert store.optimize("c") is True
    for flt in filters:
        _recall(store, "c", oracle, queries[:30], flt, full=False)  # every hit matches
    # A keyword-indexed field (tenant) gets its own graph links: recall holds under its filter.
    assert _recall(store, "c", oracle, queries, {"tenant": "acme"}) >= 0.9
    store.close()
