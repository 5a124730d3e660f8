"""Rerank stage: re-score the best fused candidates; the rest keep their order behind them.

Backends (``rerank.backend``):

- ``none``: the retrieval order as it is.
- ``cross-encoder``: a sentence-transformers ``CrossEncoder`` loaded from ``rerank.model_path``
  (a local folder; nothing is downloaded), scoring (query, chunk text) pairs.
- ``embedding``: no extra model. Each candidate is re-scored by the index's own embedder at
  sentence level — the best cosine between the query and one of the chunk's sentences —
  and blended with the normalised retrieval score:
  ``(1 - weight) * retrieval + weight * sentence``. A chunk's vector averages all its
  sentences; the one sentence that answers is diluted by the rest, and this recovers it.

Which one is the default is decided by measurement on SciFact (``benchmarks/fusion_rerank.py``).

Each is a :data:`RERANKERS` entry (a factory ``(RerankSettings, Embedder | None) -> Reranker``);
another is a :class:`Reranker` subclass (``score`` one float per hit) and one call::

    RERANKERS.register("mine", lambda settings, embedder: MyReranker(settings))
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.contracts import Reranker
from rag.core.config import RerankSettings
from rag.core.errors import RerankError
from rag.core.registry import Registry
from rag.store import Hit

if TYPE_CHECKING:
    from rag.indexing.embedding import Embedder

__all__ = [
    "RERANKERS",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "NoReranker",
    "RerankError",
    "Reranker",
    "RerankerFactory",
    "build_reranker",
]

log = logging.getLogger(__name__)


def _minmax(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    return np.ones_like(arr) if hi - lo < 1e-12 else (arr - lo) / (hi - lo)


class NoReranker(Reranker):
    name = "none"

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        return list(hits[:top_k])

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        return [h.score for h in hits]


class CrossEncoderReranker(Reranker):
    name = "cross-encoder"

    def __init__(self, settings: RerankSettings, threads: int | None = None):
        super().__init__(settings)
        if not settings.model_path:
            raise RerankError(
                "rerank.backend is cross-encoder but rerank.model_path is not set: point it at a local CrossEncoder folder"
            )
        self.model_path = Path(settings.model_path).expanduser()
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            if not self.model_path.is_dir():
                raise RerankError(
                    f"rerank.model_path {self.model_path} is not a folder: give a local sentence-transformers "
                    "CrossEncoder (config.json, weights, tokenizer); hub names are not downloaded"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from sentence_transformers import CrossEncoder

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = CrossEncoder(str(self.model_path), device="cpu", local_files_only=True)

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        self.warm_up()
        pairs = [(query, str(h.payload.get("text", ""))) for h in hits]
        scores = self._model.predict(
            pairs,
            batch_size=self.settings.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [
            float(s) for s in np.asarray(scores, dtype=np.float64).reshape(len(hits), -1)[:, -1]
        ]


class EmbeddingReranker(Reranker):
    name = "embedding"

    def __init__(self, settings: RerankSettings, embedder: Embedder):
        super().__init__(settings)
        self.embedder = embedder

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        from rag.verification.citations import split_sentences

        owners: list[int] = []
        texts: list[str] = [query]
        for i, h in enumerate(hits):
            sentences = split_sentences(str(h.payload.get("text", ""))) or [
                str(h.payload.get("text", ""))
            ]
            texts.extend(sentences)
            owners.extend([i] * len(sentences))
        vecs = self.embedder.embed(texts)
        sims = vecs[1:] @ vecs[0]
        best = np.full(len(hits), -1.0)
        np.maximum.at(best, np.asarray(owners, dtype=np.int64), sims.astype(np.float64))
        w = self.settings.weight
        return list((1 - w) * _minmax([h.score for h in hits]) + w * _minmax(best.tolist()))


# A ``rerank.backend`` name -> a factory ``(settings, embedder)``; ``embedder`` is the index's
# (None where there is no index). Built in: none, cross-encoder, embedding.
RerankerFactory = Callable[[RerankSettings, "Embedder | None"], Reranker]

RERANKERS: Registry[RerankerFactory] = Registry("reranker", "rerank.backend")


def build_reranker(settings: RerankSettings, embedder: Embedder | None = None) -> Reranker:
    """The reranker ``rerank.backend`` names; ConfigError naming the key and the registered
    names when there is none."""
    return RERANKERS.get(settings.backend)(settings, embedder)


def _none(settings: RerankSettings, embedder: Embedder | None) -> Reranker:
    return NoReranker(settings)


def _cross_encoder(settings: RerankSettings, embedder: Embedder | None) -> Reranker:
    return CrossEncoderReranker(settings, threads=embedder.settings.threads if embedder else None)


def _embedding(settings: RerankSettings, embedder: Embedder | None) -> Reranker:
    if embedder is None:
        raise RerankError("rerank.backend embedding needs the index's embedder")
    return EmbeddingReranker(settings, embedder)


RERANKERS.register("none", _none)
RERANKERS.register("cross-encoder", _cross_encoder)
RERANKERS.register("embedding", _embedding)
