"""rag.indexing.parsing.PARSERS: the built-in formats as one table, and a format added from
outside the library (a reStructuredText parser defined here) honoured by ``rag ingest``,
``rag query``, the ``Ingestor`` and API uploads without a library file edited."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.contracts import Parser
from rag.core.config import Settings
from rag.core.documents import ParsedDocument, Section
from rag.core.errors import ConfigError, ParseError
from rag.indexing import parsing
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.parsing import (
    PARSERS,
    PlainTextParser,
    TextFileParser,
    content_signature,
    parse_bytes,
    supported_extensions,
)
from rag.indexing.status import collect_status

BUILT_IN = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")

COOLANT = """\
Coolant loop
============

The secondary coolant loop runs at 4.2 bar. Its pump is serviced every 900 operating hours.

Alarms
------

A pressure below 3.1 bar raises the amber alarm on panel C.
"""


class RstParser(TextFileParser):
    """reStructuredText: sections at underlined titles (``===`` level 1, ``---`` level 2)."""

    name = "rst"
    suffixes = (".rst",)

    def parse_text(self, text: str, name: str) -> ParsedDocument:
        lines = text.splitlines(keepends=True)
        titles: list[tuple[int, str]] = []  # (offset, title)
        offset = 0
        for line, under in zip(lines, [*lines[1:], ""], strict=True):
            if line.strip() and re.fullmatch(r"([=\-])\1{2,}\s*", under):
                titles.append((offset, line.strip()))
            offset += len(line)
        sections = [
            Section(start, titles[i + 1][0] if i + 1 < len(titles) else len(text), (title,))
            for i, (start, title) in enumerate(titles)
        ] or [Section(0, len(text))]
        return ParsedDocument(text, titles[0][1] if titles else Path(name).stem, sections)


@pytest.fixture()
def rst() -> Iterator[RstParser]:
    parser = PARSERS.register("rst", RstParser())
    assert isinstance(parser, RstParser)
    yield parser
    PARSERS.unregister("rst")


# -- the built-ins -------------------------------------------------------------------------
def test_built_ins_are_one_parser_each_in_the_old_order() -> None:
    assert PARSERS.names() == ("markdown", "text", "html", "pdf", "docx")
    assert supported_extensions() == BUILT_IN == parsing.SUPPORTED_EXTENSIONS
    for name, parser in PARSERS.items():
        assert isinstance(parser, Parser) and parser.name == name
    assert {s: 2 if s in (".html", ".htm") else 1 for s in BUILT_IN} == parsing.PARSER_REVISIONS


@pytest.mark.parametrize("suffix", (*BUILT_IN, ".HTML", ".Md", ".zip"))
def test_signatures_of_built_in_formats_are_unchanged(suffix: str) -> None:
    """Byte for byte what they were before the table, or every indexed file is re-parsed."""
    data = b"The same bytes."
    digest = hashlib.sha256(data).hexdigest()
    tagged = suffix.lower() in (".html", ".htm")
    assert content_signature(data, suffix) == (f"{digest}:p2" if tagged else digest)


def test_parse_bytes_goes_through_the_table(rst: RstParser) -> None:
    doc = parse_bytes(COOLANT.encode(), ".RST", "coolant.rst")
    assert doc.title == "Coolant loop"
    assert [s.heading_path for s in doc.sections] == [("Coolant loop",), ("Alarms",)]
    assert doc.text[doc.sections[1].start :].startswith("Alarms")
    with pytest.raises(ParseError, match=r"binary content in a \.rst file"):
        parse_bytes(b"\x00\x01", ".rst", "x.rst")


def test_once_unregistered_the_suffix_is_unsupported_again(rst: RstParser) -> None:
    assert ".rst" in supported_extensions()
    PARSERS.unregister("rst")
    try:
        with pytest.raises(ParseError, match=r"unsupported file type '\.rst': supported are \.md"):
            parse_bytes(COOLANT.encode(), ".rst", "coolant.rst")
        assert supported_extensions() == BUILT_IN
    finally:
        PARSERS.register("rst", rst)  # the fixture unregisters it


def test_a_suffix_is_read_by_one_parser_only() -> None:
    class Notes(PlainTextParser):
        name, suffixes = "notes", (".notes", ".md")

    with pytest.raises(
        ConfigError, match=r"files ending \.md are already read by parser 'markdown'"
    ):
        PARSERS.register("notes", Notes())
    assert "notes" not in PARSERS and supported_extensions() == BUILT_IN


@pytest.mark.parametrize("suffixes", [(), ("rst",), (".RST",), (".r st",)])
def test_suffixes_must_be_lower_case_endings(suffixes: tuple[str, ...]) -> None:
    class Bad(PlainTextParser):
        name = "bad"

    bad = Bad()
    bad.suffixes = suffixes
    with pytest.raises(ConfigError, match="parser 'bad'"):
        PARSERS.register("bad", bad)
    assert "bad" not in PARSERS


def test_a_built_in_can_be_replaced_under_its_name() -> None:
    original = PARSERS.get("text")

    class Shouting(PlainTextParser):
        def parse_text(self, text: str, name: str) -> ParsedDocument:
            return super().parse_text(text.upper(), name)

    PARSERS.register("text", Shouting(), replace=True)
    try:
        assert parse_bytes(b"quiet words", ".txt", "a.txt").text == "QUIET WORDS"
    finally:
        PARSERS.register("text", original, replace=True)
    assert parse_bytes(b"quiet words", ".txt", "a.txt").text == "quiet words"
    assert PARSERS.names() == ("markdown", "text", "html", "pdf", "docx")


# -- ingestion consults the table ----------------------------------------------------------
@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "coolant.rst").write_text(COOLANT)
    (folder / "intro.md").write_text("# Intro\n\nThe plant has two coolant loops.\n")
    return folder


def _statuses(index: Index) -> dict[str, str]:
    data = collect_status(index)
    out = {f["path"]: "skipped" for f in data["skipped"]}
    out.update({f["path"]: "failed" for f in data["failed"]})
    return out


def test_a_parser_registered_after_the_ingestor_is_honoured_by_its_next_sync(
    docs: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    index = Index(tmp_settings(), embedder=embedder)
    index.open()
    try:
        ingestor = Ingestor(index)
        first = ingestor.sync_folder(docs)
        assert (first.ingested, first.skipped) == (1, 1)
        assert _statuses(index) == {"coolant.rst": "skipped"}
        PARSERS.register("rst", RstParser())
        try:
            second = ingestor.sync_folder(docs)
        finally:
            PARSERS.unregister("rst")
        assert (second.ingested, second.skipped, second.failed) == (1, 0, 0)
        assert _statuses(index) == {}
        sections = {
            tuple(p.payload["section"])
            for p in index.store.scroll(index.collection or "", {"source": "coolant.rst"})
        }
        assert ("Alarms",) in sections
    finally:
        index.close()


def test_an_explicit_extension_list_restricts_and_is_checked(
    rst: RstParser, docs: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    index = Index(tmp_settings(ingestion={"extensions": [".md"]}), embedder=embedder)
    index.open()
    try:
        report = Ingestor(index).sync_folder(docs)
        assert (report.ingested, report.skipped) == (1, 1)  # registered, but not listed
    finally:
        index.close()
    listed = tmp_settings("other", ingestion={"extensions": [".md", ".adoc"]})
    index = Index(listed, embedder=embedder)
    try:
        with pytest.raises(
            ConfigError, match=r"ingestion\.extensions: no registered parser reads '\.adoc'"
        ):
            Ingestor(index)
    finally:
        index.close()


# -- the whole way through the CLI ---------------------------------------------------------
@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> CliRunner:
    """``rag`` in process (so the parser registered here is in its table), with the session's
    warmed model standing in for the one each command would load."""
    import rag.indexing.index as index_module

    monkeypatch.setattr(index_module, "embedder_for", lambda settings: embedder)
    for name in ("RAG_CONFIG", "RAG_STORE__BACKEND", "RAG_INGESTION__EXTENSIONS"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_rag_ingest_and_query_read_a_format_registered_from_outside(
    rst: RstParser, docs: Path, tmp_path: Path, cli: CliRunner
) -> None:
    from app.cli import app

    data = str(tmp_path / "data")
    out = cli.invoke(app, ["--data-dir", data, "ingest", str(docs), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert (report["ingested"], report["skipped"], report["failed"]) == (2, 0, 0)

    question = "What pressure raises the amber alarm?"
    out = cli.invoke(app, ["--data-dir", data, "query", question, "--json", "--context-only"])
    assert out.exit_code == 0, out.output
    citations = json.loads(out.stdout)["citations"]
    assert citations[0]["source"] == "coolant.rst", citations
    assert citations[0]["section"] == ["Alarms"]
    assert "3.1 bar raises the amber alarm" in citations[0]["quote"]
