"""What the Qdrant backends share: filters and points to and from Qdrant's shapes.

Qdrant Edge (``qdrant_edge``) and ``qdrant-client`` spell the same objects with different
classes and constructors; each backend passes its own constructors in, so the mapping itself
(a key that must match one value or any of several, the named dense and sparse slots, the
payload) is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag.store.base import DENSE, SPARSE, Filter, Hit, SparseVec, StoredPoint, StoreError

__all__ = ["build_filter", "point_vector", "scroll_points", "to_hit", "to_point"]


# A match-any of at most this many values is sent as a `should` of exact matches: the same
# points, but Qdrant plans it better. A reader's filter (rag.core.access.read_filter: "all"
# or one of its groups) took 1.5x as long as a tenant filter at 10k chunks as a MatchAny,
# 1.15x as a should (benchmarks/permissions.py). Longer lists (a sync's 256 doc ids) stay
# one MatchAny.
SHOULD_MAX = 8


def build_filter(
    flt: Filter | None,
    match_value: Callable[[str, str | int | bool], Any],
    match_any: Callable[[str, list[Any]], Any],
    combine: Callable[[list[Any]], Any],
    either: Callable[[list[Any]], Any] | None = None,
) -> Any:
    """The backend's filter for ``flt`` (every key must match), or None when there is none.

    ``match_value(key, value)`` makes an exact-match condition, ``match_any(key, values)`` a
    match-any one, ``combine(conditions)`` the filter that needs all of them and ``either``
    (optional) the one that needs any: a short match-any becomes ``either`` of exact
    matches (``SHOULD_MAX``). A value the
    filter language has no condition for (a float, a list of booleans or of mixed types) is a
    :class:`StoreError` on every backend, not a filter that quietly matches something else."""
    if not flt:
        return None
    conditions = []
    for key, value in flt.items():
        if isinstance(value, (str, int, bool)):
            conditions.append(match_value(key, value))
            continue
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else None
        if values is None or not (
            all(isinstance(v, str) for v in values)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        ):
            raise StoreError(
                f"filter on '{key}': {value!r} is not a string, integer or boolean, nor a list of "
                "strings or of integers to match any of"
            )
        if either is not None and 1 < len(values) <= SHOULD_MAX:
            conditions.append(either([match_value(key, v) for v in values]))
        else:
            conditions.append(match_any(key, values))
    return combine(conditions)


def point_vector(
    point: StoredPoint, sparse_vector: Callable[[list[int], list[float]], Any]
) -> dict[str, Any]:
    """The named vectors of ``point``: dense always, sparse when it has any terms."""
    vector: dict[str, Any] = {DENSE: list(map(float, point.dense or []))}
    if point.sparse is not None and point.sparse.indices:
        vector[SPARSE] = sparse_vector(point.sparse.indices, point.sparse.values)
    return vector


def to_point(rec: Any, with_vectors: bool) -> StoredPoint:
    """A retrieved or scrolled record (either backend's) as a :class:`StoredPoint`."""
    dense = sparse = None
    if with_vectors and rec.vector:
        vec = rec.vector
        if DENSE in vec:
            dense = list(vec[DENSE])
        if SPARSE in vec:
            sparse = SparseVec(list(vec[SPARSE].indices), list(vec[SPARSE].values))
    return StoredPoint(id=str(rec.id), payload=dict(rec.payload or {}), dense=dense, sparse=sparse)


def scroll_points(
    page: Callable[[Any], tuple[Sequence[Any], Any]], with_vectors: bool
) -> Iterator[StoredPoint]:
    """Every point, a page at a time: ``page(offset)`` returns one page of records and the
    offset of the next (None after the last); the first call gets None."""
    offset: Any = None
    while True:
        records, offset = page(offset)
        for rec in records:
            yield to_point(rec, with_vectors)
        if offset is None:
            return


def to_hit(rec: Any) -> Hit:
    """A scored search result (either backend's) as a :class:`Hit`."""
    return Hit(id=str(rec.id), score=float(rec.score), payload=dict(rec.payload or {}))
