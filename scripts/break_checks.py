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
    # -- fuzzing every route (issue 25): what scripts/fuzz_routes.py found, and its coverage --
    Break(
        "fuzz: JSON nested past the parser's depth escapes the form relabelling",
        "api/bodies.py",
        "    except RecursionError:\n",
        "    except ArithmeticError:\n",
        "tests/api/test_form_json.py::test_json_nested_past_the_parsers_depth_is_a_4xx_not_a_500",
    ),
    Break(
        "fuzz: a lone surrogate escape reaches the tokenizer and the store",
        "api/bodies.py",
        "            if value is not _NOT_JSON and _has_lone_surrogate(value):\n",
        "            if False:\n",
        "tests/api/test_form_json.py::test_a_lone_surrogate_escape_is_a_422_naming_it",
    ),
    Break(
        "fuzz: the control API parses a Content-Length that is no number",
        "app/control.py",
        "                if not (raw.isascii() and raw.isdigit()):\n",
        "                if False:\n",
        "tests/app/test_control.py::test_bad_framing_and_other_methods_get_a_json_answer",
    ),
    Break(
        "fuzz: the control API leaves other methods to http.server (HTML 501)",
        "app/control.py",
        '                if name.startswith("do_"):\n',
        '                if name.startswith("do_NOTHING"):\n',
        "tests/app/test_control.py::test_bad_framing_and_other_methods_get_a_json_answer",
    ),
    Break(
        "fuzz: the control API lets JSON nested too deeply escape",
        "app/control.py",
        "    except RecursionError:\n",
        "    except ArithmeticError:\n",
        "tests/app/test_control.py::test_a_bad_query_body_is_refused_clearly",
    ),
    Break(
        "fuzz: http.server's own refusals come as its HTML page",
        "app/control.py",
        "            def send_error(\n",
        "            def _unused_send_error(\n",
        "tests/app/test_control.py::test_requests_http_server_refuses_get_the_json_error_shape",
    ),
    Break(
        "fuzz: a route outside the schema that no fuzzer covers",
        "tests/api/fuzzing.py",
        '    ("GET /docs", "/docs"),\n',
        "",
        "tests/api/test_schema.py::test_every_route_is_fuzzed",
    ),
    Break(
        "fuzz: query bodies convert JSON types again (lax: false is page 0)",
        "api/models.py",
        '    model_config = ConfigDict(extra="forbid", strict=True)\n\n    question: str',
        '    model_config = ConfigDict(extra="forbid")\n\n    question: str',
        "tests/api/test_strict_types.py::test_a_value_of_another_json_type_is_refused",
    ),
    Break(
        "fuzz: a boolean rates an answer",
        "api/routes_feedback.py",
        "        if isinstance(value, bool):\n",
        "        if False:\n",
        "tests/api/test_strict_types.py::test_a_value_of_another_json_type_is_refused",
    ),
    Break(
        "fuzz: strict models refuse 3.0, an integer to JSON Schema",
        "api/models.py",
        "        return int(value)\n",
        "        return value\n",
        "tests/api/test_strict_types.py::test_values_of_the_declared_types_still_pass",
    ),
    Break(
        "fuzz: the integer validator hides the page bounds from the schema",
        "api/models.py",
        "Page = Annotated[int, Field(ge=0, le=1_000_000), BeforeValidator(_json_integer)]",
        "Page = Annotated[Annotated[int, BeforeValidator(_json_integer)], Field(ge=0, le=1_000_000)]",
        "tests/api/test_strict_types.py::test_the_schema_still_states_the_bounds",
    ),
    Break(
        "fuzz: a malformed body after HEAD escapes uvicorn's protocol",
        "app/api_server.py",
        "        except h11.LocalProtocolError:\n",
        "        except ArithmeticError:\n",
        "tests/app/test_api_server_protocol.py",
    ),
    Break(
        "fuzz: the route started for a request uvicorn refused answers into h11's error state",
        "app/api_server.py",
        "            cycle.disconnected = True\n",
        "            pass\n",
        "tests/app/test_api_server_protocol.py",
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
