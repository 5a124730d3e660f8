"""The library's shape as ARCHITECTURE.md promises it: a facade, a few wings, no import circle,
and docs that list the stages in the order the code runs them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import rag
from rag.core.config import Settings
from rag.query.pipeline import default_stages

REPO = Path(__file__).resolve().parents[2]


def _graph_tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "import_graph", REPO / "scripts" / "import_graph.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_facade_lists_every_public_name_and_each_resolves() -> None:
    assert rag.__all__ == sorted(rag._EXPORTS), "__all__ and the export table disagree"
    for name in rag.__all__:
        value = getattr(rag, name)
        assert getattr(value, "__name__", name) == name or name in ("StreamEvent",), name


def test_importing_the_facade_loads_no_wing() -> None:
    """``import rag`` is cheap: each public name loads its module on first use."""
    code = "import sys, rag; print(sorted(m for m in sys.modules if m.startswith('rag.')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    assert out == "[]"


def test_few_modules_directly_under_rag_and_no_import_circle() -> None:
    tool = _graph_tool()
    top = [p.name for p in (REPO / "rag").glob("*.py")]
    assert len(top) <= 10, top
    files = {tool.module_name(p, REPO / "rag"): p for p in (REPO / "rag").rglob("*.py")}
    graph = {m: tool.imports_of(p, m, set(files)) for m, p in files.items()}
    for m, p in files.items():
        if p.name == "__init__.py":
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    assert tool.strongly_connected(graph) == [], "an import circle inside rag/"


def test_the_tool_finds_a_circle_when_there_is_one() -> None:
    tool = _graph_tool()
    assert tool.strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]


def test_readme_and_architecture_list_the_stages_in_the_order_they_run(tmp_path: Path) -> None:
    class _Index:  # default_stages only wires the parts; nothing is opened or loaded
        data_dir = tmp_path
        alias = "kb"
        collection = None
        store = None

        class embedder:
            dimension = 384

            @staticmethod
            def embed(texts: list[str]) -> Any:
                raise AssertionError("not called while wiring")

            embed_documents = embed_documents_batched = embed

        @staticmethod
        def stored_vectors(texts: list[str]) -> Any:
            raise AssertionError("not called while wiring")

    settings = Settings(data_dir=str(tmp_path), cache={"enabled": True, "backend": "local"})
    names = [s.name for s in default_stages(_Index(), settings)]  # type: ignore[arg-type]
    assert names == [
        "condense",
        "prompt",
        "cache",
        "retrieve",
        "rerank",
        "pack",
        "generate",
        "answer",
    ]

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The query path") :]
    section = section[: section.index("\n### ")]
    listed = re.findall(r"^\d\. \*\*\w+\*\* \(`([\w.]+)`", section, flags=re.MULTILINE)
    assert listed == names, "README's query path is not the order default_stages() runs"

    arch = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = arch[arch.index("## One query, top to bottom") :]
    table = table[: table.index("\n## ")]
    rows = re.findall(r"^\| \d \| `\w+` \(`([\w.]+)`", table, flags=re.MULTILINE)
    assert rows == names, "ARCHITECTURE.md's stage table is not the order default_stages() runs"
