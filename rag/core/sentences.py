"""Where the answer path cuts text into sentences: pure text, no model, no settings.

:func:`split_sentences` is what citations verify one at a time; :func:`passage_segments` and
:func:`without_headings` are the sentences the extractive backend scores as answers. They live
this low so that ingestion (``rag.indexing.sentence_vectors``) cuts a chunk exactly as the
answer path will, and stores each sentence's vector once instead of per question.
"""

from __future__ import annotations

import re

__all__ = [
    "MARKER",
    "MIN_ANSWER_WORDS",
    "SEGMENTS_REVISION",
    "passage_segments",
    "split_sentences",
    "without_headings",
]

# Raise when the cutting below changes: vectors stored for the old sentences are then stale
# (rag.indexing.sentence_vectors recomputes them on the next sync).
SEGMENTS_REVISION = 1
MIN_ANSWER_WORDS = 4  # shorter "sentences" (headings, list bullets) rarely answer anything
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_WORDS = re.compile(r"\w+")
_ANNOUNCED_WORDS = 12  # the line a "...:" sentence announces: a command, a value

_NUMBERS = r"\d+(?:\s*[,;]\s*\d+)*"
# A citation marker: "[1]", "[1, 3]". Brackets glued to a name are its index ("argv[0] is the
# script name"), unless the sentence or clause ends right after them ("... 5 minutes[1].").
MARKER = re.compile(
    rf"\s*(?:(?<![\w\])])|(?=\[{_NUMBERS}\](?:\s*[.,;:!?)]|\s*\[|\s*$)))\[({_NUMBERS})\]"
)
# A sentence ends at . ! or ? (closing quotes/brackets and [n] markers stay with it) before
# whitespace and a capital or digit; paragraph breaks and list items end one too.
_SENTENCE_END = re.compile(
    r"[.!?][\"')\]]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*(?=\s+[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)"
)
_LIST_NUMBER = re.compile(r"\d{1,3}[.)]")
_ABBREVIATIONS = (
    "e.g.",
    "i.e.",
    "etc.",
    "vs.",
    "Dr.",
    "Mr.",
    "Mrs.",
    "Ms.",
    "St.",
    "No.",
    "Fig.",
    "al.",
    "approx.",
)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, markers kept with the sentence they close."""
    protected = text
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbr, abbr.replace(".", f"\x00{i}\x00"))
    parts: list[str] = []
    cursor = 0
    for m in _SENTENCE_END.finditer(protected):
        parts.append(protected[cursor : m.end()])
        cursor = m.end()
    parts.append(protected[cursor:])
    parts = [p for p in parts if p.strip()]
    out: list[str] = []
    for part in parts:
        for i, abbr in enumerate(_ABBREVIATIONS):
            part = part.replace(abbr.replace(".", f"\x00{i}\x00"), abbr)
        part = part.strip()
        # "... 1889. [1]" — a sentence that is only markers belongs to the previous one.
        if (out and _LIST_NUMBER.fullmatch(out[-1])) or (
            out and MARKER.sub("", part).strip(" .") == ""
        ):  # "1." of a numbered list opens its item
            out[-1] = f"{out[-1]} {part}"
        elif out and part[:1] == "[" and (lead := MARKER.match(part)):
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            rest = part[lead.end() :].strip()
            if rest:
                out.append(rest)
        else:
            out.append(part)
    return out


def without_headings(sentence: str, headings: set[str]) -> str:
    """The sentence without the heading lines glued to its front ("Laptops and devices\nAll
    laptops use ..."); "" when it is only a heading. A line is a heading when it is one of the
    passage's title/section names; in a passage without any (plain text, PDF), when it is
    short, holds no punctuation and a capitalised line follows."""
    text = sentence.strip()
    while text:
        first, _, rest = text.partition("\n")
        line = " ".join(first.split()).strip("#*- ")
        if rest and not rest.lstrip()[:1].isupper():
            break  # a line wrapped mid-sentence
        if line.lower() in headings or (
            rest
            and len(headings) <= 1  # only the document title is known
            and len(line.split()) <= 6
            and not any(c in line for c in ".!?:;,")
        ):
            text = rest.strip()
            continue
        break
    return text


def passage_segments(text: str) -> list[str]:
    """The passage's sentences, a blank line ending one too: a manual page's NAME line ("git-fetch
    - Download objects and refs from another repository"), a list item or a line of code is
    not run together with the synopsis or paragraph after it. A short line on its own (a term,
    an option, a parameter) opens the sentence after it ("-a --annotate\nMake an unsigned,
    annotated tag object"); a heading among them is dropped with the passage's headings. A
    sentence that announces what follows with a colon ("... using the following command:")
    takes the short line after it along ("dropdb mydb"): that line is what it says."""
    parts: list[str] = []
    label = ""
    for paragraph in _BLANK_LINE.split(text):
        sentences = split_sentences(paragraph) if paragraph.strip() else []
        if (
            len(sentences) == 1
            and len(_WORDS.findall(sentences[0])) < MIN_ANSWER_WORDS
            and not sentences[0].isupper()  # a manual page's NAME, SYNOPSIS: headings
        ):
            # a term, an option or a parameter on its own line labels what follows
            # ("work_mem (integer)", "-a --annotate"): said with it, as a definition list reads
            announced = bool(parts) and parts[-1].rstrip().endswith(":")
            parts.append(sentences[0])
            if not announced:  # a line a colon announced is said with that sentence, not after
                label = f"{label}\n{sentences[0]}".strip()
            continue
        if label and sentences:
            sentences[0] = f"{label}\n{sentences[0]}"
        label = ""
        parts += sentences
    out = []
    for i, part in enumerate(parts):
        after = parts[i + 1].strip() if i + 1 < len(parts) else ""
        if part.rstrip().endswith(":") and 0 < len(after.split()) <= _ANNOUNCED_WORDS:
            part = f"{part.rstrip()} {after}"
        out.append(part)
    return out or [text]
