"""The walk of one question through the code: which modules of ``rag``/``api`` a ``POST
/v1/query`` passes through, in order, and how often it goes back to a module it had left.

    .venv/bin/python scripts/request_walk.py [--cache [--hit]] [--json]

An in-process app over ``examples/docs`` (a temporary data dir, the default extractive chain);
one question answered to warm everything, then the same kind of question profiled
(``sys.setprofile`` in every thread): each Python call whose code lives under ``rag/`` or
``api/`` records its module. Printed: the sequence with repeats collapsed, the number of
module changes, and the returns (entering a module the walk had already left). Works on any
checkout of this project (it imports through ``api.app`` and the CLI's config loader).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _settings(data_dir: Path, cache: bool) -> Any:
    try:
        from rag.core.config import Settings
    except ImportError:  # a checkout from before the wings
        from rag.config import Settings  # type: ignore[no-redef]
    return Settings(
        data_dir=str(data_dir),
        generation={"chain": ["extractive"]},
        cache={"enabled": cache},
        evals={"after_sync": False},
        api={"requests_per_minute": 100_000, "burst": 10_000},
    )


def _dependencies() -> dict[str, set[str]]:
    """Module → every module it imports, transitively (rag/ and api/ of this checkout)."""
    import ast

    files = {
        p.relative_to(ROOT)
        .with_suffix("")
        .as_posix()
        .replace("/", ".")
        .removesuffix(".__init__"): p
        for top in ("rag", "api")
        for p in (ROOT / top).rglob("*.py")
    }
    direct: dict[str, set[str]] = {}
    for name, path in files.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out.add(target)
        direct[name] = out
    closure: dict[str, set[str]] = {}
    for name in direct:
        seen: set[str] = set()
        todo = list(direct[name])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(direct.get(m, ()))
        closure[name] = seen
    return closure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", action="store_true", help="answer cache on (the default config)")
    ap.add_argument("--hit", action="store_true", help="ask the warm-up question again")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from api.app import create_app

    try:
        from rag.indexing.index import Index
        from rag.indexing.ingest import Ingestor
    except ImportError:
        from rag.index import Index  # type: ignore[no-redef]
        from rag.ingest import Ingestor  # type: ignore[no-redef]

    tmp = Path(tempfile.mkdtemp(prefix="walk-"))
    settings = _settings(tmp / "data", args.cache)
    index = Index(settings)
    index.open(create=True)
    Ingestor(index).sync_folder(ROOT / "examples" / "docs")
    active = threading.Event()  # only the measured request is recorded
    walk: list[str] = []
    calls: set[tuple[str, str]] = set()
    selections: list[str] = []  # PromptRegistry.select calls: the prompt chosen, how often
    lock = threading.Lock()
    roots = (str(ROOT / "rag") + os.sep, str(ROOT / "api") + os.sep)

    def module_of(path: str) -> str | None:
        if not path.startswith(roots):
            return None
        name = Path(path).relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
        return name.removesuffix(".__init__")

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not active.is_set():
            return
        module = module_of(frame.f_code.co_filename)
        if module is None:
            return
        caller = frame.f_back
        # the nearest caller frame in our code (skipping contextlib, threading, …)
        while caller is not None and module_of(caller.f_code.co_filename) is None:
            caller = caller.f_back
        with lock:
            if module.endswith("prompts") and frame.f_code.co_name == "select":
                selections.append(module)
            if caller is not None:
                calls.add((module_of(caller.f_code.co_filename) or "", module))
            if not walk or walk[-1] != module:
                walk.append(module)

    # every thread, the test client's event loop included (it starts with the client)
    threading.setprofile(profile)
    sys.setprofile(profile)
    app = create_app(settings, index=index)
    with TestClient(app, base_url="http://localhost") as client:  # an allowed Host
        from api.auth import KeyStore

        key = KeyStore(index.data_dir, settings.api.keys).local_key(settings.tenant)
        headers = {"Authorization": f"Bearer {key}"}
        body = {"question": "How long are backups kept?", "stream": False}
        first = client.post("/v1/query", json=body, headers=headers)
        first.raise_for_status()
        if not args.hit:
            body = {"question": "How soon must a page be acknowledged?", "stream": False}

        active.set()
        try:
            answer = client.post("/v1/query", json=body, headers=headers)
        finally:
            active.clear()
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
        answer.raise_for_status()
    index.close()

    # A call back up: the caller is a module the callee imports (directly or not), so the
    # request went down into it and came back (callbacks, a cache calling its pipeline).
    deps = _dependencies()
    back = sorted(
        (a, b)
        for a, b in calls
        if a != b and a in deps.get(b, set()) and b not in deps.get(a, set())
    )
    seen = set(walk)
    report = {
        "answer": answer.json().get("answer"),
        "cached": answer.json().get("cached"),
        "distinct_modules": len(seen),
        "order": list(dict.fromkeys(walk)),
        "module_pairs_called": len({c for c in calls if c[0] != c[1]}),
        "prompt_selections": len(selections),
        "calls_back_up": [f"{a} -> {b}" for a, b in back],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"answer: {report['answer']!r} (cached: {report['cached']})")
    print(
        f"{len(seen)} modules, {report['module_pairs_called']} caller→callee module pairs, "
        f"{len(back)} calls back up the imports, the prompt selected "
        f"{report['prompt_selections']} time(s)"
    )
    print("first entry order: " + " → ".join(report["order"]))
    for line in report["calls_back_up"]:
        print("  back up: " + line)


if __name__ == "__main__":
    main()
