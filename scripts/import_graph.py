"""The import graph of a package, as the closing notes report it: modules per (sub)package,
lines per package and the biggest one's share, and every import circle (strongly connected
component of more than one module). Every import counts: module level, inside functions and
under ``TYPE_CHECKING``.

    python scripts/import_graph.py rag            # a table
    python scripts/import_graph.py rag --json     # the same as JSON
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            # the longest known module the import names (``from rag.x import y``: rag.x.y or rag.x)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root: Path = args.package.resolve()
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph = {m: imports_of(p, m, modules) for m, p in files.items()}
    # A package's own __init__ importing its submodules is how packages work, not a circle.
    for m in graph:
        if (files[m].name == "__init__.py") and m in graph:
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    packages: dict[str, dict[str, int]] = defaultdict(lambda: {"modules": 0, "lines": 0})
    for m, p in files.items():
        pkg = ".".join(m.split(".")[:2]) if p.parent != root else root.name
        if p.name == "__init__.py" and p.parent == root:
            pkg = root.name
        packages[pkg]["modules"] += 1
        packages[pkg]["lines"] += len(p.read_text(encoding="utf-8").splitlines())
    total = sum(v["lines"] for v in packages.values())
    circles = strongly_connected(graph)
    biggest = max(packages.items(), key=lambda kv: kv[1]["lines"])
    report = {
        "modules": len(files),
        "lines": total,
        "directly_under_root": packages[root.name]["modules"],
        "packages": dict(sorted(packages.items())),
        "biggest_package": biggest[0],
        "biggest_share": round(biggest[1]["lines"] / total, 3),
        "circles": circles,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{root.name}: {len(files)} modules, {total} lines")
    print(f"{'package':<24} {'modules':>7} {'lines':>7} {'share':>6}")
    for pkg, v in sorted(packages.items()):
        print(f"{pkg:<24} {v['modules']:>7} {v['lines']:>7} {v['lines'] / total:>6.1%}")
    print(f"biggest: {biggest[0]} ({report['biggest_share']:.1%} of the lines)")
    print(f"import circles: {len(circles)}")
    for c in circles:
        print(f"  {len(c)} modules: {' '.join(c)}")


if __name__ == "__main__":
    main()
