"""placeholder"""
from __future__ import annotations
from typing import Any
def sweep(text: str, spans: Any = None) -> list[Any]:
    return []
