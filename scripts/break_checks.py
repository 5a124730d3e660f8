"""Tests that can fail: each entry breaks one guarantee on purpose, in a copy of the checkout,
and runs the test that guards it; the test must fail. A test that still passes is reported.

    .venv/bin/python scripts/break_checks.py            # every entry
    .venv/bin/python scripts/break_checks.py layout     # entries whose name contains "layout"
    .venv/bin/python scripts/break_checks.py --list

The copy is made with ``git ls-files`` (tracked and new files, no data, no venv) under a
temporary folder; the checkout itself is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    name: str
    path: str  # file to change, relative to the checkout
    old: str  # text replaced (must occur once)
    new: str
    test: str  # the pytest node that must now fail


BREAKS = [
    Break(
        "layout: README lists a stage out of order",
        "README.md",
        "2. **Prompt** (`prompt`,",
        "2. **Prompt** (`promptx`,",
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
        "tracing: stopping waits for a stalled Langfuse without bound",
        "rag/observability/langfuse.py",
        "        done = _bounded(stop, timeout)\n",
        "        done = _bounded(stop, 1e9)\n",
        "tests/app/test_cli_serve_tracing.py",
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
    # -- follow-ups (issue 30): condense before retrieval, answer selection and verification --
    Break(
        "follow-ups: the standalone question is not what later stages read",
        "rag/query/condense.py",
        "        state.question = state.asked = result.question\n",
        "        pass\n",
        "tests/rag/query/test_condense.py::test_the_standalone_question_is_what_every_stage_reads",
    ),
    Break(
        "follow-ups: an elliptical fragment is taken for a complete question",
        "rag/query/condense.py",
        '    if after_lead and roles[0] != "wh":\n        return True\n',
        '    if after_lead and roles[0] != "wh":\n        return False\n',
        "tests/rag/query/test_condense.py::test_the_issues_three_conversations",
    ),
    Break(
        "follow-ups: a pronoun in a new complete question is resolved against old turns",
        "rag/query/condense.py",
        "    return before in _BE and len(after) >= 2 and after[1] in clause\n",
        "    return False\n",
        "tests/rag/query/test_condense.py::test_a_topic_shift_is_not_polluted_by_earlier_turns",
    ),
    Break(
        "follow-ups: the model rewrite's failure is not caught (no rules fallback)",
        "rag/query/condense.py",
        "        except Exception as exc:  # noqa: BLE001 - the rules' result stands\n"
        '            outcome, error = "failed", f"{type(exc).__name__}: {exc}"\n',
        "        except KeyboardInterrupt:\n            raise\n",
        "tests/rag/query/test_condense.py::test_the_rules_stand_when_the_model_rewrite_fails",
    ),
    Break(
        "follow-ups: /v1/query drops the history",
        "api/routes_query.py",
        "            [(m.role, m.content) for m in body.history or []],\n",
        "            [],\n",
        "tests/api/test_follow_ups.py::test_a_follow_up_streamed_carries_its_standalone_question",
    ),
    Break(
        "follow-ups: chat completions drop the earlier messages",
        "api/chat.py",
        "    earlier = [(m.role, m.text()) for m in messages[:last_user]]\n",
        "    earlier: list[tuple[str, str]] = []\n",
        "tests/api/test_follow_ups.py::"
        "test_the_openai_clients_follow_up_is_answered_as_its_standalone_question",
    ),
    Break(
        "follow-ups: the answer does not report its standalone question",
        "rag/query/pipeline.py",
        "        state.answer.standalone_question = state.standalone\n",
        "",
        "tests/api/test_follow_ups.py::test_a_follow_up_streamed_carries_its_standalone_question",
    ),
    Break(
        "follow-ups: the condense span carries no standalone question",
        "rag/observability/langfuse.py",
        '            fields["output"] = {"standalone_question": self.scrubber.quick(state.standalone)}\n',
        "            pass\n",
        "tests/rag/observability/test_langfuse.py::"
        "test_a_follow_ups_standalone_question_is_in_its_condense_span",
    ),
    Break(
        "follow-ups: the report has no follow-up figures",
        "evals/report.py",
        '        for part in ("first_turn", "follow_up"):  # evals/conversations.py, side by side\n',
        "        for part in ():\n",
        "tests/evals/test_conversations.py::"
        "test_each_turn_gets_the_conversation_so_far_and_both_sides_are_scored",
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


def run(entry: Break) -> bool:
    """True when the test failed, as it must."""
    with tempfile.TemporaryDirectory(prefix="break-") as tmp:
        copy = Path(tmp)
        copy_checkout(copy)
        path = copy / entry.path
        text = path.read_text(encoding="utf-8")
        if text.count(entry.old) != 1:
            print(f"  ! {entry.name}: the text to break is not in {entry.path} exactly once")
            return False
        path.write_text(text.replace(entry.old, entry.new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(copy)}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", entry.test],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
        )
        return result.returncode != 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("match", nargs="?", default="")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    chosen = [b for b in BREAKS if args.match in b.name]
    if args.list:
        for b in chosen:
            print(f"{b.name}: {b.path} -> {b.test}")
        return 0
    survivors = []
    for entry in chosen:
        failed = run(entry)
        print(f"{'caught' if failed else 'MISSED'}  {entry.name}  ({entry.test})", flush=True)
        if not failed:
            survivors.append(entry.name)
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} breaks caught by their tests")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
