"""File → ParsedDocument. Every failure is a ``ParseError`` whose message a person understands.

Each file format is one :class:`~rag.contracts.Parser` registered in :data:`PARSERS` (by
name; each reads the suffixes it lists). Built in, in this order:

| name       | suffixes             | revision | reads                                         |
|------------|----------------------|----------|-----------------------------------------------|
| markdown   | .md, .markdown       | 1        | heading sections (ATX, outside code fences)   |
| text       | .txt                 | 1        | one section, the first line as title          |
| html       | .html, .htm          | 2        | h1–h6 sections, <title>, page chrome left out |
| pdf        | .pdf                 | 1        | pypdf, one section per page, page numbers kept|
| docx       | .docx                | 1        | python-docx, Heading styles                   |

A new format is one class and one call, from anywhere, before the ingestor runs::

    class RstParser(TextFileParser):          # UTF-8 decoding and its errors come with it
        name, suffixes = "rst", (".rst",)
        def parse_text(self, text, name):
            return ParsedDocument(text=text, title=name, sections=[Section(0, len(text))])

    PARSERS.register("rst", RstParser())

Every question about formats is answered by the table at call time (:func:`parse_bytes`,
:func:`supported_extensions`, :func:`content_signature`, :func:`ingested_suffixes`), so a
parser registered while the process runs is honoured by the next sync and the next upload.
The parsed text is what chunk offsets (``start``/``end``) point into.
"""

from __future__ import annotations

import abc
import errno
import hashlib
import io
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.contracts import Parser
from rag.core.budget import check_budget, unpack_limit
from rag.core.documents import ParsedDocument, Section
from rag.core.errors import ConfigError, ParseError
from rag.core.markup import safe_html
from rag.core.registry import Registry

__all__ = [
    "PARSERS",
    "DocxParser",
    "HtmlParser",
    "MarkdownParser",
    "ParseError",
    "Parser",
    "ParserRegistry",
    "PdfParser",
    "PlainTextParser",
    "TextFileParser",
    "check_extensions",
    "check_unpacked_size",
    "content_signature",
    "decode_text",
    "ingested_suffixes",
    "parse_bytes",
    "parser_for",
    "parser_revisions",
    "read_file_bytes",
    "supported_extensions",
    "without_server_paths",
]


def read_file_bytes(path: Path, max_bytes: int, root: Path | None = None) -> bytes:
    """Read a file, turning OS errors into reasons (permission, vanished, symlink loop, size).

    Reasons name no server path: a broken link's target is named relative to ``root`` (the
    watched folder; default the file's own folder), or not at all when it lies outside."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ParseError("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would block the sync forever; sockets and devices are not documents.
            raise ParseError("not a regular file (a FIFO, socket or device): nothing to index")
        size = st.st_size
        if size > max_bytes:
            raise ParseError(
                f"file is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit "
                "(raise ingestion.max_file_mb to ingest it)"
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except PermissionError as exc:
        raise ParseError(
            "permission denied: the daemon cannot read this file (check its mode/owner)"
        ) from exc
    except FileNotFoundError as exc:
        target = _link_target(path, path.parent if root is None else root)
        if target is not None:
            raise ParseError(f"broken symlink: its target {target} does not exist") from exc
        raise ParseError("file vanished while it was being read") from exc
    except IsADirectoryError as exc:
        raise ParseError("is a directory, not a file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ParseError("symlink loop: following the link leads back to itself") from exc
        raise ParseError(f"cannot read file: {exc.strerror or type(exc).__name__}") from exc
    if len(data) > max_bytes:
        raise ParseError(f"file grew over the {_megabytes(max_bytes)} limit while being read")
    return data


def _link_target(path: Path, root: Path) -> str | None:
    """Where a (broken) link points, relative to ``root``; ``(outside the watched folder)``
    for a target beyond it, whose absolute path is the server's business only."""
    try:
        raw = os.readlink(path)
    except OSError:  # not a symlink (or gone too)
        return None
    # Lexically: the target does not exist, so there is nothing to resolve.
    target = os.path.normpath(os.path.join(path.parent, raw))
    base = os.path.normpath(root)
    if target == base or not target.startswith(base.rstrip("/") + "/"):
        return "(outside the watched folder)"
    return Path(target).relative_to(base).as_posix()


# An absolute POSIX path not inside a word, URL or relative path (``tenants/<tenant>/``).
_PATH_PART = r"""[^\s'"/:;,()\[\]<>|]"""
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.~:/-])/{_PATH_PART}+(?:/{_PATH_PART}*)*")


def without_server_paths(reason: str, root: Path, *others: Path) -> str:
    """``reason`` naming no absolute server path: paths inside ``root`` (the watched folder)
    become relative to it, ``others`` (e.g. the data dir) and any other absolute path become
    ``<path>``. Failure reasons are shown to API callers and in ``rag status``."""
    for base in sorted({str(root), *(str(o) for o in others)}, key=len, reverse=True):
        if not base or base == "/":
            continue
        if base == str(root):
            reason = reason.replace(base + "/", "")
            reason = re.sub(rf"{re.escape(base)}(?!{_PATH_PART})", ".", reason)
        else:
            reason = re.sub(rf"{re.escape(base)}(?:/{_PATH_PART}*)*", "<path>", reason)
    return _ABSOLUTE_PATH.sub("<path>", reason)


def _megabytes(n: int) -> str:
    # Three significant digits: a small limit must not print as "0.0 MB".
    return f"{n / 1e6:.3g} MB"


class ParserRegistry(Registry[Parser]):
    """:class:`~rag.core.registry.Registry` of parsers by name, with an index by suffix: no
    two parsers read the same suffix (registering one for a suffix another already reads is
    an error; ``replace=True`` under the same name stands in for that parser)."""

    def register(self, name: str, item: Parser, *, replace: bool = False) -> Parser:
        suffixes = tuple(getattr(item, "suffixes", ()) or ())
        if not suffixes:
            raise ConfigError(f"parser {name!r} lists no suffixes: set e.g. suffixes = ('.rst',)")
        for suffix in suffixes:
            if not isinstance(suffix, str) or not re.fullmatch(r"\.[a-z0-9][a-z0-9._+-]*", suffix):
                raise ConfigError(
                    f"parser {name!r}: suffix {suffix!r} is not a lower-case file name ending "
                    "such as '.rst'"
                )
            owner = self.name_for(suffix)
            if owner is not None and owner != name:
                raise ConfigError(
                    f"parser {name!r}: files ending {suffix} are already read by parser "
                    f"{owner!r}; unregister it first (PARSERS.unregister({owner!r})), or "
                    f"register yours as {owner!r} with replace=True"
                )
        revision = getattr(item, "revision", None)
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise ConfigError(f"parser {name!r}: revision must be an int >= 1, got {revision!r}")
        return super().register(name, item, replace=replace)

    def name_for(self, suffix: str) -> str | None:
        """The name of the parser that reads ``suffix`` (any case), or None."""
        suffix = suffix.lower()
        for name, parser in self.items():
            if suffix in parser.suffixes:
                return name
        return None

    def for_suffix(self, suffix: str) -> Parser | None:
        """The parser that reads ``suffix`` (any case), or None."""
        name = self.name_for(suffix)
        return None if name is None else self.get(name)

    def suffixes(self) -> tuple[str, ...]:
        """Every suffix a registered parser reads, in registration order."""
        return tuple(s for _, parser in self.items() for s in parser.suffixes)


# The parsers by name; see the module docstring for the built-ins (registered at the end).
PARSERS = ParserRegistry("parser", "ingestion.extensions")


def supported_extensions() -> tuple[str, ...]:
    """The suffixes some registered parser reads, in registration order."""
    return PARSERS.suffixes()


def parser_revisions() -> dict[str, int]:
    """Suffix → the revision of the parser that reads it."""
    return {s: parser.revision for _, parser in PARSERS.items() for s in parser.suffixes}


def parser_for(suffix: str) -> Parser:
    """The parser for ``suffix``; ``ParseError`` (the reason a file is skipped) when none."""
    parser = PARSERS.for_suffix(suffix)
    if parser is None:
        raise ParseError(
            f"unsupported file type '{suffix.lower() or '(none)'}': supported are "
            f"{', '.join(supported_extensions())}"
        )
    return parser


def __getattr__(name: str) -> Any:
    # The module's former constants, computed from the table on each use.
    if name == "SUPPORTED_EXTENSIONS":
        return supported_extensions()
    if name == "PARSER_REVISIONS":
        return parser_revisions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_extensions(extensions: Sequence[str] | None, key: str = "ingestion.extensions") -> None:
    """ConfigError naming ``key`` when a configured suffix has no registered parser."""
    if extensions is None:
        return
    registered = supported_extensions()
    unknown = [e for e in extensions if e.lower() not in registered]
    if unknown:
        raise ConfigError(
            f"{key}: no registered parser reads {', '.join(repr(e) for e in unknown)}: registered "
            f"parsers read {', '.join(registered) or 'nothing'} (add a parser with "
            "rag.indexing.parsing.PARSERS.register, or remove the suffix)"
        )


def ingested_suffixes(extensions: Sequence[str] | None) -> tuple[str, ...]:
    """What ingestion reads now: ``ingestion.extensions`` (None: every suffix a registered
    parser reads), less any no parser reads (:func:`check_extensions` refuses those at start)."""
    registered = supported_extensions()
    if extensions is None:
        return registered
    return tuple(e for e in dict.fromkeys(e.lower() for e in extensions) if e in registered)


def content_signature(data: bytes, suffix: str) -> str:
    """What a sync compares to decide a file is unchanged: its bytes and its parser's revision.

    Revision 1 adds nothing (the signatures of files indexed before parsers had revisions);
    a parser that raises its revision has every file it reads parsed again on the next sync
    (chunks whose text did not change keep their vectors). html is at 2: page chrome (nav,
    sidebars, footers) left out."""
    digest = hashlib.sha256(data).hexdigest()
    parser = PARSERS.for_suffix(suffix)
    revision = parser.revision if parser is not None else None
    return f"{digest}:p{revision}" if revision and revision > 1 else digest


def parse_bytes(data: bytes, suffix: str, name: str) -> ParsedDocument:
    """``data`` (the file ``name``) parsed by the parser registered for ``suffix``."""
    suffix = suffix.lower()
    if not data:
        raise ParseError("empty file (0 bytes): nothing to index")
    doc = parser_for(suffix).run(data, name)
    if not doc.text.strip():
        raise ParseError(
            "no text could be extracted (empty document, or a scanned PDF without a text layer)"
        )
    return doc


def decode_text(data: bytes, suffix: str) -> str:
    """UTF-8 text (a BOM dropped, newlines as ``\\n``); ``ParseError`` for binary or other
    encodings, naming ``suffix`` (the file's kind)."""
    if b"\x00" in data[:8192]:
        raise ParseError(f"binary content in a {suffix} file (NUL bytes found): not a text file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not valid UTF-8 (bad byte 0x{data[exc.start]:02x} at offset {exc.start}): save the file as UTF-8"
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- the built-in parsers ----------------------------------------------------------------
class TextFileParser(abc.ABC):
    """Base of parsers for UTF-8 text formats: ``run`` decodes (:func:`decode_text`) and hands
    the text to :meth:`parse_text`. Set ``name`` and ``suffixes``; raise ``revision`` when the
    same text would parse differently."""

    name = "text-file"
    suffixes: tuple[str, ...] = ()
    revision = 1

    def run(self, data: bytes, name: str) -> ParsedDocument:
        suffix = Path(name).suffix.lower()
        if suffix not in self.suffixes and self.suffixes:
            suffix = self.suffixes[0]
        return self.parse_text(decode_text(data, suffix), name)

    @abc.abstractmethod
    def parse_text(self, text: str, name: str) -> ParsedDocument: ...


class MarkdownParser(TextFileParser):
    """Sections split at ATX headings outside code fences; each keeps its heading path."""

    name = "markdown"
    suffixes = (".md", ".markdown")

    def parse_text(self, text: str, name: str) -> ParsedDocument:
        return _parse_markdown(text, name)


class PlainTextParser(TextFileParser):
    """One section; the first non-empty line is the title."""

    name = "text"
    suffixes = (".txt",)

    def parse_text(self, text: str, name: str) -> ParsedDocument:
        return ParsedDocument(
            text=text, title=_first_line_title(text, name), sections=[Section(0, len(text))]
        )


class HtmlParser(TextFileParser):
    """h1–h6 sections and <title>; page chrome (nav, sidebars, footers) left out (revision 2)."""

    name = "html"
    suffixes = (".html", ".htm")
    revision = 2

    def parse_text(self, text: str, name: str) -> ParsedDocument:
        return _parse_html(text, name)


class PdfParser:
    """pypdf: one section per page, page numbers kept."""

    name = "pdf"
    suffixes = (".pdf",)
    revision = 1

    def run(self, data: bytes, name: str) -> ParsedDocument:
        return _parse_pdf(data, name)


class DocxParser:
    """python-docx: sections at Heading styles, then the tables' rows."""

    name = "docx"
    suffixes = (".docx",)
    revision = 1

    def run(self, data: bytes, name: str) -> ParsedDocument:
        return _parse_docx(data, name)


def _first_line_title(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return name


_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")


def _parse_markdown(text: str, name: str) -> ParsedDocument:
    """Sections split at ATX headings outside code fences; each keeps its heading path."""
    headings: list[tuple[int, int, str]] = []  # (offset, level, title)
    offset = 0
    in_fence = False
    for n, line in enumerate(text.splitlines(keepends=True)):
        if not n % 4096:
            check_budget()
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            m = _MD_HEADING.match(line.rstrip("\n"))
            if m:
                headings.append((offset, len(m.group(1)), m.group(2).strip()))
        offset += len(line)
    title = (
        next((h[2] for h in headings if h[1] == 1), None) or _front_title(text) or Path(name).stem
    )
    sections: list[Section] = []
    if not headings or headings[0][0] > 0:
        end = headings[0][0] if headings else len(text)
        if text[:end].strip():
            sections.append(Section(0, end, ()))
    path: list[tuple[int, str]] = []
    for i, (start, level, heading) in enumerate(headings):
        _enter_heading(path, level, heading)
        end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        sections.append(Section(start, end, tuple(h for _, h in path)))
    return ParsedDocument(text=text, title=title, sections=sections)


def _enter_heading(path: list[tuple[int, str]], level: int, heading: str) -> None:
    """A heading of ``level`` ends every open heading of that level or deeper, then opens."""
    while path and path[-1][0] >= level:
        path.pop()
    path.append((level, heading))


class _SectionedText:
    """Text assembled block by block (a blank line after each), cut into sections at headings.

    Each section runs from one heading to the next (or the end) and keeps its heading path;
    text before the first heading is a section without one."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._start = 0
        self._pos = 0

    def heading(self, level: int, heading: str) -> None:
        """Start a section under ``heading``; add its text with ``block`` next."""
        self._close()
        _enter_heading(self._path, level, heading)
        self._start = self._pos

    def block(self, text: str, end: str = "\n\n") -> None:
        self._parts.append(text + end)
        self._pos += len(text) + len(end)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def _close(self) -> None:
        if self._pos > self._start:
            self._sections.append(Section(self._start, self._pos, tuple(h for _, h in self._path)))

    def finish(self) -> tuple[str, list[Section]]:
        """The whole text and its sections."""
        self._close()
        return "".join(self._parts), self._sections


def _front_title(text: str) -> str | None:
    m = re.match(r"^---\n(.*?)\n---", text, re.S)
    if m:
        t = re.search(r"^title:\s*(.+)$", m.group(1), re.M)
        if t:
            return t.group(1).strip().strip("'\"")
    return None


_BLOCK_TAGS = (
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "pre",
    "td",
    "th",
    "blockquote",
    "dt",
    "dd",
    "figcaption",
)


# Page chrome, not content: navigation bars, sidebars, search boxes, headers and footers
# repeat on every page of a site (Sphinx, MkDocs, wikis) and would outrank the pages
# themselves. A page that marks its main content (<main>, role="main") is read from there.
_LAYOUT_TAGS = ("br", "div", "section", "article", "table", "tr", "ul", "ol", "dl", "hr")
_CHROME_TAGS = ("nav", "header", "footer", "aside", "form")
_CHROME_ROLES = ("navigation", "search", "banner", "contentinfo", "complementary")
_PERMALINK_GLYPHS = frozenset(["¶", "§", "#", "🔗", "\N{LINK SYMBOL}"])


def _parse_html(html: str, name: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    # Linear-time markup (rag.core.markup): html.parser is quadratic on unterminated tags,
    # and every step below costs at most the tree's size (its depth is bounded there).
    soup = BeautifulSoup(safe_html(html), "html.parser")
    check_budget()
    for tag in soup(["noscript", "template"]):  # script and style bodies are gone already
        tag.decompose()
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    body = soup.body or soup
    main = body.find("main") or body.find(role="main")
    if main is not None and main.get_text(strip=True):
        body = main
    for tag in body.find_all(_CHROME_TAGS) + body.find_all(role=list(_CHROME_ROLES)):
        if not tag.decomposed:
            tag.decompose()
    check_budget()
    # Heading permalinks ("Basic Examples ¶") are no text: links whose whole text is a glyph.
    sizes = _text_sizes(body)
    for link in body.find_all("a"):
        if (
            not link.decomposed
            and sizes.get(id(link), 0) <= 2
            and link.get_text(strip=True) in _PERMALINK_GLYPHS
        ):
            link.decompose()
    check_budget()
    # Inline markup is no word break ("<span>collections.</span><span>deque</span>" is one
    # name): text joins as written, with a space only where a block or line break ends.
    # Nested blocks (a <p> inside an <li>) are emitted once, by the outermost block.
    out = _SectionedText()
    for el in _outermost_blocks(body):
        block = " ".join(_spaced_text(el).split())
        if not block:
            continue
        if el.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            level = int(el.name[1])
            out.heading(level, block)
            if not title and level == 1:
                title = block
        out.block(block)
    if not out:  # bare text without block tags
        out.block(" ".join(_spaced_text(body).split()), end="")
    text, sections = out.finish()
    return ParsedDocument(
        text=text, title=title or Path(name).stem, sections=sections or [Section(0, len(text))]
    )


_SPACED = frozenset((*_BLOCK_TAGS, *_LAYOUT_TAGS))


def _is_text(node: Any) -> bool:
    """A string ``get_text`` reads (not a comment, doctype or other special string)."""
    from bs4.element import CData, NavigableString

    return type(node) is NavigableString or type(node) is CData


def _text_sizes(root: Any) -> dict[int, int]:
    """id(tag) -> how many non-space characters its text has, for every tag under ``root``:
    one pass from the leaves up (asking each link for its text would cost its subtree each)."""
    from bs4 import Tag

    sizes: dict[int, int] = {}
    nodes = [n for n in root.descendants if isinstance(n, Tag)]
    for node in reversed(nodes):  # children before their parents
        total = 0
        for child in node.contents:
            if isinstance(child, Tag):
                total += sizes[id(child)]
            elif _is_text(child):
                total += len(str(child).strip())
        sizes[id(node)] = total
    return sizes


def _outermost_blocks(root: Any) -> list[Any]:
    """The block elements under ``root`` with no block element above them, in page order."""
    from bs4 import Tag

    if any(el.name in _BLOCK_TAGS for el in (root, *root.parents)):
        return []  # every block under root has one above it
    found: list[Any] = []
    stack: list[Any] = list(reversed([c for c in root.contents if isinstance(c, Tag)]))
    while stack:
        node = stack.pop()
        if node.name in _BLOCK_TAGS:
            found.append(node)
            continue
        stack.extend(reversed([c for c in node.contents if isinstance(c, Tag)]))
    return found


_LEAVE = object()


def _spaced_text(root: Any) -> str:
    """``root``'s text as written, with a space where each block or layout element (``br``,
    ``div``, ``td``...) starts and ends: ``get_text("")`` with those spaces, in one pass."""
    from bs4 import Tag

    parts: list[str] = []
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if node is _LEAVE:
            parts.append(" ")
        elif isinstance(node, Tag):
            if node.name in _SPACED:
                parts.append(" ")
                stack.append(_LEAVE)
            stack.extend(reversed(node.contents))
        elif _is_text(node):
            parts.append(str(node))
    return "".join(parts)


def _parse_pdf(data: bytes, name: str) -> ParsedDocument:
    import pypdf
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    limit = unpack_limit()
    # Each compressed stream unpacks to at most the limit (a small PDF can hold a stream
    # that inflates to gigabytes); pypdf raises LimitReachedError past it.
    limits = {
        key: limit
        for key in (
            "zlib_maximum_output_length",
            "lzw_maximum_output_length",
            "run_length_maximum_output_length",
            "brotli_maximum_output_length",
            "jbig2_maximum_output_length",
            "array_based_stream_maximum_output_length",
            "maximum_declared_stream_length",
        )
        if hasattr(pypdf.Configuration, key)
    }

    def visit(*_: Any) -> None:  # called for every text run: the budget holds inside a page
        check_budget()

    try:
        with pypdf.apply_configuration(**limits):  # type: ignore[arg-type]
            reader = PdfReader(io.BytesIO(data))
            pages, meta_title = _pdf_pages(reader, visit)
    except ParseError:
        raise
    except LimitReachedError as exc:
        raise ParseError(
            f"a compressed part of this PDF unpacks to more than {_megabytes(limit)} "
            f"(ingestion.max_unpacked_mb): not indexed ({str(exc)[:120]})"
        ) from exc
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as exc:
        raise ParseError(
            f"corrupt or unreadable PDF ({type(exc).__name__}: {str(exc)[:120]})"
        ) from exc
    except Exception as exc:  # pypdf raises many types on damaged files
        if "crypt" in str(exc).lower():
            raise ParseError(
                "encrypted PDF that cannot be opened: remove the password to index it"
            ) from exc
        raise ParseError(
            f"corrupt or unreadable PDF ({type(exc).__name__}: {str(exc)[:120]})"
        ) from exc
    return _pdf_document(pages, meta_title, name)


def _pdf_pages(reader: Any, visit: Any) -> tuple[list[str], str | None]:
    """Each page's text and the title in the metadata; ``ParseError`` for a locked file."""
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))
        except Exception:  # noqa: BLE001 - pypdf raises many kinds for a bad password block
            opened = False
        if not opened:
            raise ParseError("encrypted PDF (password protected): remove the password to index it")
    pages: list[str] = []
    for page in reader.pages:
        check_budget()
        pages.append(page.extract_text(visitor_text=visit) or "")
    meta_title = (reader.metadata.title if reader.metadata else None) or None
    return pages, meta_title


def _pdf_document(pages: list[str], meta_title: str | None, name: str) -> ParsedDocument:
    parts: list[str] = []
    sections: list[Section] = []
    pos = 0
    for number, page_text in enumerate(pages, start=1):
        page_text = page_text.replace("\x00", "").strip()
        if not page_text:
            continue
        sections.append(Section(pos, pos + len(page_text), (), page=number))
        parts.append(page_text + "\n\n")
        pos += len(page_text) + 2
    text = "".join(parts)
    title = (meta_title or "").strip() or _first_line_title(text, Path(name).stem)
    return ParsedDocument(text=text, title=title, sections=sections, metadata={"pages": len(pages)})


_ZIP_MAX_MEMBERS = 10_000


def check_unpacked_size(data: bytes, kind: str) -> None:
    """``ParseError`` when the zip ``data`` (a .docx, ...) unpacks to more than
    ``ingestion.max_unpacked_mb`` (:func:`rag.core.budget.unpack_limit`): first by what its
    directory declares, then by what reading every member really yields, since the
    directory can lie. Corrupt zips are left to the parser, which names them."""
    import zipfile

    limit = unpack_limit()
    over = (
        f"this {kind} unpacks to more than {_megabytes(limit)} (ingestion.max_unpacked_mb): "
        "a compressed bomb or an oversized document; not indexed"
    )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    with archive:
        members = archive.infolist()
        if len(members) > _ZIP_MAX_MEMBERS:
            raise ParseError(
                f"this {kind} holds {len(members)} parts, over the {_ZIP_MAX_MEMBERS} a "
                "document has; not indexed"
            )
        if sum(m.file_size for m in members) > limit:
            raise ParseError(over)
        total = 0
        for member in members:
            try:
                with archive.open(member) as fh:
                    while block := fh.read(1 << 20):
                        total += len(block)
                        if total > limit:
                            raise ParseError(over)
                        check_budget()
            except ParseError:
                raise
            except Exception:  # noqa: BLE001 - a bad member: the parser reports the file
                return


def _parse_docx(data: bytes, name: str) -> ParsedDocument:
    import zipfile

    import docx

    check_unpacked_size(data, ".docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(
            f"corrupt or unreadable .docx ({type(exc).__name__}): re-save it from your editor"
        ) from exc
    except Exception as exc:
        raise ParseError(
            f"corrupt or unreadable .docx ({type(exc).__name__}: {str(exc)[:120]})"
        ) from exc
    out = _SectionedText()
    title = (document.core_properties.title or "").strip()
    for para in document.paragraphs:
        check_budget()
        block = para.text.strip()
        if not block:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        level = _docx_heading_level(style)
        if level:
            out.heading(level, block)
            if not title and level == 1:
                title = block
        out.block(block)
    for table in document.tables:
        for row in table.rows:
            check_budget()
            block = " | ".join(c.text.strip() for c in row.cells if c.text.strip())
            if block:
                out.block(block)
    text, sections = out.finish()
    return ParsedDocument(text=text, title=title or Path(name).stem, sections=sections)


def _docx_heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.match(r"Heading (\d)", style)
    return int(m.group(1)) if m else 0


# The built-ins, in the order ``supported_extensions()`` lists their suffixes.
_BUILT_IN: tuple[Parser, ...] = (
    MarkdownParser(),
    PlainTextParser(),
    HtmlParser(),
    PdfParser(),
    DocxParser(),
)
for _parser in _BUILT_IN:
    PARSERS.register(_parser.name, _parser)
