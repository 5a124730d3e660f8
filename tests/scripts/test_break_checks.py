"""The list of breaks (scripts/break_checks.py) stays runnable and complete, checked here in
milliseconds: every README Security row has an entry, and each entry's text to break is in
its file once and its test function exists. Whether each test really fails on its break is
what `make guarantees` runs (minutes)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def break_checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("break_checks", REPO / "scripts/break_checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def security_rows() -> list[str]:
    """The "defended" cell of each row of the README's Security table, backticks dropped."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Security", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # no header
    return [row.split(" | ")[0].removeprefix("| ").replace("`", "") for row in rows]


def test_every_row_of_the_readme_security_table_has_a_break() -> None:
    rows = security_rows()
    assert len(rows) >= 19, rows
    named = {
        b.guarantee.removeprefix("Security: ").replace("`", "")
        for b in break_checks().BREAKS
        if b.guarantee.startswith("Security: ")
    }
    missing = [row for row in rows if not any(row.startswith(name) for name in named)]
    assert missing == [], (
        "README Security rows with no entry in scripts/break_checks.py (add a Break whose "
        f"guarantee is 'Security: <the row's first words>'): {missing}"
    )


def test_each_break_applies_once_and_names_one_existing_test_function() -> None:
    problems = []
    for b in break_checks().BREAKS:
        target = REPO / b.path
        text = target.read_text(encoding="utf-8") if target.is_file() else ""
        if text.count(b.old) != 1:
            problems.append(f"{b.name}: the text to break is in {b.path} {text.count(b.old)} times")
        file, _, function = b.test.partition("::")
        source = REPO / file
        if not function or "::" in function or "[" in function:
            problems.append(f"{b.name}: {b.test} is not one test function")
        elif not source.is_file() or not re.search(
            rf"^def {re.escape(function)}\(", source.read_text(encoding="utf-8"), re.MULTILINE
        ):
            problems.append(f"{b.name}: no function {function} in {file}")
    assert problems == [], "\n".join(problems)
