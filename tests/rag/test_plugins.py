"""rag.plugins.check_settings: every setting that names a plug-in, checked against its table."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.plugins import GENERATORS, PARSERS, RERANKERS, STORES, check_settings


def test_the_default_settings_pass(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings()
    assert check_settings(settings) is settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"store": {"backend": "pinecone"}},
            "unknown store backend 'pinecone' (store.backend): registered are edge, qdrant",
        ),
        (
            {"generation": {"chain": ["extractive", "claude"]}},
            "unknown generator 'claude' (generation.chain): registered are openai, local, extractive",
        ),
        (
            {"costs": {"prices": {"gpt": {"input_per_million": 1.0}}}},
            "unknown generator 'gpt' (costs.prices): registered are openai, local, extractive",
        ),
        (
            {"rerank": {"backend": "colbert"}},
            "unknown reranker 'colbert' (rerank.backend): registered are none, cross-encoder, embedding",
        ),
        (
            {"ingestion": {"extensions": [".md", ".rst"]}},
            "ingestion.extensions: no registered parser reads '.rst': registered parsers read "
            ".md, .markdown, .txt, .html, .htm, .pdf, .docx",
        ),
    ],
)
def test_an_unknown_name_fails_naming_the_key_and_the_registered_names(
    tmp_settings: Callable[..., Settings], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_settings(tmp_settings(**overrides))
    assert str(err.value).startswith(message)


def test_every_unknown_name_is_listed_at_once(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(store={"backend": "pinecone"}, rerank={"backend": "colbert"})
    with pytest.raises(ConfigError) as err:
        check_settings(settings)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "  - unknown store backend 'pinecone'",
        "  - unknown reranker 'colbert'",
    ]


@pytest.fixture()
def registered() -> Iterator[None]:
    """One of each, registered from outside the library; removed afterwards."""
    from rag.indexing.parsing import PlainTextParser

    class Rst(PlainTextParser):
        name, suffixes = "rst", (".rst",)

    PARSERS.register("rst", Rst())
    STORES.register("mine", STORES.get("edge"))
    GENERATORS.register("canned", GENERATORS.get("extractive"))
    RERANKERS.register("mine", RERANKERS.get("none"))
    yield
    PARSERS.unregister("rst")
    STORES.unregister("mine")
    GENERATORS.unregister("canned")
    RERANKERS.unregister("mine")


def test_registered_names_pass(registered: None, tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(
        store={"backend": "mine"},
        rerank={"backend": "mine"},
        generation={"chain": ["canned", "extractive"]},
        costs={"prices": {"canned": {"output_per_million": 2.0}}},
        ingestion={"extensions": [".rst", ".md"]},
    )
    assert check_settings(settings) is settings
