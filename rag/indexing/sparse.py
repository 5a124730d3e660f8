"""Local BM25 term vectors for the sparse slot (no downloads): Qdrant's own BM25 tokenizer.

Documents get saturated, length-normalised term frequencies; queries get term indicators.
IDF is applied by the engine (the sparse slot is created with the IDF modifier), so document
vectors never go stale when the corpus changes.
"""

from __future__ import annotations

import threading
from typing import Any

from rag.store.base import SparseVec

__all__ = ["Bm25Encoder"]


class Bm25Encoder:
    def __init__(
        self, k: float = 1.2, b: float = 0.75, avg_len: float = 150.0, language: str = "english"
    ):
        self.k, self.b, self.avg_len, self.language = k, b, avg_len, language
        self._model: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import qdrant_edge as q

                    self._model = q.Bm25(
                        q.Bm25Config(
                            k=self.k, b=self.b, avg_len=self.avg_len, language=self.language
                        )
                    )
        return self._model

    def embed_document(self, text: str) -> SparseVec:
        v = self._get().embed_document(text)
        return SparseVec(list(v.indices), list(v.values))

    def embed_query(self, text: str) -> SparseVec:
        v = self._get().embed_query(text)
        return SparseVec(list(v.indices), list(v.values))
