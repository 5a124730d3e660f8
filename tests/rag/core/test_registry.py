"""rag.core.registry.Registry: the one table type behind parsers, stores, generators, rerankers."""

from __future__ import annotations

import pytest

from rag.core.errors import ConfigError, RagError
from rag.core.registry import Registry


def _table() -> Registry[int]:
    table: Registry[int] = Registry("store backend", "store.backend")
    table.register("edge", 1)
    table.register("qdrant", 2)
    return table


def test_lookup_names_and_membership_in_registration_order() -> None:
    table = _table()
    assert table.get("qdrant") == 2
    assert table.names() == ("edge", "qdrant") == tuple(table)
    assert "edge" in table and "pinecone" not in table and len(table) == 2
    assert table.items() == [("edge", 1), ("qdrant", 2)]


def test_unknown_name_names_the_kind_the_key_and_what_is_registered() -> None:
    table = _table()
    with pytest.raises(ConfigError) as err:
        table.get("foo")
    assert (
        str(err.value) == "unknown store backend 'foo' (store.backend): registered are edge, qdrant"
    )
    assert isinstance(err.value, RagError) and isinstance(err.value, ValueError)
    # Another setting naming the same table (costs.prices names generators too).
    with pytest.raises(ConfigError, match=r"\(costs\.prices\)"):
        table.get("foo", key="costs.prices")


def test_a_taken_name_is_refused_unless_replaced() -> None:
    table = _table()
    with pytest.raises(
        ConfigError, match=r"store backend .edge. is already registered.*replace=True"
    ):
        table.register("edge", 3)
    assert table.get("edge") == 1  # the refused one changed nothing
    assert table.register("edge", 3, replace=True) == 3
    assert table.get("edge") == 3 and table.names() == ("edge", "qdrant")


def test_unregister_returns_the_item_and_forgets_the_name() -> None:
    table = _table()
    assert table.unregister("qdrant") == 2
    assert table.names() == ("edge",)
    with pytest.raises(ConfigError, match="registered are edge"):
        table.get("qdrant")
    with pytest.raises(ConfigError, match="unknown store backend 'qdrant'"):
        table.unregister("qdrant")


@pytest.mark.parametrize("name", ["", "  ", " edge", "edge\n"])
def test_blank_or_padded_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not usable"):
        _table().register(name, 9)
