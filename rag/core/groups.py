"""Group names, as permissions use them (rag/core/access.py) and as config declares them
(``access.rules``, ``access.cli_groups``): apart from both so that config can check its groups
without importing what reads them."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["GROUP_RE", "check_groups"]

GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_groups(groups: Iterable[str], what: str) -> tuple[str, ...]:
    """Sorted, distinct group names; ValueError naming ``what`` for a bad one."""
    out = sorted({str(g).strip() for g in groups} - {""})
    for g in out:
        if not GROUP_RE.match(g):
            raise ValueError(f"{what}: group {g!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return tuple(out)
