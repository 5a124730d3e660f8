"""`rag query --filter key=value`: how the repeatable option becomes the pipeline's filters."""

from __future__ import annotations

import pytest

from app.cli.query import parse_filters


def test_parse_filters() -> None:
    assert parse_filters(["source=a.md", "source=b.md", "page=2", "x=true"]) == {
        "source": ["a.md", "b.md"],
        "page": 2,
        "x": True,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_filters(["=v"])
