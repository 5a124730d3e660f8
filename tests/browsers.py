"""Debian's headless Chromium and chromedriver for the browser tests (a prerequisite of `make test`).

A missing binary fails the test that needs it, on every machine, with the command that
installs it: a browser test that is skipped proves nothing.
"""

from __future__ import annotations

import shutil

import pytest

INSTALL = "apt-get install -y chromium chromium-driver"


def _require(names: tuple[str, ...], package: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        f"{' / '.join(names)} not found on PATH: the browser tests need Debian's {package}"
        f" (a prerequisite of `make test`); install it with: {INSTALL}",
        pytrace=False,
    )


def chromium() -> str:
    return _require(("chromium", "chromium-browser"), "chromium")


def chromedriver() -> str:
    return _require(("chromedriver",), "chromium-driver")
