"""The CLI checks every plug-in name against its table right after loading the settings
(rag.plugins.check_settings): an unknown one exits 2 naming the key, before anything is opened
or written; a name registered in the process (a custom entry script) is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import app
from rag.indexing.embedding import Embedder
from rag.indexing.parsing import PARSERS, PlainTextParser


@pytest.fixture()
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("RAG_CONFIG", "RAG_STORE__BACKEND", "RAG_GENERATION__CHAIN"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (
            "ingest",
            {"RAG_STORE__BACKEND": "pinecone"},
            "error: unknown store backend 'pinecone' (store.backend): registered are edge, qdrant",
        ),
        (
            "status",
            {"RAG_GENERATION__CHAIN": '["extractive", "claude"]'},
            "error: unknown generator 'claude' (generation.chain): registered are openai, local, "
            "extractive",
        ),
        (
            "ingest",
            {"RAG_RERANK__BACKEND": "colbert"},
            "error: unknown reranker 'colbert' (rerank.backend): registered are none, "
            "cross-encoder, embedding",
        ),
    ],
)
def test_an_unknown_plugin_name_exits_2_before_anything_is_opened(
    runner: CliRunner, tmp_path: Path, command: str, env: dict[str, str], message: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.\n")
    data = tmp_path / "data"
    args = ["--data-dir", str(data), command, *([str(docs)] if command == "ingest" else [])]
    out = runner.invoke(app, args, env=env)
    assert out.exit_code == 2, out.output
    assert out.stderr.strip() == message
    assert not data.exists()  # no store, manifest or model touched


class Rst(PlainTextParser):
    name, suffixes = "rst", (".rst",)


@pytest.fixture()
def rst() -> Iterator[None]:
    PARSERS.register("rst", Rst())
    yield
    PARSERS.unregister("rst")


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "rst.yaml"
    cfg.write_text(yaml.safe_dump({"ingestion": {"extensions": [".md", ".rst"]}}))
    return cfg


def test_a_listed_suffix_needs_a_registered_parser(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--config", str(_config(tmp_path)), "--data-dir", str(tmp_path / "d"), "status"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith(
        "error: ingestion.extensions: no registered parser reads '.rst': registered parsers read "
        ".md, .markdown, .txt"
    )


def test_a_registered_parser_can_be_listed_in_ingestion_extensions(
    rst: None,
    runner: CliRunner,
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rag.indexing.index as index_module

    monkeypatch.setattr(index_module, "embedder_for", lambda settings: embedder)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.rst").write_text("Pumps\n=====\n\nThe feed pump is serviced every 900 hours.\n")
    (docs / "b.txt").write_text("Not listed, so not ingested.\n")
    data = tmp_path / "data"
    args = ["--config", str(_config(tmp_path)), "--data-dir", str(data), "ingest", str(docs)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("1 file(s) ingested, 0 unchanged, 0 deleted, 0 failed, 1 skipped")
