"""HTML pages are read for their content: site chrome (navigation, sidebars, search boxes,
footers) left out, inline markup not breaking words, heading permalinks dropped — and a
parser change reaches an existing index on its next sync (the parser revision is part of
each file's signature), re-embedding only the chunks whose text changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.parsing import PARSER_REVISIONS, content_signature, parse_bytes

SPHINX_PAGE = """<!DOCTYPE html><html><head><title>heapq — Heap queue algorithm</title></head>
<body>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li>
<li><a href="bisect.html">previous</a> | bisect — Array bisection algorithm</li></ul></div>
<div class="document"><div class="body" role="main">
<section id="heapq"><h1>heapq — Heap queue algorithm<a class="headerlink" href="#heapq">¶</a></h1>
<p>This module provides an implementation of the heap queue algorithm.</p>
<dl><dt><span class="pre">heapq.</span><span class="pre">heappush</span>(<em>heap</em>, <em>item</em>)<a class="headerlink" href="#x">¶</a></dt>
<dd><p>Push the value <em>item</em> onto the <em>heap</em>.</p></dd></dl>
</section></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li>Theory</li></ul>
<div role="search"><form><input type="text" name="q"/></form></div></div>
<div class="footer">© Copyright 2001-2023, Python Software Foundation.</div>
</body></html>"""

PLAIN_PAGE = """<html><body>
<nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
<header><p>Acme wiki — log in</p></header>
<h1>Backups</h1><p>Backups run <b>hourly</b> and are kept for 35 days.</p>
<aside><p>Related: Restore guide</p></aside>
<footer><p>Last edited by the platform team</p></footer>
</body></html>"""


def test_a_page_with_a_main_region_is_read_from_there() -> None:
    doc = parse_bytes(SPHINX_PAGE.encode(), ".html", "heapq.html")
    assert doc.text.startswith("heapq — Heap queue algorithm\n")
    assert "This module provides an implementation of the heap queue algorithm." in doc.text
    # inline spans join as written; the permalink glyph is gone
    assert "heapq.heappush(heap, item)" in doc.text
    assert "¶" not in doc.text
    for chrome in ("previous", "Table of Contents", "Copyright", "bisect"):
        assert chrome not in doc.text
    assert doc.sections[0].heading_path == ("heapq — Heap queue algorithm",)


def test_navigation_header_aside_and_footer_are_left_out() -> None:
    doc = parse_bytes(PLAIN_PAGE.encode(), ".html", "backups.html")
    assert "Backups run hourly and are kept for 35 days." in doc.text
    for chrome in ("Home", "log in", "Restore guide", "Last edited"):
        assert chrome not in doc.text


def test_a_page_whose_main_region_is_empty_keeps_its_body() -> None:
    html = "<html><body><main></main><p>Quotas reset at midnight UTC.</p></body></html>"
    assert "Quotas reset at midnight UTC." in parse_bytes(html.encode(), ".html", "q.html").text


def test_the_parser_revision_is_part_of_the_signature() -> None:
    data = b"<p>x</p>"
    assert content_signature(data, ".html").endswith(f":p{PARSER_REVISIONS['.html']}")
    assert content_signature(data, ".HTML") == content_signature(data, ".html")
    assert ":" not in content_signature(data, ".md")  # formats without a revision: the digest


def test_a_file_indexed_by_an_older_parser_is_reparsed_on_the_next_sync(
    tmp_path: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heapq.html").write_text(SPHINX_PAGE, encoding="utf-8")
    (docs / "notes.md").write_text("# Notes\n\nBackups run hourly.\n", encoding="utf-8")
    index = Index(tmp_settings(), embedder=embedder)
    index.open()
    try:
        Ingestor(index).sync_folder(docs)
        collection = index.collection or ""
        # As an index written before this parser revision left it: old signature, and the
        # page's chunks holding the chrome an older parser kept.
        record = index.manifest.get(collection, "heapq.html", root=str(docs.resolve()))
        assert record is not None
        old = record.signature.split(":")[0]
        index.manifest._db.execute(
            "UPDATE files SET signature = ? WHERE source = ?", (old, "heapq.html")
        )
        report = Ingestor(index).sync_folder(docs)
        assert report.ingested == 1 and report.unchanged == 1  # the page; notes.md untouched
        assert report.embedded == 0  # same parser output here: every vector reused
        record = index.manifest.get(collection, "heapq.html", root=str(docs.resolve()))
        assert record is not None and record.signature == content_signature(
            (docs / "heapq.html").read_bytes(), ".html"
        )
        assert Ingestor(index).sync_folder(docs).unchanged == 2
    finally:
        index.close()
