"""Tests that can fail: each entry breaks one guarantee on purpose, in a copy of the checkout,
and runs the test that guards it; the test must fail. A test that still passes is reported.

    .venv/bin/python scripts/break_checks.py            # every entry (what `make guarantees` runs)
    .venv/bin/python scripts/break_checks.py layout     # entries whose name or guarantee contains "layout"
    .venv/bin/python scripts/break_checks.py --list
    .venv/bin/python scripts/break_checks.py --baseline # first: every entry's test passes unbroken

Each entry gets its own scratch copy, made with ``git ls-files`` (tracked and new files, no
data, no venv) under a temporary folder; the checkout itself is never touched. One line per
entry: ``caught`` (the test failed), ``SURVIVED`` (it passed: the guarantee is not tested) or
``ERROR`` (the break could not be applied, or pytest did not get to fail a test: a collection
error, no test selected, an error in a fixture). Anything but ``caught`` fails the run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    name: str
    path: str  # file to change, relative to the checkout
    old: str  # text replaced (must occur once)
    new: str
    test: str  # the pytest node that must now fail: one test function, to keep the run short
    guarantee: str = ""  # the promise broken (a README Security row, say): groups the report


BREAKS = [
    Break(
        "layout: README lists a stage out of order",
        "README.md",
        "1. **Prompt** (`prompt`,",
        "1. **Prompt** (`promptx`,",
        "tests/rag/test_layout.py::test_readme_and_architecture_list_the_stages_in_the_order_they_run",
    ),
    Break(
        "layout: an import circle inside rag/",
        "rag/core/errors.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from rag.query.pipeline import QueryPipeline  # noqa: F401\n",
        "tests/rag/test_layout.py::test_few_modules_directly_under_rag_and_no_import_circle",
    ),
    Break(
        "layout: the facade loads every wing on import",
        "rag/__init__.py",
        "import importlib\n",
        "import importlib\n\nimport rag.query.pipeline  # noqa: F401\n",
        "tests/rag/test_layout.py::test_importing_the_facade_loads_no_wing",
    ),
    Break(
        "cache: the scope selects the prompt again",
        "rag/query/answer_cache.py",
        "        q, prompt = state.query, state.prompt\n",
        "        q, prompt = state.query, state.prompt\n"
        "        from rag.query.prompts import PromptRegistry\n\n"
        "        PromptRegistry(self.settings.prompts).select(q.prompt, user=q.user, session=q.session)\n",
        "tests/rag/query/test_answer_cache.py::test_the_prompt_is_selected_once_per_request",
    ),
    Break(
        "cache: default_stages without the cache stage",
        "rag/query/pipeline.py",
        "    if settings.cache.enabled:\n",
        "    if False:\n",
        "tests/rag/query/test_answer_cache.py::test_stages_passed_from_default_stages_keep_the_cache",
    ),
    Break(
        "readyz: a backend's health is not asked",
        "api/routes_ops.py",
        "            for part, line in service.pipeline.health().items()\n",
        "            for part, line in {}.items()\n",
        "tests/api/test_readiness.py::test_readyz_names_a_generator_that_cannot_answer",
    ),
    Break(
        "sources: the route serves a link out of the watched folder",
        "api/documents.py",
        "        if reason is not None:\n            raise self.not_found(source)\n",
        "",
        "tests/api/test_sources.py",
    ),
    Break(
        "question: an invisible-only question reaches the pipeline",
        "rag/core/textguard.py",
        "    if is_blank(text):\n",
        "    if False:\n",
        "tests/rag/core/test_invisible_text.py",
    ),
    Break(
        "tables: ingestion reads a fixed list of suffixes, not the parser table",
        "rag/indexing/parsing.py",
        "    registered = supported_extensions()\n    if extensions is None:\n",
        '    registered = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")\n'
        "    if extensions is None:\n",
        "tests/rag/indexing/test_parser_table.py::"
        "test_rag_ingest_and_query_read_a_format_registered_from_outside",
    ),
    Break(
        "tables: parse_bytes dispatches on the built-ins only",
        "rag/indexing/parsing.py",
        "    doc = parser_for(suffix).run(data, name)\n",
        "    doc = {s: p for p in _BUILT_IN for s in p.suffixes}[suffix].run(data, name)\n",
        "tests/rag/indexing/test_parser_table.py::test_parse_bytes_goes_through_the_table",
    ),
    Break(
        "tables: open_store knows edge and qdrant only",
        "rag/store/__init__.py",
        "    return STORES.get(settings.store.backend)(settings)\n",
        '    return (_open_qdrant if settings.store.backend == "qdrant" else _open_edge)(settings)\n',
        "tests/rag/store/test_store_table.py",
    ),
    Break(
        "tables: build_generator knows the built-ins only",
        "rag/generate/chain.py",
        "    return GENERATORS.get(name)(GeneratorContext(settings, scorer, local_tokens))\n",
        '    fixed = {"openai": _openai, "local": _local, "extractive": _extractive}\n'
        "    return fixed[name](GeneratorContext(settings, scorer, local_tokens))\n",
        "tests/rag/generate/test_generator_table.py",
    ),
    Break(
        "tables: build_reranker ignores a registered reranker",
        "rag/query/rerank.py",
        "    return RERANKERS.get(settings.backend)(settings, embedder)\n",
        '    if settings.backend not in ("cross-encoder", "embedding"):\n'
        "        return NoReranker(settings)\n"
        "    return RERANKERS.get(settings.backend)(settings, embedder)\n",
        "tests/rag/query/test_reranker_table.py",
    ),
    Break(
        "tables: the CLI does not check plug-in names at start",
        "app/cli/core.py",
        "            state.settings = check_settings(settings)\n",
        "            state.settings = settings\n",
        "tests/app/test_cli_plugins.py",
    ),
    # -- issue 25: the README's promises, each broken the way the author broke it ----
    Break(
        "the version lock compares only the dimension",
        "rag/indexing/index.py",
        '            for k in ("model", "dimension", "fingerprint", "normalize")\n',
        '            for k in ("dimension",)\n',
        "tests/rag/indexing/test_index.py::test_the_lock_compares_the_model_not_only_its_dimension",
        guarantee="version lock refuses another model",
    ),
    Break(
        "the cache checks only the cited chunks, not their documents",
        "rag/query/answer_cache.py",
        '        for doc_id, ids in (cited.get("documents") or {}).items():\n',
        "        for doc_id, ids in {}.items():\n",
        "tests/rag/query/test_answer_cache.py::"
        "test_an_edit_to_an_uncited_part_of_a_cited_document_is_a_miss",
        guarantee="an edit to a cited document invalidates its cached answers",
    ),
    Break(
        "the cache keeps degraded answers",
        "rag/query/answer_cache.py",
        "            or answer.degraded\n",
        "",
        "tests/rag/query/test_answer_cache.py::test_a_degraded_answer_is_never_cached",
        guarantee="degraded answers are never cached",
    ),
    Break(
        "log scrubbing limited to the rag and api loggers",
        "rag/guards/pii/logs.py",
        'SCRUBBED_LOGGERS = ("rag", "api", "app", "ingestion", "evals", "benchmarks")\n',
        'SCRUBBED_LOGGERS = ("rag", "api")\n',
        "tests/rag/guards/pii/test_leak_canary.py::test_every_logger_of_the_project_is_scrubbed",
        guarantee="logs of the app, ingestion and evals are scrubbed",
    ),
    Break(
        "a sync no longer removes orphaned chunks",
        "rag/indexing/ingest.py",
        "            self._remove_orphans(root, present, report)\n",
        "",
        "tests/ingestion/test_daemon_crash.py::"
        "test_chunks_upserted_but_not_recorded_at_a_kill_9_are_removed_on_restart",
        guarantee="the daemon removes orphans after kill -9",
    ),
    Break(
        "flagged chunks counted as excluded but kept",
        "rag/query/guard.py",
        "            else:\n                excluded += 1\n",
        "            else:\n                excluded += 1\n                kept.append(hit)\n",
        "tests/rag/guards/test_injection.py::test_excluded_chunks_never_reach_the_context",
        guarantee="flagged injection chunks are kept out of the context",
    ),
    Break(
        "each chat delta cut in half",
        "api/chat.py",
        '            yield self._chunk({"content": str(payload)})\n',
        '            yield self._chunk({"content": str(payload)[: len(str(payload)) // 2]})\n',
        "tests/api/test_openai.py::test_streaming_through_the_client_delivers_text_then_citations",
        guarantee="/v1/chat/completions streaming equals the answer",
    ),
    Break(
        "the chat stream drops a fallback's reset",
        "api/chat.py",
        '            yield self._chunk({}, rag={"reset": dict(payload or {})})\n',
        "            pass\n",
        "tests/api/test_openai.py::"
        "test_a_stream_withdrawn_by_a_fallback_says_so_and_the_rest_is_the_answer",
        guarantee="/v1/chat/completions streaming equals the answer",
    ),
    Break(
        "the stream shows sentences before one is supported",
        "rag/verification/citations.py",
        "            if self.verifier.answered:\n                self._release(self._held)\n",
        "            if True:\n                self._release(self._held)\n",
        "tests/rag/query/test_stages.py::test_the_stream_concatenated_is_the_answer",
        guarantee="the stream is the answer (token texts since the last reset)",
    ),
    Break(
        "a reset does not clear the text already shown from the answer",
        "rag/query/stages.py",
        "                    if release.has_released:\n                        state.answer_text.clear()\n",
        "                    if release.has_released:\n",
        "tests/rag/query/test_stages.py::test_the_stream_concatenated_is_the_answer",
        guarantee="the stream is the answer (token texts since the last reset)",
    ),
    Break(
        "a disconnect stops generation only at the next event",
        "api/service.py",
        "        self.cancelled.set()\n        self.cancel_pipeline()\n",
        "        self.cancelled.set()\n",
        "tests/api/test_limits.py::"
        "test_client_disconnect_stops_the_real_pipeline_and_closes_the_backend_request",
        guarantee="a client disconnect cancels generation",
    ),
]


def copy_checkout(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


_SUMMARY = re.compile(r"^=*\s*(?:\d+ \w+(?:, )?)+.* in [\d.]+s", re.MULTILINE)


def pytest(copy: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    # Temporary files inside the scratch folder: runs at once do not share (or clean up)
    # pytest's common temporary root, whatever other runs left there.
    basetemp = f"--basetemp={copy / '.pytest-tmp'}"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                basetemp,
                *tests,
            ],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return -1, f"pytest ran past {timeout:.0f} s"
    return result.returncode, result.stdout + result.stderr


def verdict(returncode: int, output: str) -> str:
    """``caught`` only when pytest ran the test and it failed (exit 1 with a failure)."""
    if returncode == 0:
        return "SURVIVED"
    found = _SUMMARY.findall(output)
    summary = found[-1] if found else ""
    if returncode == 1 and re.search(r"\d+ failed", summary):
        return "caught"
    return "ERROR"


@dataclass
class Outcome:
    entry: Break
    status: str  # caught | SURVIVED | ERROR
    seconds: float
    detail: str = ""


def run(entry: Break, timeout: float) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="break-", ignore_cleanup_errors=True) as tmp:
        copy = Path(tmp)
        copy_checkout(copy)
        path = copy / entry.path
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if text.count(entry.old) != 1:
            why = f"the text to break is not in {entry.path} exactly once"
            return Outcome(entry, "ERROR", time.monotonic() - started, why)
        path.write_text(text.replace(entry.old, entry.new), encoding="utf-8")
        code, output = pytest(copy, [entry.test], timeout)
    status = verdict(code, output)
    detail = "" if status == "caught" else "\n".join(output.strip().splitlines()[-15:])
    return Outcome(entry, status, time.monotonic() - started, detail)


def baseline(entries: list[Break], timeout: float) -> int:
    """Every entry's test, unbroken, in one run: a test that fails anyway proves nothing."""
    tests = list(dict.fromkeys(e.test for e in entries))
    with tempfile.TemporaryDirectory(prefix="break-baseline-", ignore_cleanup_errors=True) as tmp:
        copy_checkout(Path(tmp))
        code, output = pytest(Path(tmp), tests, timeout * 2)
    if code != 0:
        print("baseline: the tests fail without any break; fix them first:")
        print("\n".join(output.strip().splitlines()[-30:]))
        return 1
    print(f"baseline: the {len(tests)} tests pass unbroken", flush=True)
    return 0


def line(o: Outcome) -> str:
    what = f"{o.entry.guarantee}: {o.entry.name}" if o.entry.guarantee else o.entry.name
    return f"{o.status:8}  {what}  ({o.entry.test}, {o.seconds:.0f} s)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "match", nargs="?", default="", help="only entries whose name or guarantee contains this"
    )
    ap.add_argument("--list", action="store_true", help="list the entries, run nothing")
    ap.add_argument(
        "--baseline", action="store_true", help="first check every test passes unbroken"
    )
    ap.add_argument("-j", "--jobs", type=int, default=1, help="entries run at once (default 1)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per entry (default 900)")
    args = ap.parse_args()
    chosen = [b for b in BREAKS if args.match in b.name or args.match in b.guarantee]
    if args.list:
        for b in chosen:
            print(f"{b.guarantee or '-'} | {b.name} | {b.path} -> {b.test}")
        return 0
    if not chosen:
        print(f"no entry matches {args.match!r}")
        return 1
    started = time.monotonic()
    if args.baseline and baseline(chosen, args.timeout):
        return 1
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for outcome in pool.map(lambda e: run(e, args.timeout), chosen):
            outcomes.append(outcome)
            print(line(outcome), flush=True)
            if outcome.detail:
                print("    " + outcome.detail.replace("\n", "\n    "), flush=True)
    bad = [o for o in outcomes if o.status != "caught"]
    print(
        f"{len(outcomes) - len(bad)} of {len(outcomes)} breaks caught by their tests "
        f"({time.monotonic() - started:.0f} s)"
    )
    for o in bad:
        print(f"  {o.status}: {o.entry.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
