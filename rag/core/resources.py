"""Where the files that ship with the code are, read through :mod:`importlib.resources`.

- ``configs/`` (``default.yaml``, ``vllm.yaml``, ``prompts/<name>/<version>.yaml``): the
  top-level ``configs/`` folder is the one source of truth. A wheel carries a copy of it as
  package data, ``rag/_defaults/configs/`` (setup.py's ``build_py`` copies it at build time); a
  source checkout or editable install has no ``rag/_defaults`` and reads the checkout's
  ``configs/`` itself. :func:`project_root` is the folder holding ``configs/`` either way, so a
  relative path such as ``configs/prompts`` means the same in both.
- package data of a package: :func:`package_path` (the chat page, ``api/static``; the golden
  set, ``evals/golden.jsonl``). Each package asks for its own files, so ``rag`` names no
  package above it.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["default_config", "find_config", "package_path", "project_root"]

# The wheel's copy of configs/ lives at rag/_defaults/configs (see setup.py).
_SHIPPED = "_defaults"
_extracted = ExitStack()  # files extracted from a zipped install, removed at exit
atexit.register(_extracted.close)


def _real_path(item: Traversable) -> Path:
    """A filesystem path for a resource (installed wheels are plain folders: no copy made)."""
    if isinstance(item, Path):
        return item
    return _extracted.enter_context(resources.as_file(item))


def package_path(package: str, *parts: str) -> Path:
    """The path of a package data file or folder, e.g. ``package_path("api", "static")``."""
    item = resources.files(package)
    for part in parts:
        item = item / part
    return _real_path(item)


@cache
def project_root() -> Path:
    """The folder holding ``configs/``: the wheel's ``rag/_defaults``, else the source checkout."""
    shipped = resources.files("rag") / _SHIPPED
    if (shipped / "configs").is_dir():
        return _real_path(shipped)
    # A source checkout (or editable install): rag/ sits next to the top-level configs/.
    return package_path("rag").resolve().parent


def default_config() -> Path:
    """``configs/default.yaml``, the embedded profile."""
    return project_root() / "configs" / "default.yaml"


def find_config(path: str | Path) -> Path:
    """A config file as given; a relative one missing from the working directory is looked up
    against :func:`project_root` too, so ``--config configs/vllm.yaml`` works from any folder."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    shipped = project_root() / given
    return shipped if shipped.is_file() else given
