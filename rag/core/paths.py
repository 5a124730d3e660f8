"""Which files under a watched folder are documents: ``ingestion.exclude`` patterns.

Patterns follow .gitignore, the syntax people already write for "not these files":

- ``_sources``: a name without a slash matches that file or folder name at any depth;
- ``/build`` or ``docs/_static``: a pattern with a slash is anchored at the watched folder;
- ``drafts/``: a trailing slash matches folders only (everything beneath them);
- ``*`` and ``?`` stay within one name; ``**`` spans folders (``**/tmp/*.md``);
- ``*.txt`` matches ``notes.txt`` and ``a/b/notes.txt``.

Negation (``!pattern``) is refused with a clear error rather than half-supported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from rag.core.errors import ConfigError

__all__ = ["PathFilter", "escape_reason"]


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


class PathFilter:
    """Compiled ``ingestion.exclude`` patterns; ``excludes(rel)`` takes a POSIX relative path."""

    def __init__(self, patterns: Iterable[str] = (), setting: str = "ingestion.exclude"):
        # ``setting``: the key the patterns come from, named in errors (``access.rules``
        # compiles each rule's ``path`` here too: one .gitignore dialect for both).
        self.patterns: tuple[str, ...] = tuple(patterns)
        self._file: list[re.Pattern[str]] = []  # matched against the file's own path
        self._dir: list[re.Pattern[str]] = []  # matched against each parent folder's path
        for raw in self.patterns:
            pattern = raw.strip()
            if not pattern or pattern.startswith("#"):
                raise ConfigError(
                    f"{setting}: {raw!r} is empty or a comment; remove it from the list"
                )
            if pattern.startswith("!"):
                raise ConfigError(
                    f"{setting}: {raw!r}: negated patterns are not supported; "
                    "narrow the pattern that excludes the file instead"
                )
            dir_only = pattern.endswith("/")
            body = pattern.strip("/")
            if not body:
                raise ConfigError(
                    f"{setting}: {raw!r} would match the whole folder; "
                    + (
                        "remove the folder from ingestion.folders instead"
                        if setting == "ingestion.exclude"
                        else "use access.default for the whole folder"
                    )
                )
            anchored = "/" in body or pattern.startswith("/")
            regex = _glob_to_regex(body)
            compiled = re.compile(("" if anchored else "(?:.*/)?") + regex + r"\Z")
            self._dir.append(compiled)
            if not dir_only:
                self._file.append(compiled)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excludes(self, rel: str) -> bool:
        """True when ``rel`` (a file path relative to the watched folder) is not a document."""
        if not self.patterns:
            return False
        rel = rel.strip("/")
        if any(p.match(rel) for p in self._file):
            return True
        parts = rel.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if any(p.match(folder) for p in self._dir):
                return True
        return False

    def excludes_folder(self, rel: str) -> bool:
        """True when everything in the folder ``rel`` is excluded (it or a parent matches a
        pattern that matches folders): a walk need not enter it."""
        if not self.patterns:
            return False
        parts = rel.strip("/").split("/")
        return any(
            p.match("/".join(parts[:depth]))
            for depth in range(1, len(parts) + 1)
            for p in self._dir
        )

    def keep(self, rels: Sequence[str]) -> list[str]:
        return [r for r in rels if not self.excludes(r)]


def escape_reason(
    root: Path, source: str, *, tenant: str, data_dir: Path, tenants_root: Path
) -> str | None:
    """Why the file ``root/source`` really is may not be read as a document, or None: the one
    check every reader of a watched file applies (ingestion, ``GET /v1/sources``).

    A symlink may point anywhere (``/etc/passwd``, the data dir's keys, another tenant's
    upload): what is read must lie inside the folder it was found in — for a tenant's upload
    (``root`` is ``tenants_root``), inside that tenant's folder — and never under the data dir
    (the store, the manifest, keys), except tenants' own folders. Reasons name no paths. A
    broken link or a loop passes here: reading the file reports it."""
    path = root / source
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    inside = root / tenant if root == tenants_root else root
    if not real.is_relative_to(inside.resolve()):
        return (
            "symlink to a file outside the watched folder: not indexed (copy the file "
            "into the folder instead)"
        )
    if real.is_relative_to(data_dir.resolve()) and not real.is_relative_to(tenants_root.resolve()):
        return "inside the data dir (the index, manifest and keys are never indexed)"
    return None
