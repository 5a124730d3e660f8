"""No LLM: the answer is the context's sentences that best answer the question, each cited.

A sentence's score is its embedding similarity to the question (the index's embedder) plus
a small bonus for sharing the question's rarer words; the best ``max_sentences`` at or above
``min_score`` are returned in rank order, each with its passage marker. Nothing above the
threshold: nothing is said, and the pipeline abstains. The threshold is calibrated on SQuAD
2.0 (answerable vs unanswerable questions) by ``benchmarks/calibrate_support.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rag.citations import SupportScorer, content_words
from rag.generate.base import GenerationRequest, Generator, TokenCounter, Usage

__all__ = ["ExtractiveGenerator", "rank_sentences"]

# Lexical overlap weight next to the cosine (calibrated with the threshold).
LEXICAL_WEIGHT = 0.3
_MIN_WORDS = 4  # shorter "sentences" (headings, list bullets) rarely answer anything


def rank_sentences(
    question: str, request: GenerationRequest, scorer: SupportScorer
) -> list[tuple[float, int, str]]:
    """(score, passage number, sentence) for every sentence of the context, best first."""
    candidates: list[tuple[int, str]] = []
    for passage in request.context.passages:
        for sentence in scorer.passage_sentences(passage):
            if len(sentence.split()) >= _MIN_WORDS:
                candidates.append((passage.n, sentence))
    if not candidates:
        return []
    vecs = scorer.vectors([question, *(s for _, s in candidates)])
    cosines = vecs[1:] @ vecs[0] if vecs.shape[1] > 1 else np.zeros(len(candidates))
    qwords = set(content_words(question))
    ranked = []
    for (n, sentence), cos in zip(candidates, cosines, strict=False):
        words = set(content_words(sentence))
        overlap = len(qwords & words) / len(qwords) if qwords else 0.0
        ranked.append((float(cos) + LEXICAL_WEIGHT * overlap, n, sentence))
    ranked.sort(key=lambda t: -t[0])
    return ranked


class ExtractiveGenerator(Generator):
    name = "extractive"
    uses_llm = False

    def __init__(
        self,
        scorer: SupportScorer,
        max_sentences: int = 2,
        min_score: float = 0.45,
        window: int = 8192,
    ):
        self.scorer = scorer
        self.max_sentences = max_sentences
        self.min_score = min_score
        self._window = window
        self._tokens = TokenCounter(lambda text: text.split())

    @property
    def context_window(self) -> int:
        return self._window

    @property
    def tokens(self) -> TokenCounter:
        return self._tokens

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        ranked = rank_sentences(request.question, request, self.scorer)
        picked = [r for r in ranked if r[0] >= self.min_score][: self.max_sentences]
        text = ""
        for i, (_, n, sentence) in enumerate(picked):
            request.check_deadline(self.name)
            body = sentence.rstrip()
            end = body[-1] if body and body[-1] in ".!?" else "."
            body = body[:-1] if body and body[-1] in ".!?" else body
            piece = f"{' ' if i else ''}{body} [{n}]{end}"
            text += piece
            yield piece
        yield Usage(0, 0)
