"""A found value's place in a text: what the detector returns and ``mentions`` extends (its own
module, so neither imports the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Span"]


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }
