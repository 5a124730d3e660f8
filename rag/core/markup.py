"""HTML made safe to parse in linear time: every reader of a page parses ``safe_html(page)``.

The standard library's ``html.parser`` (what BeautifulSoup's ``html.parser`` builder runs) is
quadratic on unterminated markup: at every ``<a `` (``<!--``, ``</``, ``<!``) without its
closing ``>`` it scans to the end of the page, then moves on by a few characters — 45 kB of
``<a `` took 38 s. And BeautifulSoup's tree operations cost as much as the tree is deep.

:func:`safe_html` re-writes a page in one forward pass (every scan starts where the previous
one ended; a construct that never closes ends the pass) into markup with nothing left for
``html.parser`` to search for: every tag closed and its attribute values quoted and escaped,
comments, declarations, processing instructions and script/style bodies dropped (no reader
uses them; comments are read from the raw page), text with ``<`` and ``&`` escaped (entities
decoded first), and at most ``max_depth`` elements open at once (deeper start tags are
dropped, their text kept). What a page says is unchanged; what browsers would not show of
broken markup may read differently: an unterminated tag is text, an unterminated comment or
script runs to the end of the page (as in a browser).
"""

from __future__ import annotations

import html
import re

__all__ = ["MAX_DEPTH", "VOID_ELEMENTS", "safe_html"]

MAX_DEPTH = 256  # elements open at once (browsers' own limits are of this order)

VOID_ELEMENTS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
# Their content is not markup; no reader wants it (page text, hidden text).
_RAW_TEXT = ("script", "style")

_TAG_NAME = re.compile(r"[A-Za-z][^\s/>\x00]*")
_SPACE_SLASH = re.compile(r"[\s/]*")
_SPACE = re.compile(r"\s*")
_ATTR_NAME = re.compile(r"[^\s/>][^\s/>=]*")
_BARE_VALUE = re.compile(r"[^\s>]*")
_UNSAFE_NAME = re.compile(r"[^\w:.-]")
_RAW_END = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in _RAW_TEXT}
# A numeric reference too long for int() (over 4300 digits raises): never a character.
_HUGE_CHARREF = re.compile(r"&#(?:[xX][0-9a-fA-F]{9,}|[0-9]{11,})")


def _text(raw: str) -> str:
    """Text as written (entities decoded), escaped again so only ``&amp; &lt; &gt;`` remain."""
    if "&" in raw:
        raw = html.unescape(_HUGE_CHARREF.sub("\ufffd", raw))
    return html.escape(raw, quote=False)


def safe_html(page: str, max_depth: int = MAX_DEPTH) -> str:
    """``page`` re-written so that ``html.parser`` reads it in linear time (module docstring)."""
    out: list[str] = []
    stack: list[str] = []  # open elements, as BeautifulSoup will have them
    open_count: dict[str, int] = {}
    n = len(page)
    pos = 0
    while pos < n:
        lt = page.find("<", pos)
        if lt < 0:
            out.append(_text(page[pos:]))
            break
        if lt > pos:
            out.append(_text(page[pos:lt]))
        pos = lt
        nxt = page[pos + 1 : pos + 2]
        if nxt.isascii() and nxt.isalpha():
            tag = _start_tag(page, pos)
            if tag is None:  # never closed: the rest is text
                out.append(_text(page[pos:]))
                break
            name, attrs, closed, pos = tag
            if name in _RAW_TEXT:
                end = _RAW_END[name].search(page, pos)
                if end is None:
                    break  # runs to the end of the page
                close = page.find(">", end.end() - 1)
                if close < 0:
                    break
                pos = close + 1
                continue
            void = name in VOID_ELEMENTS
            if not void and not closed and len(stack) >= max_depth:
                continue  # too deep: the tag goes, its text stays
            out.append(f"<{name}{attrs}{'/' if void or closed else ''}>")
            if not (void or closed):
                stack.append(name)
                open_count[name] = open_count.get(name, 0) + 1
        elif nxt == "/":
            close = page.find(">", pos + 2)
            if close < 0:
                out.append(_text(page[pos:]))
                break
            m = _TAG_NAME.match(page, pos + 2)
            if m is not None:  # "</3>", "</ x>": a bogus comment, dropped
                name = m.group().lower()
                if open_count.get(name):  # BeautifulSoup closes up to it; anything else is ignored
                    while stack:
                        top = stack.pop()
                        open_count[top] -= 1
                        if top == name:
                            break
                    out.append(f"</{name}>")
            pos = close + 1
        elif page.startswith("<!--", pos):
            if page.startswith("<!-->", pos):
                pos += 5
                continue
            if page.startswith("<!--->", pos):
                pos += 6
                continue
            close = page.find("-->", pos + 4)
            if close < 0:
                break  # an unterminated comment runs to the end of the page
            pos = close + 3
        elif nxt in ("!", "?"):  # doctype, CDATA, declarations, processing instructions
            close = page.find(">", pos + 2)
            if close < 0:
                break
            pos = close + 1
        else:
            out.append("&lt;")
            pos += 1
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out)


def _end(pattern: re.Pattern[str], page: str, pos: int) -> int:
    """Where ``pattern`` (which matches the empty string too) ends when matched at ``pos``."""
    m = pattern.match(page, pos)
    return pos if m is None else m.end()


def _start_tag(page: str, pos: int) -> tuple[str, str, bool, int] | None:
    """The start tag at ``pos``: (name, canonical attributes, self-closing, position after
    it); None when the page ends inside it."""
    n = len(page)
    m = _TAG_NAME.match(page, pos + 1)
    assert m is not None
    name = m.group().lower()
    i = m.end()
    attrs: list[str] = []
    seen: set[str] = set()
    closed = False
    while True:
        j = _end(_SPACE_SLASH, page, i)
        if j >= n:
            return None
        if page[j] == ">":
            closed = j > i and page[j - 1] == "/"
            i = j + 1
            break
        am = _ATTR_NAME.match(page, j)
        assert am is not None  # page[j] is neither a space, "/" nor ">"
        attr = _UNSAFE_NAME.sub("", am.group().lower())
        i = _end(_SPACE, page, am.end())
        value: str | None = None
        if i < n and page[i] == "=":
            i = _end(_SPACE, page, i + 1)
            if i >= n:
                return None
            quote = page[i]
            if quote in "\"'":
                end = page.find(quote, i + 1)
                if end < 0:
                    return None
                value, i = page[i + 1 : end], end + 1
            else:
                bare = _BARE_VALUE.match(page, i)
                assert bare is not None
                value, i = bare.group(), bare.end()
        if attr and attr not in seen:  # the first of a repeated attribute counts
            seen.add(attr)
            if value is None:
                attrs.append(f" {attr}")
            else:
                if "&" in value:
                    value = html.unescape(_HUGE_CHARREF.sub("\ufffd", value))
                attrs.append(f' {attr}="{html.escape(value, quote=True)}"')
    return name, "".join(attrs), closed, i
