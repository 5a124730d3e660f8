"""Pack stage: ranked chunks → numbered passages that fit the generator's token budget.

Budget = generator context window − rendered prompt (without the context) − reserved answer
tokens, all counted with the generator's own tokenizer (``count_tokens``).

- Chunks of one document that overlap are merged into one passage (the chunker keeps text
  verbatim, so the overlap is cut exactly); the passage takes the best rank of its parts. Duplicate texts (the same chunk in two files) are dropped.
- Passages go in rank order; one that does not fit is skipped and smaller later ones may
  still fit. When not even the first fits, it is cut to fit, so the context is never empty
  when anything was retrieved (as long as the budget holds a passage header and a word).
- The rendered context is counted as a whole at the end (token merges at the joins can
  differ from the sum of the parts) and trimmed until it is within budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from rag.contracts import PackedContext, Passage
from rag.core.errors import PackingError
from rag.guards.injection import strip_spans
from rag.store import Hit

__all__ = ["PackedContext", "Packer", "PackingError", "Passage", "passages_from_hits"]

TokenCounter = Callable[[str], int]
_SEPARATOR = "\n\n"


def _passage_from_hit(hit: Hit, rank: int) -> Passage:
    p = hit.payload
    text = str(p.get("text") or "")
    start = int(p.get("start") or 0)
    raw_end = p.get("end")
    end = int(raw_end) if raw_end is not None else start + len(text)
    return Passage(
        chunk_ids=[hit.id],
        doc_id=str(p.get("doc_id") or p.get("source") or hit.id),
        source=str(p.get("source") or ""),
        title=p.get("title") or None,
        section=[str(s) for s in (p.get("section") or [])],
        page=p.get("page"),
        start=start,
        end=end,
        text=text,
        score=float(hit.score),
        rank=rank,
        text_hashes={str(p.get("text_hash") or hash(text))},
        # Set by the injection guard when it passes a flagged chunk on (injection.flagged: fence).
        flagged=[str(r) for r in p.get("injection_fenced") or []],
        suspect=[text[s:e] for s, e in p.get("injection_suspect") or []],
        # The attack spans the guard takes out (injection.flagged: exclude), as document offsets.
        cut=[(start + int(s), start + int(e)) for s, e in p.get("injection_cut") or []],
    )


def _without_cuts(passage: Passage) -> Passage:
    """The passage with its attack spans taken out of the text (kept in ``suspect``: the
    output check refuses a sentence that repeats them); its range in the document stays."""
    if not passage.cut:
        return passage
    spans = [(s - passage.start, e - passage.start) for s, e in passage.cut]
    text, removed = strip_spans(passage.text, spans)
    return replace(passage, text=text, suspect=passage.suspect + removed, cut=[])


def _merge(a: Passage, b: Passage) -> Passage | None:
    """``a`` and ``b`` as one passage when they overlap or touch, else None."""
    first, second = (a, b) if a.start <= b.start else (b, a)
    if second.start > first.end:
        return None  # a gap: its characters are not known here, so no exact merge
    if second.start == first.end and first.section != second.section:
        return None  # neighbours across a heading stay apart: each keeps its own section
    if second.end <= first.end:  # contained
        text, end = first.text, first.end
    else:
        text = first.text + second.text[first.end - second.start :]
        end = second.end
    best = a if a.rank <= b.rank else b
    return replace(
        best,
        chunk_ids=a.chunk_ids + b.chunk_ids,
        start=first.start,
        end=end,
        text=text,
        page=first.page,
        section=first.section,
        score=max(a.score, b.score),
        rank=min(a.rank, b.rank),
        text_hashes=a.text_hashes | b.text_hashes,
        flagged=list(dict.fromkeys(a.flagged + b.flagged)),
        suspect=list(dict.fromkeys(a.suspect + b.suspect)),
        cut=sorted(set(a.cut + b.cut)),
    )


def passages_from_hits(hits: Sequence[Hit]) -> list[Passage]:
    """Dedupe and merge ranked hits into passages, in rank order (not yet numbered or budgeted)."""
    passages: list[Passage] = []
    seen_hashes: set[str] = set()
    for rank, hit in enumerate(hits):
        cand = _passage_from_hit(hit, rank)
        if cand.text_hashes & seen_hashes or not cand.text.strip():
            continue
        seen_hashes |= cand.text_hashes
        # Merge with every passage of the same document it touches (it may bridge two).
        keep: list[Passage] = []
        for p in passages:
            merged = _merge(p, cand) if p.doc_id == cand.doc_id else None
            if merged is None:
                keep.append(p)
            else:
                cand = merged
        keep.append(cand)
        passages = sorted(keep, key=lambda p: p.rank)
    # Attack spans come out only now: merging needs each chunk's text as the document has it.
    return [_without_cuts(p) for p in passages]


class Packer:
    def __init__(self, count_tokens: TokenCounter):
        self.count_tokens = count_tokens

    def _fits(self, passage: Passage, budget: int) -> int | None:
        cost = self.count_tokens(passage.render())
        return cost if cost <= budget else None

    def _cut_to_fit(self, passage: Passage, budget: int) -> Passage | None:
        """The longest prefix of the passage (ending at a word) that fits in ``budget``."""
        lo, hi = 0, len(passage.text)
        best: Passage | None = None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cut = passage.text[:mid]
            space = cut.rfind(" ")
            if space > 0 and mid < len(passage.text):
                cut = cut[:space]
            trial = replace(passage, text=cut.rstrip(), end=passage.start + len(cut.rstrip()))
            if trial.text and self.count_tokens(trial.render()) <= budget:
                best, lo = trial, mid
            else:
                hi = mid - 1
        return best

    def pack(self, hits: Sequence[Hit] | Sequence[Passage], budget: int) -> PackedContext:
        """Number and select passages so the rendered context is at most ``budget`` tokens."""
        candidates = (
            [replace(p) for p in hits if isinstance(p, Passage)]
            if hits and isinstance(hits[0], Passage)
            else passages_from_hits([h for h in hits if isinstance(h, Hit)])
        )
        chosen: list[Passage] = []
        used = 0
        sep_cost = self.count_tokens(_SEPARATOR) if candidates else 0
        for cand in candidates:
            cand = replace(cand, n=len(chosen) + 1)
            room = budget - used - (sep_cost if chosen else 0)
            if room <= 0:
                break
            cost = self._fits(cand, room)
            if cost is None and not chosen:
                cut = self._cut_to_fit(cand, room)
                if cut is None:
                    continue  # not even a word of it fits; a later, shorter header may
                cand, cost = cut, self.count_tokens(cut.render())
            if cost is None:
                continue
            chosen.append(cand)
            used += cost + (sep_cost if len(chosen) > 1 else 0)
        text = _SEPARATOR.join(p.render() for p in chosen)
        tokens = self.count_tokens(text) if text else 0
        while tokens > budget and chosen:
            # Join effects pushed it over: give up the last passage (or cut the only one).
            if len(chosen) > 1:
                chosen.pop()
            else:
                cut = self._cut_to_fit(chosen[0], budget - (tokens - budget) - 1)
                if cut is None:
                    chosen.pop()
                else:
                    chosen[0] = cut
            text = _SEPARATOR.join(p.render() for p in chosen)
            tokens = self.count_tokens(text) if text else 0
        if candidates and not chosen:
            raise PackingError(
                f"the context budget ({budget} tokens) cannot hold one passage header and a word: "
                "raise the generator's context_window, or lower generation.max_answer_tokens "
                "or the prompt's model.max_tokens"
            )
        return PackedContext(
            passages=chosen,
            text=text,
            tokens=tokens,
            budget=budget,
            dropped=len(candidates) - len(chosen),
        )
