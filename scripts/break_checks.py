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
        "2. **Prompt** (`prompt`,",
        "2. **Prompt** (`promptx`,",
        "tests/rag/test_layout.py::test_readme_and_architecture_list_the_stages_in_the_order_they_run",
        guarantee="the documented layout (README, ARCHITECTURE, import layers)",
    ),
    Break(
        "layout: an import circle inside rag/",
        "rag/core/errors.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from rag.query.pipeline import QueryPipeline  # noqa: F401\n",
        "tests/rag/test_layout.py::test_few_modules_directly_under_rag_and_no_import_circle",
        guarantee="the documented layout (README, ARCHITECTURE, import layers)",
    ),
    Break(
        "layout: the facade loads every wing on import",
        "rag/__init__.py",
        "import importlib\n",
        "import importlib\n\nimport rag.query.pipeline  # noqa: F401\n",
        "tests/rag/test_layout.py::test_importing_the_facade_loads_no_wing",
        guarantee="the documented layout (README, ARCHITECTURE, import layers)",
    ),
    Break(
        "cache: the scope selects the prompt again",
        "rag/query/answer_cache.py",
        "        q, prompt = state.query, state.prompt\n",
        "        q, prompt = state.query, state.prompt\n"
        "        from rag.query.prompts import PromptRegistry\n\n"
        "        PromptRegistry(self.settings.prompts).select(q.prompt, user=q.user, session=q.session)\n",
        "tests/rag/query/test_answer_cache.py::test_the_prompt_is_selected_once_per_request",
        guarantee="the answer cache",
    ),
    Break(
        "cache: default_stages without the cache stage",
        "rag/query/pipeline.py",
        "    if settings.cache.enabled:\n",
        "    if False:\n",
        "tests/rag/query/test_answer_cache.py::test_stages_passed_from_default_stages_keep_the_cache",
        guarantee="the answer cache",
    ),
    Break(
        "readyz: a backend's health is not asked",
        "api/routes_ops.py",
        "            for part, line in service.pipeline.health().items()\n",
        "            for part, line in {}.items()\n",
        "tests/api/test_readiness.py::test_readyz_names_a_generator_that_cannot_answer",
        guarantee="/readyz names a backend that cannot answer",
    ),
    Break(
        "front door: /v1/query drops max_tokens",
        "api/routes_query.py",
        "        max_tokens=body.max_tokens,\n",
        "",
        "tests/api/test_finish_reason.py::test_query_answer_reports_the_finish_reason",
    ),
    Break(
        "tracing: stopping waits for a stalled Langfuse without bound",
        "rag/observability/langfuse.py",
        "        done = _bounded(stop, timeout)\n",
        "        done = _bounded(stop, 1e9)\n",
        "tests/app/test_cli_serve_tracing.py::"
        "test_serve_with_a_stalled_langfuse_answers_and_stops_in_time",
    ),
    Break(
        "sources: the route serves a link out of the watched folder",
        "api/documents.py",
        "        if reason is not None:\n            raise self.not_found(source)\n",
        "",
        "tests/api/test_sources.py::test_a_link_out_of_the_folder_is_served_by_no_route",
        guarantee="Security: symlinks out of a watched folder",
    ),
    Break(
        "question: an invisible-only question reaches the pipeline",
        "rag/core/textguard.py",
        "    if is_blank(text):\n",
        "    if False:\n",
        "tests/rag/core/test_invisible_text.py::"
        "test_an_invisible_question_is_refused_before_any_stage_runs",
        guarantee="Security: odd upload names and invisible questions",
    ),
    Break(
        "tables: ingestion reads a fixed list of suffixes, not the parser table",
        "rag/indexing/parsing.py",
        "    registered = supported_extensions()\n    if extensions is None:\n",
        '    registered = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")\n'
        "    if extensions is None:\n",
        "tests/rag/indexing/test_parser_table.py::"
        "test_rag_ingest_and_query_read_a_format_registered_from_outside",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    Break(
        "tables: parse_bytes dispatches on the built-ins only",
        "rag/indexing/parsing.py",
        "    doc = parser_for(suffix).run(data, name)\n",
        "    doc = {s: p for p in _BUILT_IN for s in p.suffixes}[suffix].run(data, name)\n",
        "tests/rag/indexing/test_parser_table.py::test_parse_bytes_goes_through_the_table",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    Break(
        "tables: open_store knows edge and qdrant only",
        "rag/store/__init__.py",
        "    return STORES.get(settings.store.backend)(settings)\n",
        '    return (_open_qdrant if settings.store.backend == "qdrant" else _open_edge)(settings)\n',
        "tests/rag/store/test_store_table.py::test_index_opens_syncs_and_searches_a_registered_store",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    Break(
        "tables: build_generator knows the built-ins only",
        "rag/generate/chain.py",
        "    return GENERATORS.get(name)(GeneratorContext(settings, scorer, local_tokens))\n",
        '    fixed = {"openai": _openai, "local": _local, "extractive": _extractive}\n'
        "    return fixed[name](GeneratorContext(settings, scorer, local_tokens))\n",
        "tests/rag/generate/test_generator_table.py::"
        "test_a_registered_generator_answers_through_the_pipeline",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    Break(
        "tables: build_reranker ignores a registered reranker",
        "rag/query/rerank.py",
        "    return RERANKERS.get(settings.backend)(settings, embedder)\n",
        '    if settings.backend not in ("cross-encoder", "embedding"):\n'
        "        return NoReranker(settings)\n"
        "    return RERANKERS.get(settings.backend)(settings, embedder)\n",
        "tests/rag/query/test_reranker_table.py::"
        "test_a_registered_reranker_orders_the_pipelines_context",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    Break(
        "tables: the CLI does not check plug-in names at start",
        "app/cli/core.py",
        "            state.settings = check_settings(settings)\n",
        "            state.settings = settings\n",
        "tests/app/test_cli_plugins.py::"
        "test_an_unknown_plugin_name_exits_2_before_anything_is_opened",
        guarantee="plug-in tables (parsers, stores, generators, rerankers)",
    ),
    # -- issue 25: the README's promises, each broken the way the issue's author broke it ----
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
        '            if getattr(_busy, "on", False):\n',
        '            if getattr(_busy, "on", False) or record.name.split(".")[0] not in (\n'
        '                "rag", "api"\n'
        "            ):\n",
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
        "                excluded += 1  # exclude_chunk, or nothing but the attack in it\n",
        "                excluded += 1\n                kept.append(hit)\n",
        "tests/rag/guards/test_injection.py::test_excluded_chunks_never_reach_the_context",
        guarantee="Security: prompt injection in documents (indirect)",
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
        "tests/rag/query/test_stages.py::test_a_marked_sentence_is_held_until_a_supported_one_follows",
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
    # -- README "Security": one defence of each row broken, against the test the row names ----
    Break(
        "the control API answers any Host",
        "app/control.py",
        '                if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):\n',
        "                if False:\n",
        "tests/app/test_control.py::test_a_foreign_host_header_is_refused",
        guarantee="Security: the loopback control API",
    ),
    Break(
        "the control API skips its token check",
        "app/control.py",
        '                if scheme != "Bearer" or not hmac.compare_digest(given.encode(), token):\n',
        '                if scheme != "Bearer" and False:\n',
        "tests/app/test_control.py::test_every_call_without_the_token_is_refused",
        guarantee="Security: the loopback control API",
    ),
    Break(
        "the control API takes text/plain and form bodies",
        "app/control.py",
        '                    if ctype.lower() != "application/json":\n',
        "                    if False:\n",
        "tests/app/test_control.py::test_post_bodies_must_be_json",
        guarantee="Security: the loopback control API",
    ),
    Break(
        "retrieval searches without the tenant filter",
        "rag/core/access.py",
        '        return {"tenant": reader.tenant}\n',
        "        return {}\n",
        "tests/rag/query/test_pipeline.py::test_filters_cannot_choose_the_tenant",
        guarantee="Security: a caller choosing another tenant",
    ),
    Break(
        "a symlink out of the watched folder is read",
        "rag/core/paths.py",
        "    if not real.is_relative_to(inside.resolve()):\n",
        "    if False:\n",
        "tests/rag/indexing/test_ingest_links.py::"
        "test_links_out_of_the_folder_are_refused_and_links_inside_work",
        guarantee="Security: symlinks out of a watched folder",
    ),
    Break(
        "uploads and watched documents share document ids",
        "rag/core/documents.py",
        '    kind = "upload:" if upload else ""\n',
        '    kind = ""\n',
        "tests/rag/indexing/test_ingest_identity.py::"
        "test_the_default_tenants_uploads_and_watched_folders_have_distinct_ids",
        guarantee="Security: document names colliding across roots / tenants",
    ),
    Break(
        "opening the index no longer checks the store against the manifest",
        "rag/indexing/index.py",
        "        self.verify_store(live)\n",
        "",
        "tests/app/test_store_loss.py::test_opening_an_emptied_store_marks_its_files_for_redo",
        guarantee="Security: a lost vector store",
    ),
    Break(
        "the attack part of a question is flagged but kept",
        "rag/query/guard.py",
        "            state.question = checked.question\n",
        "",
        "tests/rag/guards/test_injection.py::"
        "test_the_attack_part_of_a_question_reaches_neither_retrieval_nor_the_model",
        guarantee="Security: prompt injection in questions (direct)",
    ),
    Break(
        "the output check lets calls to action through",
        "rag/guards/injection.py",
        "        if secret or not _asked_for(asked, visible):\n",
        "        if False:\n",
        "tests/rag/guards/test_injection.py::"
        "test_output_check_refuses_calls_to_action_and_contradictions",
        guarantee="Security: an attacker's passage certifying the attacker's sentence",
    ),
    Break(
        "the openai backend sends control tokens as they are",
        "rag/generate/openai.py",
        '            "messages": neutralise_messages(request.messages, self.special_tokens),\n',
        '            "messages": request.messages,\n',
        "tests/rag/query/test_special_tokens.py::"
        "test_the_openai_generator_breaks_control_tokens_in_any_messages",
        guarantee="Security: chat-template control tokens",
    ),
    Break(
        "vectors are reused from another tenant's identical text",
        "rag/indexing/ingest.py",
        '                flt = {"text_hash": hashes[start : start + 256], "tenant": tenant}\n',
        '                flt = {"text_hash": hashes[start : start + 256]}\n',
        "tests/rag/indexing/test_ingest_identity.py::"
        "test_the_same_paragraph_in_another_tenant_is_embedded_again",
        guarantee='Security: a cross-tenant "does this text exist" oracle',
    ),
    Break(
        "the umask is not tightened",
        "rag/core/datadir.py",
        "        os.umask(old | PRIVATE_UMASK)\n",
        "        os.umask(old)\n",
        "tests/rag/core/test_data_dir_private.py::"
        "test_library_index_and_ingest_leave_nothing_readable_by_others",
        guarantee="Security: a world-readable data dir",
    ),
    Break(
        "readiness does not probe the manifest",
        "api/storage.py",
        '            self.index.manifest.set_value("api.write_probe", round(time.time(), 3))\n',
        "            pass\n",
        "tests/api/test_storage.py::test_a_manifest_that_cannot_be_written_fails_readiness_and_uploads",
        guarantee="Security: opaque storage failures",
    ),
    Break(
        "the queue has no fair share",
        "api/limits.py",
        "            if held >= share or self.waiting >= 2 * self.queue:\n",
        "            if True:\n",
        "tests/api/test_fair_queue.py::test_one_tenant_flooding_the_queue_does_not_503_another",
        guarantee="Security: one tenant starving the others",
    ),
    Break(
        "uploads ignore the file quota",
        "api/documents.py",
        "        if self.max_files is not None and replaced is None and files >= self.max_files:\n",
        "        if False:\n",
        "tests/api/test_storage.py::test_upload_quotas_are_per_tenant_and_named",
        guarantee="Security: one tenant starving the others",
    ),
    Break(
        "an upload name with bidi controls is stored",
        "api/documents.py",
        "        if bidi := bidi_controls(raw):\n",
        "        if bidi := []:\n",
        "tests/api/test_invisible_and_paths.py::"
        "test_an_upload_file_name_with_a_bidi_override_is_refused",
        guarantee="Security: odd upload names and invisible questions",
    ),
    Break(
        "the chat page may run scripts from any https origin",
        "api/security.py",
        '_PAGE_POLICIES = {"/": CHAT_POLICY, "/docs": DOCS_POLICY}\n',
        '_PAGE_POLICIES = {"/": CHAT_POLICY.replace("script-src \'self\'", "script-src \'self\' https:"), '
        '"/docs": DOCS_POLICY}\n',
        "tests/api/test_ops_security.py::test_pages_send_security_headers",
        guarantee="Security: third-party scripts next to the API key",
    ),
    Break(
        "/metrics takes any bearer token",
        "api/routes_ops.py",
        '        if scheme.lower() != "bearer" or not hmac.compare_digest(\n',
        "        if False and not hmac.compare_digest(\n",
        "tests/api/test_ops_security.py::test_metrics_need_the_metrics_key_when_one_is_set",
        guarantee="Security: open /metrics",
    ),
    Break(
        "/metrics open on a server listening beyond loopback",
        "api/routes_ops.py",
        "    if expected is None and not is_loopback(state.bind_host):\n",
        "    if False:\n",
        "tests/api/test_ops_security.py::"
        "test_metrics_need_a_key_on_a_server_listening_beyond_loopback",
        guarantee="Security: open /metrics",
    ),
    Break(
        "the API answers any Host",
        "api/security.py",
        "    if _ip(host) is not None or host in LOCAL_NAMES:\n",
        "    if True:\n",
        "tests/api/test_ops_security.py::test_a_request_naming_another_host_is_refused",
        guarantee="Security: DNS rebinding against the API",
    ),
    Break(
        "failure reasons keep server paths",
        "rag/indexing/ingest.py",
        "        reason = without_server_paths(reason, root, self.index.data_dir)\n",
        "",
        "tests/rag/indexing/test_reason_paths.py::test_ingestor_reasons_name_no_server_path",
        guarantee="Security: server paths in errors",
    ),
    Break(
        "a hosted backend gets the text unpseudonymised",
        "rag/guards/pii/outbound.py",
        '    if generator.name != "openai" and not settings.scrub_in_process:\n',
        "    if not settings.scrub_in_process:\n",
        "tests/rag/guards/pii/test_leak_canary.py::"
        "test_no_seeded_value_leaves_and_answers_read_naturally",
        guarantee="Security: personal data reaching a hosted model, traces, logs or reports",
    ),
    Break(
        "an answer cut at max_tokens is reported as complete",
        "api/chat.py",
        '    return "length" if result.get("finish_reason") == "length" else "stop"\n',
        '    return "stop"\n',
        "tests/api/test_finish_reason.py::test_cut_at_max_tokens_is_length_and_a_full_answer_is_stop",
        guarantee="Security: answers cut at max_tokens reported as complete",
    ),
    # -- hostile input (issue 25, items 2-4) --------------------------------------------
    Break(
        "hostile: the multipart file name escapes the path's length limit",
        "api/documents.py",
        "        if len(raw) > PATH_MAX_CHARS:\n",
        '        if field == "path" and len(raw) > PATH_MAX_CHARS:\n',
        "tests/api/test_hostile_uploads.py::test_a_deep_upload_is_refused_whichever_field_names_it",
    ),
    Break(
        "hostile: uploads deeper than ingestion.max_depth are accepted",
        "api/documents.py",
        "        if folders > self.max_depth:\n",
        "        if False:\n",
        "tests/api/test_hostile_uploads.py::test_a_deep_upload_is_refused_whichever_field_names_it",
    ),
    Break(
        "hostile: deleting an upload leaves its empty folders",
        "api/documents.py",
        "            self._remove_empty_folders(path.parent, self.root / tenant)\n",
        "            pass\n",
        "tests/api/test_hostile_uploads.py::test_deleting_an_upload_removes_the_folders_it_leaves_empty",
    ),
    Break(
        "hostile: the walk enters folders deeper than ingestion.max_depth",
        "rag/indexing/ingest.py",
        "        if max_depth is not None and depth > max_depth:\n",
        "        if False:\n",
        "tests/rag/indexing/test_hostile_input.py::test_a_folder_too_deep_is_skipped_and_other_tenants_are_still_ingested",
    ),
    Break(
        "hostile: a watcher that cannot start kills the daemon",
        "ingestion/daemon.py",
        "        except Exception as exc:  # noqa: BLE001 - any watcher failure: poll instead\n",
        "        except ImportError as exc:\n",
        "tests/ingestion/test_watcher_fallback.py::"
        "test_the_daemon_survives_a_watcher_that_cannot_start",
    ),
    Break(
        "hostile: html.parser reads the raw page",
        "rag/indexing/parsing.py",
        '    soup = BeautifulSoup(safe_html(html), "html.parser")\n',
        '    soup = BeautifulSoup(html, "html.parser")\n',
        "tests/rag/indexing/test_parser_fuzz.py::test_hostile_text",
    ),
    Break(
        "hostile: the hidden-comment regex rescans to the end",
        "rag/guards/injection.py",
        '    out = [t for c in _html_comments(html) if (t := " ".join(c.split()))]\n',
        '    out = [t for c in re.findall(r"<!--(.*?)-->", html, re.S) if (t := " ".join(c.split()))]\n',
        "tests/rag/guards/test_injection_fuzz.py::test_every_entry_point_takes_any_text",
    ),
    Break(
        "hostile: the link rule backtracks through every link",
        "rag/guards/injection.py",
        '            r"(?>[^.\\n]{0,60}?(?:https?://|www\\.))"\n',
        '            r"[^.\\n]{0,60}?(?:https?://|www\\.)\\S*?"\n',
        "tests/rag/guards/test_injection_fuzz.py::test_every_entry_point_takes_any_text",
    ),
    Break(
        "hostile: the work budget is never checked",
        "rag/core/budget.py",
        "    if budget is not None and time.monotonic() > budget.deadline:\n",
        "    if False:\n",
        "tests/rag/indexing/test_hostile_input.py::test_a_file_over_its_budget_is_failed_recorded_and_not_retried_until_it_changes",
    ),
    Break(
        "hostile: a file over its budget is retried at every sync",
        "rag/indexing/ingest.py",
        "            self._record_failure(root, source, doc_id, over_budget, str(exc), prior, report)\n",
        '            self._record_failure(root, source, doc_id, "stat:retry", str(exc), prior, report)\n',
        "tests/rag/indexing/test_hostile_input.py::test_a_file_over_its_budget_is_failed_recorded_and_not_retried_until_it_changes",
    ),
    Break(
        "hostile: a .docx's unpacked size is not checked",
        "rag/indexing/parsing.py",
        '    check_unpacked_size(data, ".docx")\n',
        "    pass\n",
        "tests/rag/indexing/test_hostile_input.py::test_a_docx_bomb_fails_with_its_reason_whatever_its_directory_says",
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
        guarantee="Security: malformed and hostile HTTP requests on every route",
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
    # -- issue 22: verified answers on the production path ------------------------------------
    Break(
        "verify: value grounding disabled",
        "rag/verification/support.py",
        "    missing = ungrounded(claim, where, [question] if question else (), passages)\n",
        "    missing = []\n",
        "tests/rag/verification/test_citations.py::test_a_wrong_value_cited_to_the_right_passage_is_refused",
    ),
    Break(
        "verify: the previous sentence is not the context",
        "rag/verification/citations.py",
        "        context = self._context()\n",
        '        context = ""\n',
        "tests/rag/verification/test_citations.py::test_a_sentence_is_judged_with_the_verified_sentence_before_it",
    ),
    Break(
        "verify: an unsupported sentence passes through into the stream",
        "rag/verification/citations.py",
        '                return f"{UNVERIFIED_MARK} {sentence.text}" if self.shows_unsupported else None\n',
        '                return f"{UNVERIFIED_MARK} {sentence.text}" if self.shows_unsupported else sentence.text\n',
        "tests/rag/query/test_verified_answers.py::test_an_invented_sentence_is_never_shown_by_default",
    ),
    Break(
        "verify: withheld sentences listed in the answer object (and the chat completion)",
        "rag/query/stages.py",
        "                answer.withheld = len(verified.unsupported)\n",
        "                answer.withheld = len(verified.unsupported)\n"
        "                answer.unsupported = list(verified.unsupported)\n",
        "tests/rag/query/test_verified_answers.py::test_an_invented_sentence_is_never_shown_by_default",
    ),
    Break(
        "verify: a flipped negation is not checked",
        "rag/verification/grounding.py",
        "    if negated(claim) != negated(source):\n",
        "    if False:\n",
        "tests/rag/verification/test_citations.py::test_a_negation_flip_is_refused",
    ),
    Break(
        "verify: any number of words the passage lacks",
        "rag/verification/support.py",
        "MAX_UNMATCHED = 1\n",
        "MAX_UNMATCHED = 99\n",
        "tests/rag/verification/test_citations.py::test_a_phrase_the_passage_never_says_fails_the_claim",
    ),
    # -- issue 23: PII as people write it, and the second check on what leaves -------------
    Break(
        'pii: a lone name ("I spoke with Jarek") is dropped again',
        "rag/guards/pii/engine.py",
        "        return _lone_name(text, start, words[0])\n",
        "        return False\n",
        "tests/rag/guards/pii/test_real_world.py::test_values_as_people_write_them_are_found",
    ),
    Break(
        "pii: short local phone numbers (438 4987) are not phone numbers",
        "rag/guards/pii/multilocale.py",
        "    if n < 6 or n > 15:\n",
        "    if n < 10 or n > 15:\n",
        "tests/rag/guards/pii/test_real_world.py::test_values_as_people_write_them_are_found",
    ),
    Break(
        "pii: card numbers grouped other than 4-4-4-4 are not looked for",
        "rag/guards/pii/multilocale.py",
        "def find_cards(text: str) -> list[Hit]:\n    out: list[Hit] = []\n",
        "def find_cards(text: str) -> list[Hit]:\n    out: list[Hit] = []\n    return out\n",
        "tests/rag/guards/pii/test_real_world.py::test_values_as_people_write_them_are_found",
    ),
    Break(
        "pii: a street and its postcode line do not make an address",
        "rag/guards/pii/multilocale.py",
        "        if street and post:\n            score = 0.9\n",
        "        if street and post:\n            score = 0.0\n",
        "tests/rag/guards/pii/test_real_world.py::test_values_as_people_write_them_are_found",
    ),
    Break(
        "pii: a first name alone does not get the full name's placeholder",
        "rag/guards/pii/policy.py",
        "                self._alias_parts(entity, value, ph)\n",
        "                pass\n",
        "tests/rag/guards/pii/test_real_world.py::test_parts_of_a_value_get_its_placeholder",
    ),
    Break(
        "pii: model requests skip the recall-first check",
        "rag/guards/pii/outbound.py",
        "                p.add(sweep_values(line))\n",
        "                pass\n",
        "tests/rag/guards/pii/test_real_world.py::"
        "test_what_leaves_for_the_model_passes_a_recall_first_check",
    ),
    Break(
        "pii: traces and reports skip the recall-first check",
        "rag/guards/pii/policy.py",
        "        spans = [*spans, *sweep(text, spans)]\n",
        "        spans = list(spans)\n",
        "tests/rag/guards/pii/test_real_world.py::test_traces_and_reports_pass_the_same_check",
    ),
    Break(
        "pii: traces keep the values stored with the retrieved chunks",
        "rag/observability/scrub.py",
        "        return scrub_values(text, pairs)\n",
        "        return text\n",
        "tests/rag/guards/pii/test_real_world.py::"
        "test_traces_lose_the_values_stored_with_the_retrieved_chunks",
    ),
    # -- prompt injection: attacked, still answered (issue 24) ----------------------------
    Break(
        "injection: span exclusion replaced by whole-chunk exclusion",
        "rag/query/guard.py",
        'elif spans and _content_left(str(hit.payload.get("text") or ""), spans):',
        "elif False:",
        "tests/rag/guards/test_injection.py::test_the_poisoned_answer_paragraph_still_answers",
    ),
    Break(
        "injection: spans are the whole chunk",
        "rag/guards/injection.py",
        "    return _merged(spans)\n\n\ndef _merged(",
        "    return [(0, len(text))]\n\n\ndef _merged(",
        "tests/rag/guards/test_injection.py::test_a_flagged_chunk_loses_the_attack_span_not_its_content",
    ),
    Break(
        "injection: the question cut disabled",
        "rag/query/guard.py",
        "            state.question = checked.question\n",
        "",
        "tests/rag/guards/test_injection.py::test_an_appended_attack_is_answered_as_the_plain_question",
    ),
    Break(
        "injection: extractive allowed to copy a flagged span",
        "rag/generate/extractive.py",
        "if passage.suspect and repeats_suspect(sentence, passage.suspect, clean):",
        "if False:",
        "tests/rag/guards/test_injection.py::test_the_extractive_backend_never_says_a_flagged_span",
    ),
    Break(
        "injection: the output check lets a flagged span's text through",
        "rag/guards/injection.py",
        'if suspect and repeats_suspect(visible, suspect, f"{clean} {asked}"):',
        "if False:",
        "tests/rag/guards/test_injection.py::test_output_check_refuses_text_of_a_flagged_span_and_unknown_links",
    ),
    Break(
        "injection: the output check lets an unknown link through",
        "rag/guards/injection.py",
        'if unknown := _unknown_destinations(visible, f"{clean} {asked}"):',
        "if unknown := None:",
        "tests/rag/guards/test_injection.py::test_output_check_refuses_text_of_a_flagged_span_and_unknown_links",
    ),
    Break(
        "injection: the output check lets hidden text through",
        "rag/guards/injection.py",
        "if _HIDDEN_IN_ANSWER.search(sentence):",
        "if False:",
        "tests/rag/guards/test_injection.py::"
        "test_output_check_refuses_text_of_a_flagged_span_and_unknown_links",
    ),
    Break(
        "injection: short answer sentences skip the output check",
        "rag/verification/citations.py",
        "if self.output_check and self._refused(sentence):",
        "if self.output_check and needs and self._refused(sentence):",
        "tests/rag/guards/test_injection.py::test_a_short_sentence_repeating_an_attack_is_not_verified",
    ),
    Break(
        "injection: merged chunks keep their attack spans",
        "rag/query/pack.py",
        "return [_without_cuts(p) for p in passages]",
        "return passages",
        "tests/rag/guards/test_injection.py::test_merged_chunks_lose_the_attack_span_once_merged",
    ),
    # -- issue 25, hostile ops: disk full, log scrubbing, shutdown under load ---------------
    Break(
        "hostile-ops: GET /v1/sources opens the file again by name after its checks",
        "api/documents.py",
        '            return os.fdopen(fd, "rb"), opened\n',
        "            os.close(fd)\n"
        "            os.sched_yield()\n"
        '            return open(path, "rb"), os.stat(path)  # noqa: SIM115\n',
        "tests/api/test_sources_race.py::"
        "test_reading_a_source_while_it_is_deleted_is_never_a_server_error",
        guarantee="Security: personal data reaching a hosted model, traces, logs or reports",
    ),
    Break(
        "hostile-ops: only this project's loggers are scrubbed (not uvicorn's)",
        "rag/guards/pii/logs.py",
        '            if getattr(_busy, "on", False):\n',
        '            if getattr(_busy, "on", False) or record.name.split(".")[0] not in (\n'
        '                "rag", "api", "app"\n'
        "            ):\n",
        "tests/app/test_serve_log_scrubbing.py::"
        "test_uvicorn_records_and_tracebacks_reach_the_output_scrubbed",
        guarantee="Security: personal data reaching a hosted model, traces, logs or reports",
    ),
    Break(
        "hostile-ops: absolute server paths left in log lines",
        "rag/guards/pii/logs.py",
        "    text = scrub_server_paths(text)\n",
        "",
        "tests/app/test_serve_log_scrubbing.py::"
        "test_uvicorn_records_and_tracebacks_reach_the_output_scrubbed",
        guarantee="Security: personal data reaching a hosted model, traces, logs or reports",
    ),
    Break(
        "hostile-ops: closing the local generator does not stop the generation in flight",
        "rag/generate/local.py",
        "                    request.check_deadline(self.name)\n                    self._check_open()\n",
        "                    request.check_deadline(self.name)\n",
        "tests/rag/generate/test_generate_local.py::"
        "test_close_stops_the_generation_in_flight_before_freeing_the_model",
        guarantee="Security: a stop under load",
    ),
    Break(
        "hostile-ops: queued answers are not refused when rag serve stops",
        "app/api_server.py",
        "            service.stop_accepting()\n",
        "            pass\n",
        "tests/app/test_serve_stop_under_load.py::"
        "test_sigterm_under_load_stops_every_answer_thread_and_exits_0",
        guarantee="Security: a stop under load",
    ),
    Break(
        "hostile-ops: uploads ignore the free-space floor",
        "api/documents.py",
        "        self.storage.require_space(len(data))\n",
        "",
        "tests/api/test_disk_floor.py::"
        "test_under_the_floor_uploads_and_ingestion_wait_and_reads_go_on",
        guarantee="Security: a full disk",
    ),
    Break(
        "hostile-ops: ingestion writes under the free-space floor",
        "rag/indexing/ingest.py",
        '        self.index.disk.require(needed, "ingestion")\n',
        "        return None\n",
        "tests/api/test_disk_floor.py::"
        "test_under_the_floor_uploads_and_ingestion_wait_and_reads_go_on",
        guarantee="Security: a full disk",
    ),
    Break(
        "hostile-ops: the store's mmap files are not claimed ahead (a start on a full volume)",
        "rag/store/edge.py",
        "                allocate_holes(self._populated(shard))\n",
        "                pass\n",
        "tests/app/test_disk_full_serve.py::"
        "test_a_full_volume_pauses_writes_serves_reads_and_resumes",
        guarantee="Security: a full disk",
    ),
    Break(
        "hostile-ops: rag serve keeps no reserve to start on a full volume",
        "rag/core/diskspace.py",
        "        self.reserve_path.unlink(missing_ok=True)\n        return True\n",
        "        return False\n",
        "tests/app/test_disk_full_serve.py::"
        "test_a_full_volume_pauses_writes_serves_reads_and_resumes",
        guarantee="Security: a full disk",
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
        "tests/app/test_api_server_protocol.py::"
        "test_a_malformed_body_after_head_is_a_400_and_nothing_escapes",
    ),
    Break(
        "fuzz: the route started for a request uvicorn refused answers into h11's error state",
        "app/api_server.py",
        "            cycle.disconnected = True\n",
        "            pass\n",
        "tests/app/test_api_server_protocol.py::"
        "test_a_malformed_body_after_head_is_a_400_and_nothing_escapes",
    ),
    # -- issue 23, late: names shared across a document's chunks; things named after people --
    Break(
        "pii: a document's names are not shared between its chunks",
        "rag/guards/pii/outbound.py",
        '        entry["values"] += [["PERSON", n] for n in names_mentioned(text, others)]\n',
        "        pass\n",
        "tests/rag/guards/pii/test_real_world.py::"
        "test_a_name_found_in_one_chunk_covers_its_parts_in_the_others",
    ),
    Break(
        "pii: a unit word inside another word ('rm 3' of 'Perform 3') makes an address",
        "rag/guards/pii/multilocale.py",
        '    rf"(?<![\\w])(?i:apt',
        '    rf"(?i:apt',
        "tests/rag/guards/pii/test_real_world.py::test_operational_text_is_not_an_address",
    ),
    Break(
        "pii: any word after a unit word makes an address ('floor plan')",
        "rag/guards/pii/multilocale.py",
        '    rf"(?:[A-Za-z]{{0,2}}\\d[A-Za-z0-9\\-]{{0,5}}|[A-Z](?![\\w]))"\n',
        '    rf"[A-Za-z0-9\\-]{{1,6}}"\n',
        "tests/rag/guards/pii/test_real_world.py::test_operational_text_is_not_an_address",
    ),
    # -- issue 24, late: a planted chat turn repeating the question ("User: <question>?") --
    Break(
        "injection: the extractive backend answers with a question the documents ask",
        "rag/generate/extractive.py",
        '            if sentence.rstrip().endswith("?"):\n',
        "            if False:\n",
        "tests/rag/generate/test_generate_extractive.py::"
        "test_a_question_in_the_documents_is_never_the_answer",
    ),
    Break(
        "injection: the output check lets a chat turn through",
        "rag/guards/injection.py",
        "    if _TURN_IN_ANSWER.match(visible):\n",
        "    if False:\n",
        "tests/rag/guards/test_injection.py::"
        "test_output_check_refuses_calls_to_action_and_contradictions",
        guarantee="Security: an attacker's passage certifying the attacker's sentence",
    ),
    # -- MCP (issue 27) -------------------------------------------------------------------
    Break(
        "mcp: the tools answer for the deployment's tenant, not the key's",
        "api/mcp_server.py",
        "    return caller\n",
        "    return Principal(caller.key_id, 'default', caller.name)\n",
        "tests/api/test_mcp.py::test_another_tenants_documents_are_invisible",
        guarantee="Security: an MCP client reaching another tenant's documents",
    ),
    # -- prompt injection: a model that obeys (issue 24) ----------------------------------
    Break(
        "injection: a model that obeys: answer sentences are not output-checked",
        "rag/verification/citations.py",
        "        if self.output_check and self._refused(sentence):\n",
        "        if False:\n",
        "tests/rag/guards/test_injection_obey.py::"
        "test_an_obeying_model_is_refused_and_the_spare_answers",
        guarantee="Security: an attacker's passage certifying the attacker's sentence",
    ),
    Break(
        "injection: a model that obeys: the output check trusts what the detector did not flag",
        "rag/guards/injection.py",
        "    suspect += [t for units, _ in weak for t in units] + list(asked_weak)\n",
        "",
        "tests/rag/guards/test_injection_obey.py::"
        "test_the_output_check_refuses_obeyed_text_when_the_detector_missed_the_passage",
        guarantee="Security: an attacker's passage certifying the attacker's sentence",
    ),
    Break(
        "pii: a word after 'it is' is a name ('it is data only' in the fenced-passage warning)",
        "rag/guards/pii/multilocale.py",
        "        role = _ROLE_CUE.search(before) or _THING_CUE.search(before)\n",
        "        role = _ROLE_CUE.search(before)\n",
        "tests/rag/guards/pii/test_real_world.py::test_operational_text_is_not_an_address",
    ),
    # -- releases (issue 28): indexes and prompts go live only when they prove themselves --
    Break(
        "release: the reindex gate's verdict ignored (a worse index switched in)",
        "rag/indexing/reindex.py",
        'refused = verdict is not None and not verdict.get("promote", True)',
        "refused = False",
        "tests/evals/test_index_release.py::test_a_worse_index_is_refused_and_an_equal_one_promoted",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: the reindex gate compares nothing (no regression ever found)",
        "evals/releases.py",
        "        if worse > threshold + 1e-12:\n",
        "        if worse > threshold + 1e-12 and False:\n",
        "tests/evals/test_index_release.py::test_a_worse_index_is_refused_and_an_equal_one_promoted",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: a prompt release's rollback skipped (the worse candidate moves on)",
        "rag/query/releases.py",
        'if verdict == "rollback":',
        'if verdict == "rollback" and False:',
        "tests/api/test_prompt_release.py::test_a_worse_candidate_is_rolled_back_at_the_first_step",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: the prompt gate ignored (a candidate worse on the golden set released)",
        "evals/releases.py",
        'if not verdict["promote"] and not force:',
        "if False:",
        "tests/api/test_prompt_release.py::test_a_candidate_the_golden_set_finds_worse_is_refused_before_any_traffic",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: the rule never finds a rate worse (no margin test)",
        "rag/query/releases.py",
        "        if lo > s.margin:\n",
        "        if lo > s.margin + 1.0:\n",
        "tests/api/test_prompt_release.py::test_a_worse_candidate_is_rolled_back_at_the_first_step",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: another process's step not seen (the state file read once)",
        "rag/query/releases.py",
        "if self._cached is not None and self._cached[0] == stamp:",
        "if self._cached is not None:",
        "tests/rag/query/test_releases.py::test_one_release_across_processes_and_a_restart",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: thumbs down not counted in the release's window",
        "api/routes_feedback.py",
        "release_store(state.settings.resolved_data_dir()).feedback, body.trace_id, body.value",
        "lambda *a: None, body.trace_id, body.value",
        "tests/api/test_prompt_release.py::test_an_equal_candidate_is_promoted_step_by_step_through_a_restart",
        guarantee="releases prove themselves",
    ),
    Break(
        "release: the rollback not marked on the Langfuse trace",
        "rag/observability/langfuse.py",
        'if record.release.get("rolled_back"):',
        "if False:",
        "tests/api/test_prompt_release.py::test_a_worse_candidate_is_rolled_back_at_the_first_step",
        guarantee="releases prove themselves",
    ),
    # -- verification, round three (issue 22): readings a faithful rewording uses --
    Break(
        "verify: 'a single' is not the number one",
        "rag/verification/grounding.py",
        '    "single": 1,  # "a single approving review" is "one approving review"\n',
        "",
        "tests/rag/verification/test_grounding.py::test_a_single_is_one_and_counts_as_a_value",
    ),
    Break(
        "verify: 'right away' is two words the passage lacks",
        "rag/verification/support.py",
        "    for pattern, word in _PHRASES:\n        text = pattern.sub(word, text)\n",
        "",
        "tests/rag/verification/test_support.py::"
        "test_a_phrase_that_says_what_one_word_says_is_a_rewording",
    ),
    Break(
        "verify: a negation in an aside the rewording left out flips the claim",
        "rag/verification/grounding.py",
        '_ASIDE = re.compile(r"\\([^()]*\\)|\\[[^\\[\\]]*\\]")\n',
        '_ASIDE = re.compile(r"(?!x)x")  # matches nothing\n',
        "tests/rag/verification/test_grounding.py::test_a_negation_inside_an_aside_is_not_a_flip",
    ),
    Break(
        "verify: a hyphenated name's parts are not words its passage says",
        "rag/verification/support.py",
        '    raw += [part for w in raw if "-" in w for part in w.split("-") if part.isalpha()]\n',
        "",
        "tests/rag/verification/test_support.py::"
        "test_a_code_name_holding_a_date_leaves_no_words_behind",
    ),
    Break(
        "verify: 'No, ...' answering a yes/no question counts as a negation",
        "rag/verification/grounding.py",
        '    claim = plain(_ASIDE.sub(" ", _ANSWER_WORD.sub("", claim)))\n',
        '    claim = plain(_ASIDE.sub(" ", claim))\n',
        "tests/rag/verification/test_grounding.py::"
        "test_an_answer_word_before_the_sentence_is_no_negation",
    ),
    Break(
        "verify: a team named by the word before it is no value",
        "rag/verification/grounding.py",
        '        if m.group("name") not in _NOT_GROUP_NAMES:\n',
        "        if False:\n",
        "tests/rag/verification/test_grounding.py::"
        "test_named_teams_and_digit_led_names_must_be_in_the_passage",
    ),
    Break(
        "verify: polarity read over the whole passage sentence, not the clauses restated",
        "rag/verification/support.py",
        "    kept = [c for c in clauses if sum(matches(w, _words_of(c)) for w in claim) >= 2]\n",
        "    kept = clauses\n",
        "tests/rag/verification/test_support.py::"
        "test_a_negation_in_a_clause_the_claim_does_not_restate_is_no_flip",
    ),
    Break(
        "verify: a word rewords in one sense only (its first synonym group)",
        "rag/verification/support.py",
        "        _SYNONYM_OF[_w] = _SYNONYM_OF.get(_w, frozenset()) | {_i}\n",
        "        _SYNONYM_OF.setdefault(_w, frozenset({_i}))\n",
        "tests/rag/verification/test_support.py::test_a_word_may_reword_in_more_than_one_sense",
    ),
    Break(
        "verify: 'for a month' is no value (a wrong duration written with 'a' passes)",
        "rag/verification/grounding.py",
        "    for m in _ONE_UNIT.finditer(text):\n",
        "    for m in _ONE_UNIT.finditer(''):\n",
        "tests/rag/verification/test_grounding.py::test_one_unit_of_time_is_a_duration_value",
    ),
    Break(
        "verify: a paraphrase judged relevant only by its own words, not the sentence it restates",
        "rag/verification/citations.py",
        "        if quote and quote != sentence.text:\n            said.append(quote)\n",
        "",
        "tests/rag/verification/test_citations.py::"
        "test_a_paraphrase_answers_what_the_sentence_it_restates_answers",
    ),
    # -- permissions: who may read what (issue 26) -----------------------------------------
    Break(
        "permissions: the read filter leaves groups out",
        "rag/core/access.py",
        '    return {"readers": _readers(reader.tenant, reader.groups | {ALL})}\n',
        '    return {"tenant": reader.tenant}\n',
        "tests/api/test_permissions.py::test_outside_hr_no_answer_holds_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: retrieval filters by tenant only",
        "rag/query/retrieve.py",
        "        flt = {**(filters or {}), **read_filter(reader)}\n",
        '        flt = {**(filters or {}), "tenant": reader.tenant}\n',
        "tests/api/test_permissions.py::test_outside_hr_no_answer_holds_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: the retrieve stage asks as the CLI",
        "rag/query/stages.py",
        "            reader=q.reader(self.retriever.index.settings),\n",
        "            tenant=q.tenant,\n",
        "tests/api/test_permissions.py::test_outside_hr_no_answer_holds_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a key's groups are not read (it acts with every group)",
        "api/auth.py",
        "        return Principal(rec.id, rec.tenant, rec.name, rec.user, rec.groups)\n",
        "        return Principal(rec.id, rec.tenant, rec.name, rec.user, None)\n",
        "tests/api/test_permissions.py::test_outside_hr_no_answer_holds_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: queries do not carry the caller's groups (streaming)",
        "api/service.py",
        "        query, tenant=caller.tenant, groups=caller.groups, asker=caller.user or caller.key_id\n",
        "        query, tenant=caller.tenant, groups=None, asker=caller.user or caller.key_id\n",
        "tests/api/test_permissions.py::test_streaming_never_sends_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: queries do not carry the caller's groups (OpenAI endpoint)",
        "api/service.py",
        "        query, tenant=caller.tenant, groups=caller.groups, asker=caller.user or caller.key_id\n",
        "        query, tenant=caller.tenant, groups=None, asker=caller.user or caller.key_id\n",
        "tests/api/test_permissions.py::test_the_openai_endpoint_never_answers_with_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: filters may name groups",
        "rag/query/retrieve.py",
        '        for key in ("tenant", "groups", "readers"):\n',
        '        for key in ("tenant",):\n',
        "tests/rag/indexing/test_access_labels.py::test_access_default_labels_what_nothing_else_does",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a document's readability is not checked (sources, status)",
        "api/documents.py",
        "        if owned is None or not self.readable(reader, owned):\n",
        "        if owned is None:\n",
        "tests/api/test_permissions.py::test_a_guessed_path_is_not_found",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: listings and counts show every document of the tenant",
        "api/documents.py",
        "            stored = labels.get(rec.doc_id)\n"
        "            if stored is not None and not can_read(\n"
        '                reader, {"tenant": tenant, **label_payload(tenant, stored)}\n'
        "            ):\n"
        "                continue\n"
        "            if not self._readable_path(reader, Path(rec.root), rec.source):\n"
        "                continue\n",
        "",
        "tests/api/test_permissions.py::test_listings_and_counts_leave_out_what_the_key_may_not_read",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: an upload may be given groups its uploader is not in",
        "api/documents.py",
        "            foreign = sorted(set(groups) - reader.groups - {ALL})\n",
        "            foreign: list[str] = []\n",
        "tests/api/test_permissions.py::test_an_upload_is_read_only_by_the_groups_it_is_given",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: an unreadable document may be replaced",
        "api/documents.py",
        "        if exists and not self._readable_path(reader, self.root, source):\n",
        "        if False:\n",
        "tests/api/test_permissions.py::test_an_upload_is_read_only_by_the_groups_it_is_given",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: an unreadable upload may be deleted",
        "api/documents.py",
        "            self._recorded(tenant, source) or not self._readable_path(reader, self.root, source)\n",
        "            False\n",
        "tests/api/test_permissions.py::test_an_upload_is_read_only_by_the_groups_it_is_given",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a cached answer is served whoever asks",
        "rag/query/answer_cache.py",
        "            if self._readable(index, cited, reader):\n",
        "            if True:\n",
        "tests/api/test_permissions.py::test_a_cached_answer_is_served_only_to_who_may_read_what_it_cites",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a cached answer is not re-checked against the asker's groups now",
        "rag/query/answer_cache.py",
        '        flt = {"doc_id": doc_ids, **read_filter(reader)}\n',
        '        flt = {"doc_id": doc_ids, "tenant": reader.tenant}\n',
        "tests/api/test_permissions.py::test_a_cached_answer_is_rechecked_when_a_key_loses_a_group",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a changed key's groups are not read again",
        "api/auth.py",
        "            if stamp != self._stamp:\n",
        "            if self._stamp is None:\n",
        "tests/api/test_permissions.py::test_a_group_revoked_from_a_key_counts_from_the_next_request",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a sync does not relabel",
        "rag/indexing/ingest.py",
        "            report = self._apply(root, present, gone, progress, folders)\n"
        "            self._relabel(root, report)\n"
        "            self._fill_sentence_vectors(report, progress)\n",
        "            report = self._apply(root, present, gone, progress, folders)\n"
        "            self._fill_sentence_vectors(report, progress)\n",
        "tests/rag/indexing/test_access_labels.py::test_changed_rules_and_sidecars_relabel_on_the_next_sync_without_embedding",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: the daemon ignores a changed .access.yaml",
        "ingestion/daemon.py",
        "                    rels.append(rel.parent.as_posix())\n",
        "                    pass\n",
        "tests/api/test_permissions.py::test_a_sidecar_change_relabels_on_the_next_sync_without_reembedding",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: the first matching rule wins",
        "rag/core/access.py",
        '            if pattern.excludes(source):  # "excludes": matches, in PathFilter\'s words\n                groups = rule_groups\n',
        '            if pattern.excludes(source):  # "excludes": matches, in PathFilter\'s words\n                groups = rule_groups\n                break\n',
        "tests/rag/indexing/test_access_labels.py::test_the_last_matching_rule_wins_then_sidecars_deepest_first",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a broken sidecar leaves its folder to the rules",
        "rag/core/access.py",
        "_BROKEN = _Sidecar((), {})",
        "_BROKEN = _Sidecar(None, {})",
        "tests/rag/indexing/test_access_labels.py::test_a_broken_sidecar_opens_nothing",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a JWT's signature and claims are not checked",
        "api/principals.py",
        '                options={"require": ["exp", "iss", "aud"]},\n',
        '                options={"verify_signature": False},\n',
        "tests/api/test_permissions.py::test_a_jwt_that_does_not_verify_is_refused",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: a JWT's groups claim is not read (every group)",
        "api/principals.py",
        '        return Principal(bucket, tenant, "jwt", user, groups)\n',
        '        return Principal(bucket, tenant, "jwt", user, None)\n',
        "tests/api/test_permissions.py::test_a_jwt_reads_with_the_groups_its_claims_name",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: traces show answers drawn from restricted documents",
        "rag/observability/langfuse.py",
        '        withheld = self._restricted(state) if self.config.passages != "text" else []\n',
        "        withheld: list[str] = []\n",
        "tests/api/test_permissions.py::test_traces_carry_user_and_groups_and_no_restricted_text_unless_asked",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: any user of the tenant may rate a trace",
        "rag/observability/ids.py",
        '        return f"{nonce}:{tenant}" if user is None else f"{nonce}:{tenant}:user:{user}"\n',
        '        return f"{nonce}:{tenant}"\n',
        "tests/api/test_permissions.py::test_traces_carry_user_and_groups_and_no_restricted_text_unless_asked",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: eval reports for any key of the tenant",
        "api/routes_ops.py",
        "    if not covers(caller.reader(state.settings), cli_reader(state.settings), labels):\n",
        "    if False:\n",
        "tests/api/test_permissions.py::test_eval_reports_are_for_principals_reading_what_evals_read",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: MCP reads documents as the CLI",
        "api/mcp_server.py",
        "        chunks = documents.indexed_chunks(caller.reader(settings), source)\n",
        "        from rag.core.access import cli_reader\n\n        chunks = documents.indexed_chunks(cli_reader(settings, caller.tenant), source)\n",
        "tests/api/test_permissions.py::test_mcp_tools_never_hand_out_the_hr_fact",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    Break(
        "permissions: the edge store's set_payload replaces the whole payload",
        "rag/store/edge.py",
        "                q.UpdateOperation.set_payload_by_filter(self._filter(filter), payload)\n",
        "                q.UpdateOperation.overwrite_payload_by_filter(self._filter(filter), payload)\n",
        "tests/rag/store/test_congruence.py::test_set_payload_relabels_in_place",
        guarantee="Security: a user reading documents of a group it is not in (within its tenant)",
    ),
    # -- sentence vectors stored at ingest (issue 29: answers on big folders) --------------
    Break(
        "perf: the answer path embeds every context sentence again (stored vectors unused)",
        "rag/verification/citations.py",
        "        if missing and self.stored is not None:\n",
        "        if False:\n",
        "tests/rag/indexing/test_sentence_vectors.py::"
        "test_answers_with_stored_vectors_equal_computed_ones_and_embed_only_the_question",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: ingestion cuts chunks into other sentences than the answer path scores",
        "rag/indexing/sentence_vectors.py",
        "        sentence = without_headings(segment, known)\n",
        "        sentence = segment\n",
        "tests/rag/indexing/test_sentence_vectors.py::"
        "test_answers_with_stored_vectors_equal_computed_ones_and_embed_only_the_question",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: the next sync leaves an older index without sentence vectors",
        "rag/indexing/ingest.py",
        "        if lacking <= 0:\n",
        "        if True:\n",
        "tests/rag/indexing/test_sentence_vectors.py::test_an_older_index_answers_meanwhile_says_so_and_the_next_sync_fills_it",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: a deleted document's sentence vectors stay",
        "rag/indexing/ingest.py",
        "            if sentence_file is not None:\n                sentence_file.forget(ids)\n",
        "",
        "tests/rag/indexing/test_sentence_vectors.py::test_a_deleted_document_takes_its_sentence_vectors_along",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: reindex keeps the replaced collection's sentence vectors file",
        "rag/indexing/reindex.py",
        "    index.sentence_vectors.drop(collection)\n",
        "",
        "tests/rag/indexing/test_sentence_vectors.py::test_reindex_stores_them_for_the_new_collection_and_drops_the_old_file",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: sentence vectors made by another model are served",
        "rag/indexing/sentence_vectors.py",
        "        if found != self.made_by:\n",
        "        if found is None:\n",
        "tests/rag/indexing/test_sentence_vectors.py::test_a_file_made_by_another_model_or_cutting_is_emptied",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    Break(
        "perf: concurrent questions padded together (an answer depends on who else asked)",
        "rag/indexing/embedding.py",
        "            groups.setdefault(len(tokens), []).append(i)\n",
        "            groups.setdefault(0, []).append(i)\n",
        "tests/rag/indexing/test_query_batcher.py::"
        "test_the_scorers_lone_questions_share_batches_and_get_their_vector_alone",
        guarantee="answers cost retrieval plus dot products (sentence vectors from ingest)",
    ),
    # -- answer relevance and follow-ups through every door (issue 30) ------------------------
    Break(
        "follow-ups: MCP's ask drops the conversation's history",
        "api/mcp_server.py",
        "caller, progress, question=question, filters=filters, history=history",
        "caller, progress, question=question, filters=filters",
        "tests/api/test_mcp.py::test_ask_answers_a_follow_up_with_the_conversation_as_history",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "follow-ups: a sentence said before is dropped though it holds what the follow-up asks",
        "rag/generate/extractive.py",
        " and not focus & {w[:5] for w in words} and c.typed is not True",
        " and not focus & {w[:5] for w in words}",
        "tests/rag/generate/test_generate_extractive.py::"
        "test_a_follow_up_is_not_answered_again_unless_the_sentence_has_what_it_asks",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "relevance: the type miss refitted as a weak feature (a 'when' answered without a time)",
        "rag/verification/answer_types.py",
        '    "type_miss": -2.775,\n',
        '    "type_miss": -0.928,\n',
        "tests/rag/verification/test_citations.py::"
        "test_a_supported_sentence_that_does_not_answer_the_question_abstains",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "extractive: a sentence opening with an option runs on from the one before it",
        "rag/generate/extractive.py",
        'gap = "" if not i else " " if body[:1].isupper() else "\\n\\n"',
        'gap = "" if not i else " "',
        "tests/rag/generate/test_generate_extractive.py::"
        "test_a_sentence_opening_with_an_option_is_said_a_paragraph_apart",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    # issue 29 throughput, session 4
    Break(
        "throughput: a full answer embeds its question again for support scoring",
        "rag/query/stages.py",
        "            self.scorer.remember(state.question, state.retrieval_vector[1])\n",
        "            pass\n",
        "tests/rag/query/test_per_request_work.py::"
        "test_a_full_answer_embeds_its_question_once_with_the_retrieval_vector",
        guarantee="a full answer embeds its question once (issue 29 throughput)",
    ),
    Break(
        "throughput: retrieval's vector kept only under the question as typed (spaces differ)",
        "rag/verification/citations.py",
        'for key in dict.fromkeys((text, " ".join(text.split()))):',
        "for key in (text,):",
        "tests/rag/query/test_per_request_work.py::"
        "test_a_full_answer_embeds_its_question_once_with_the_retrieval_vector",
        guarantee="a full answer embeds its question once (issue 29 throughput)",
    ),
    Break(
        "throughput: retrieval does not hand its query vector on",
        "rag/query/retrieve.py",
        "        return Retrieved(self._with_payloads(collection, kept), vec)",
        "        return Retrieved(self._with_payloads(collection, kept), None)",
        "tests/rag/query/test_per_request_work.py::"
        "test_a_full_answer_embeds_its_question_once_with_the_retrieval_vector",
        guarantee="a full answer embeds its question once (issue 29 throughput)",
    ),
    Break(
        "throughput: retrieval converts the payloads of all its dense candidates",
        "rag/query/retrieve.py",
        "dense = self.index.store.search_dense(collection, vec, candidates, flt, False)",
        "dense = self.index.store.search_dense(collection, vec, candidates, flt)",
        "tests/rag/query/test_per_request_work.py::"
        "test_retrieval_fetches_the_payloads_of_the_hits_it_keeps_only",
        guarantee="retrieval converts the payloads of the hits it keeps only (issue 29 throughput)",
    ),
    Break(
        "throughput: the kept hits' payloads are not fetched after a payload-less search",
        "rag/query/retrieve.py",
        "return Retrieved(self._with_payloads(collection, kept), vec)",
        "return Retrieved(kept, vec)",
        "tests/rag/query/test_per_request_work.py::"
        "test_retrieval_fetches_the_payloads_of_the_hits_it_keeps_only",
        guarantee="retrieval converts the payloads of the hits it keeps only (issue 29 throughput)",
    ),
    # issue 22, session 4: free rewording read by class, not instance
    Break(
        "verify: quantity expressions are not read as numbers",
        "rag/verification/grounding.py",
        "    text = quantities(text)\n    return (*_numbers(text), *_names(text))",
        "    return (*_numbers(text), *_names(text))",
        "tests/rag/verification/test_grounding.py::"
        "test_a_quantity_said_in_words_is_the_number_it_means",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: how often is no value (every month passes for every quarter)",
        "rag/verification/grounding.py",
        r'r"\b(?:every|each|once\s+(?:a|an|per))\s+(?P<u>night|day|week|month|year|hour|minute)\b"',
        r'r"\bnever-said\s+(?P<u>night)\b"',
        "tests/rag/verification/test_grounding.py::"
        "test_a_quantity_said_in_words_that_differs_is_not_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: unable, impossible and avoid are not ways of saying no",
        "rag/verification/grounding.py",
        'r"unable|impossible|avoid|avoids|avoided|avoiding|refrain|refrains)\\b"',
        'r"never-said)\\b"',
        "tests/rag/verification/test_grounding.py::test_every_way_of_saying_no_is_one_polarity",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: optional is not read as not required",
        "rag/verification/grounding.py",
        '(r"\\boptional\\b", "not required"),',
        '(r"\\bnever-said\\b", "not required"),',
        "tests/rag/verification/test_grounding.py::test_every_way_of_saying_no_is_one_polarity",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: can't ... until is read as a negation",
        "rag/verification/grounding.py",
        "(?P<between>[^,;.]*?)\\buntil\\b",
        "(?P<between>[^,;.]*?)\\bnever-said\\b",
        "tests/rag/verification/test_grounding.py::test_every_way_of_saying_no_is_one_polarity",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: It's opening a sentence is taken for a name",
        "rag/verification/grounding.py",
        'base in _COMMON_CAPS | {"let"} and not acronym',
        "w.lower() in _COMMON_CAPS and not acronym",
        "tests/rag/verification/test_grounding.py::test_a_contraction_opening_a_sentence_is_no_name",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an acronym the passage spells out is not grounded",
        "rag/verification/grounding.py",
        'value.text.rstrip("s").isupper() and spells(value.text, flat)',
        'value.text.rstrip("s").isupper() and False',
        "tests/rag/verification/test_grounding.py::"
        "test_an_acronym_the_passage_spells_out_is_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an opening answer clause's negation flips the claim",
        "rag/verification/support.py",
        "        return parts[1]\n",
        "        return claim\n",
        "tests/rag/verification/test_support.py::"
        "test_an_opening_clause_that_only_answers_negates_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: discourse markers are words the passage must hold",
        "rag/verification/support.py",
        r'r"on\s+top\s+of\s+(?:that|this|it)|in\s+addition(?:\s+to\s+(?:that|this))?|"',
        r'r"never-said|"',
        "tests/rag/verification/test_support.py::"
        "test_discourse_markers_hedges_and_modal_phrases_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a silent final e keeps clone and cloning apart",
        "rag/verification/support.py",
        'return s[:-1] if len(s) > 3 and s.endswith("e") else s',
        "return s",
        "tests/rag/verification/test_support.py::"
        "test_word_forms_a_rewording_uses_meet_the_passage_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: two words written as one are not read",
        "rag/verification/support.py",
        "        | frozenset(stem(w) for w in joined),",
        "        | frozenset(),",
        "tests/rag/verification/test_support.py::"
        "test_word_forms_a_rewording_uses_meet_the_passage_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a comparative is not its base adjective",
        "rag/verification/support.py",
        "        or next((_SYNONYM_OF[b] for b in _comparative_bases(word) if b in _SYNONYM_OF), None)\n",
        "",
        "tests/rag/verification/test_support.py::"
        "test_word_forms_a_rewording_uses_meet_the_passage_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a noun after similar does not refer back",
        "rag/verification/support.py",
        "referred = set(_REFERS_BACK.findall(claim.lower())) if context else set()",
        "referred: set[str] = set()",
        "tests/rag/verification/test_support.py::"
        "test_a_noun_after_similar_refers_to_the_sentence_before",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a bare and does not join a part from each cited passage",
        "rag/verification/citations.py",
        "joined = self._by_clause(text, numbers, context, parts_joined_by_and=True)",
        "joined = self._by_clause(text, numbers, context, parts_joined_by_and=False)",
        "tests/rag/verification/test_citations.py::"
        "test_one_fact_worded_from_two_cited_passages_is_kept",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a yes/no answer word does not answer",
        "rag/verification/citations.py",
        "sentence.relevant = sentence.relevance >= floor or answers_yes_no(",
        "sentence.relevant = sentence.relevance >= floor or False and answers_yes_no(",
        "tests/rag/verification/test_citations.py::"
        "test_a_yes_no_answer_to_the_question_asked_is_an_answer",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # issue 22, session 4 (second round): more classes of rewording
    Break(
        "verify: an opening clause echoing the question is checked against the passage",
        "rag/verification/support.py",
        "if all(asked is not None and matches(w, asked) for w in own):",
        "if not own:",
        "tests/rag/verification/test_support.py::test_an_opening_clause_echoing_the_question_is_the_answer_not_the_claim",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a hyphenated word is not read by its parts",
        "rag/verification/support.py",
        '    if "-" in word:\n',
        '    if "-" in word and False:\n',
        "tests/rag/verification/test_support.py::test_more_word_forms_meet_the_passage_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: paged is not page",
        "rag/verification/support.py",
        'w = w[:-1]  # "paged"',
        'w = w  # "paged"',
        "tests/rag/verification/test_support.py::test_more_word_forms_meet_the_passage_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: e.g. is read as a code name",
        "rag/verification/grounding.py",
        'masked = _ABBREVIATION.sub(lambda m: " " * len(m.group(0)), masked)',
        "masked = masked",
        "tests/rag/verification/test_grounding.py::test_an_abbreviation_and_single_in_a_name_are_no_values",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: single counts one anywhere (single sign-on)",
        "rag/verification/grounding.py",
        'elif low == "single" and not re.search(',
        'elif low == "single" and False and not re.search(',
        "tests/rag/verification/test_grounding.py::test_an_abbreviation_and_single_in_a_name_are_no_values",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'is an hour' is no value",
        "rag/verification/grounding.py",
        'than|of|is|are|"\n    r"was|were|be|been|around|roughly|approximately|nearly|almost|just|only|least|most|to)\\s+"',
        'than|of)\\s+"',
        "tests/rag/verification/test_grounding.py::test_one_unit_of_time_after_is_is_a_value_too",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: don't ... more than is a negation",
        "rag/verification/grounding.py",
        'r"(?:\\b(?:no|not|never)|n[\'’]t)\\s+(?:[a-z]+\\s+){0,2}?(?:more|later|longer|greater|higher)"',
        'r"(?:\\b(?:no|not|never))\\s+(?:[a-z]+\\s+){0,2}?(?:more|later|longer|greater|higher)"',
        "tests/rag/verification/test_grounding.py::test_not_with_a_verb_between_it_and_more_than_is_at_most",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a common word opening the sentence is taken for a name",
        "rag/verification/support.py",
        '            and low not in _SYNONYM_OF  # a word of the language ("Regular backups ..."), no name\n',
        "",
        "tests/rag/verification/test_support.py::test_a_word_of_the_language_opening_the_sentence_is_no_name",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an acronym said one way and spelt out the other is two things",
        "rag/verification/support.py",
        'referred |= _acronym_words(claim, "\\n".join(passages))',
        "referred |= frozenset()",
        "tests/rag/verification/test_support.py::test_an_acronym_one_side_spells_out_the_other_says",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'for a period of' is a phrase the passage must hold",
        "rag/verification/support.py",
        '        (r"(?:a|the)\\s+(?:period|span|duration|term|total|length)\\s+of", " "),\n',
        "",
        "tests/rag/verification/test_support.py::test_frames_and_requirement_words_around_a_fact_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'required' must be in the passage (polarity already checks it)",
        "rag/verification/support.py",
        "    require requires required requiring requirement mandatory compulsory obligatory necessary\n",
        "",
        "tests/rag/verification/test_support.py::test_frames_and_requirement_words_around_a_fact_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an acronym of the question spelt out counts for nothing in relevance",
        "rag/verification/citations.py",
        "said |= _prefixes(",
        "said |= set() and _prefixes(",
        "tests/rag/verification/test_citations.py::test_an_acronym_of_the_question_spelt_out_counts_as_said",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # issue 30, session 4: follow-ups answered where the conversation is (and cached per conversation)
    Break(
        "issue 30: a follow-up that refers back is not answered where the conversation is",
        "rag/generate/extractive.py",
        "        if follow_up and not picked:\n",
        "        if False:\n",
        "tests/api/test_follow_ups.py::test_issue_conversations_through_v1_query",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: an ellipsis is answered where the conversation is (the stage drops its reason)",
        "rag/query/stages.py",
        '                "reason": state.condensed.reason,\n',
        "",
        "tests/api/test_follow_ups.py::test_a_follow_up_the_documents_do_not_answer_abstains",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: the conversation's place takes any document",
        "rag/generate/extractive.py",
        "if c.n in by_n and by_n[c.n].source in sources and holds_asked(c)",
        "if c.n in by_n and holds_asked(c)",
        "tests/rag/generate/test_generate_extractive.py::test_a_follow_up_that_refers_back_is_answered_where_the_conversation_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: the conversation's place without the follow-up's own words",
        "rag/generate/extractive.py",
        "        return all(says(w, text, synonyms=False) for w in words)",
        "        return True",
        "tests/rag/generate/test_generate_extractive.py::test_a_follow_up_that_refers_back_is_answered_where_the_conversation_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: the follow-up's own words matched by synonyms",
        "rag/generate/extractive.py",
        "        return all(says(w, text, synonyms=False) for w in words)",
        "        return all(says(w, text) for w in words)",
        "tests/rag/generate/test_generate_extractive.py::test_the_follow_ups_own_words_are_held_as_written_not_as_synonyms",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: a follow-up with no words of its own answered where the conversation is",
        "rag/generate/extractive.py",
        "    words = claim_words(asked)\n    if not words:\n        return []\n",
        "    words = claim_words(asked)\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_follow_up_that_refers_back_is_answered_where_the_conversation_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: the answer cache serves a follow-up a first turn's answer",
        "rag/query/answer_cache.py",
        "                **scope,\n",
        "",
        "tests/rag/query/test_answer_cache.py::test_a_follow_up_is_not_served_a_first_turns_answer",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: a manual page's NAME line is not the answer to what its command does",
        "rag/generate/extractive.py",
        "            rel = max(rel, NAME_LINE_RELEVANCE)\n",
        "            pass\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_manual_pages_name_line_answers_what_its_command_does",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: any manual page's NAME line answers what a command does",
        "rag/generate/extractive.py",
        '    return "-".join(asked.group(1).lower().split()) == line.group(1).lower()\n',
        "    return True\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_manual_pages_name_line_answers_what_its_command_does",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    # issue 29 tracing, session 4
    Break(
        "tracing: a failed export does not pause tracing (traces still built for a dead Langfuse)",
        "rag/observability/langfuse.py",
        "        self._pause = min(longest, self._pause * 2 if self._pause else first)\n"
        "        self.paused_until = time.monotonic() + self._pause\n",
        "        self._pause = min(longest, self._pause * 2 if self._pause else first)\n",
        "tests/rag/observability/test_langfuse.py::"
        "test_traces_are_dropped_on_arrival_while_langfuse_fails",
        guarantee="Issue 29: tracing under load",
    ),
    Break(
        "tracing: a stalled export is not noticed until it times out",
        "rag/observability/langfuse.py",
        "or (since > 0.0 and now - since > _SLOW_EXPORT_SECONDS)",
        "or (since < 0.0 and now - since > _SLOW_EXPORT_SECONDS)",
        "tests/rag/observability/test_langfuse.py::"
        "test_traces_are_dropped_on_arrival_while_langfuse_fails",
        guarantee="Issue 29: tracing under load",
    ),
    Break(
        "tracing: the export-time mask scrubs each free text with its own model call",
        "rag/observability/langfuse.py",
        "        self._batch_scrubbed = self._free_texts(params)\n",
        "        self._batch_scrubbed = {}\n",
        "tests/rag/observability/test_langfuse.py::"
        "test_a_batch_of_traces_is_scrubbed_in_one_pass_of_the_pii_model",
        guarantee="Issue 29: tracing under load",
    ),
    Break(
        "pii: a batch's spans taken from the analyzer as they are (no thresholds, names, allow list)",
        "rag/guards/pii/engine.py",
        "            out[i] = self._spans(texts[i], results)\n",
        "            out[i] = [Span(r.entity_type, r.start, r.end, float(r.score)) for r in results]\n",
        "tests/rag/guards/pii/test_engine.py::"
        "test_detecting_a_batch_finds_what_one_call_each_finds",
        guarantee="Issue 29: tracing under load",
    ),
    # issue 30, session 4, blind tune half
    Break(
        "issue 30: a topic-shift marker stays in the new question",
        "rag/query/condense.py",
        "    if shift := _shift_marker(tokens):\n",
        "    if shift := 0:\n",
        "tests/rag/query/test_condense.py::test_a_topic_shift_marker_is_no_part_of_the_new_question",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: any opening before a comma or colon is a topic-shift marker",
        "rag/query/condense.py",
        "            if words and words <= _SHIFT_WORDS and words & _SHIFT_NAMES and rest:\n",
        "            if words and words <= _SHIFT_WORDS and rest:\n",
        "tests/rag/query/test_condense.py::test_only_an_opening_that_names_a_shift_is_a_marker",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: a question word typed without its apostrophe is not a question word",
        "rag/query/condense.py",
        "        if low in _UNMARKED_CONTRACTIONS:\n",
        "        if False:\n",
        "tests/rag/query/test_condense.py::test_a_question_word_typed_without_its_apostrophe_opens_a_complete_question",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30: a pronoun means the first noun of the previous question, not its subject",
        "rag/query/condense.py",
        '    return at > 0 and roles[at] == "aux" and _low(tokens[at]) in _DO_MODALS\n',
        "    return False\n",
        "tests/rag/query/test_condense.py::test_a_pronoun_means_the_previous_questions_subject",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        'issue 30: a plural pronoun never means a noun said with "a"',
        "rag/query/condense.py",
        '        return number == "plur" and c is subject and _low(ctx.question[c.start]) in ("a", "an")\n',
        "        return False\n",
        "tests/rag/query/test_condense.py::test_a_pronoun_means_the_previous_questions_subject",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        'issue 30: a plural pronoun means any noun said with "a", an object too',
        "rag/query/condense.py",
        '        return number == "plur" and c is subject and _low(ctx.question[c.start]) in ("a", "an")\n',
        '        return number == "plur" and _low(ctx.question[c.start]) in ("a", "an")\n',
        "tests/rag/query/test_condense.py::test_a_pronoun_means_the_previous_questions_subject",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    # issue 22, session 4, blind tune half: classes the blind set's tune half showed
    Break(
        "verify: a light verb's -ing form must be in the passage ('stating')",
        "rag/verification/support.py",
        "        if _light(low) or low in _STOPWORDS_EXTRA",
        "        if low in _LIGHT or low in _STOPWORDS_EXTRA",
        "tests/rag/verification/test_support.py::test_a_light_verb_says_nothing_in_its_ing_form_either",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a noun's -ing is light when the list holds the noun ('timing' for 'time')",
        "rag/verification/support.py",
        '    if past.endswith("ed")\n',
        "",
        "tests/rag/verification/test_support.py::test_a_light_verb_says_nothing_in_its_ing_form_either",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: the verb carrying an action noun must be in the passage ('is applied')",
        "rag/verification/support.py",
        '            r"\\1",\n',
        '            r"\\1applied",\n',
        "tests/rag/verification/test_support.py::test_an_action_named_by_its_noun_needs_no_carrying_verb_from_the_passage",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a question acronym the passage spells out is a missing name",
        "rag/verification/answer_types.py",
        "            if name.isupper() and spells(name, context):",
        "            if False:",
        "tests/rag/verification/test_answer_types.py::test_a_question_acronym_the_passage_spells_out_is_mentioned",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: any acronym counts as spelt out by the passage",
        "rag/verification/answer_types.py",
        "            if name.isupper() and spells(name, context):",
        "            if name.isupper():",
        "tests/rag/verification/test_answer_types.py::test_a_question_acronym_the_passage_spells_out_is_mentioned",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: the actor of an action is not checked ('scheduled by the on-call engineer')",
        "rag/verification/support.py",
        "    missing += _swapped_actors(stated, sentences)\n",
        "",
        "tests/rag/verification/test_support.py::test_the_actor_of_an_action_is_one_the_passage_names_for_it",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an actor the passage names for any action counts for this one",
        "rag/verification/support.py",
        "for s in doing)",
        "for s in sentences)",
        "tests/rag/verification/test_support.py::test_the_actor_of_an_action_is_one_the_passage_names_for_it",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: the claim's opening subject is no actor",
        "rag/verification/support.py",
        "    m = _SUBJECT.match(text)\n",
        "    m = None\n",
        "tests/rag/verification/test_support.py::test_the_actor_of_an_action_is_one_the_passage_names_for_it",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a fragment question's answer-form word ('steps') must be said",
        "rag/verification/citations.py",
        "        asked_words = [w for w in asked_words if w.lower() not in _ANSWER_FORM]\n",
        "        asked_words = list(asked_words)\n",
        "tests/rag/verification/test_citations.py::test_a_fragment_question_reads_as_what_are_the_x_of_y",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a clipped word of a fragment question ('dev') is not said by the whole",
        "rag/verification/citations.py",
        "    said |= {a for a in asked if _clipped(a, low)}\n",
        "",
        "tests/rag/verification/test_citations.py::test_a_fragment_question_reads_as_what_are_the_x_of_y",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a question asked with a question word is read as a fragment",
        "rag/verification/citations.py",
        "    return _ASKS_PROPERLY.match(question) is None\n",
        "    return True\n",
        "tests/rag/verification/test_citations.py::test_a_fragment_question_reads_as_what_are_the_x_of_y",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: any three letters inside a word count as a clipped word",
        "rag/verification/citations.py",
        "s.startswith(word) for s in said)",
        "word in s for s in said)",
        "tests/rag/verification/test_citations.py::test_a_fragment_question_reads_as_what_are_the_x_of_y",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # -- issue 29 tracing cost, session 5 --------------------------------------------------
    Break(
        "issue 29: the e-mail pattern runs only on texts without an @",
        "rag/observability/scrub.py",
        'if "@" in text:',
        'if "@" not in text:',
        "tests/rag/observability/test_scrub.py::test_regex_scrub",
        guarantee="no personal data in traces (the regular-expression floor)",
    ),
    Break(
        "issue 29: a digit-free text skips the e-mail pattern too",
        "rag/observability/scrub.py",
        '    if "@" in text:\n        text = _EMAIL.sub("<EMAIL_ADDRESS>", text)\n    if not _DIGIT.search(text):\n        return text\n',
        '    if not _DIGIT.search(text):\n        return text\n    if "@" in text:\n        text = _EMAIL.sub("<EMAIL_ADDRESS>", text)\n',
        "tests/rag/observability/test_scrub.py::test_regex_scrub",
        guarantee="no personal data in traces (the regular-expression floor)",
    ),
    Break(
        "issue 29: input/output encoded ahead differ from the SDK's encoding",
        "rag/observability/langfuse.py",
        "return json.dumps(value, allow_nan=False)",
        "return json.dumps(value, allow_nan=False, ensure_ascii=False)",
        "tests/rag/observability/test_langfuse.py::test_fields_encoded_ahead_give_the_sdks_own_attributes",
        guarantee="traces carry what the Langfuse SDK would send",
    ),
    Break(
        "issue 29: NaN encoded ahead as bare NaN (the SDK writes it as a string)",
        "rag/observability/langfuse.py",
        "return json.dumps(value, allow_nan=False)",
        "return json.dumps(value)",
        "tests/rag/observability/test_langfuse.py::test_fields_encoded_ahead_give_the_sdks_own_attributes",
        guarantee="traces carry what the Langfuse SDK would send",
    ),
    # -- issue 29 tracing.worker: process, session 5 ----------------------------------------
    Break(
        "issue 29: the process worker forwards no trace to its exporter process",
        "rag/observability/export_process.py",
        'self._send(item if isinstance(item, tuple) else ("trace", item))',
        "self._send(item) if isinstance(item, tuple) else None",
        "tests/rag/observability/test_langfuse.py::test_the_process_worker_builds_and_exports_spans_outside_the_server",
        guarantee="tracing.worker: process traces every request from outside the server",
    ),
    Break(
        "issue 29: tracing.worker process builds the spans in the server after all",
        "rag/observability/__init__.py",
        '"process": ("rag.observability.export_process", "ProcessLangfuseTracer"),',
        '"process": ("rag.observability.langfuse", "LangfuseTracer"),',
        "tests/rag/observability/test_langfuse.py::test_the_process_worker_builds_and_exports_spans_outside_the_server",
        guarantee="tracing.worker: process traces every request from outside the server",
    ),
    Break(
        "issue 29: the server does not see the exporter process pause for a failing Langfuse",
        "rag/observability/export_process.py",
        "return self._state[0], self._state[1]",
        "return 0.0, 0.0",
        "tests/rag/observability/test_langfuse.py::test_the_process_worker_drops_traces_in_the_server_while_langfuse_fails",
        guarantee="tracing.worker: process traces every request from outside the server",
    ),
    # --- issue 29 int8, session 5 ---
    Break(
        "int8: query_precision int8 still embeds queries with the fp32 export",
        "rag/indexing/embedding.py",
        '        return self._int8 if self._query_precision == "int8" else self._onnx\n',
        "        return self._onnx\n",
        "tests/rag/indexing/test_embedding_int8.py::test_int8_queries_use_the_quantized_export_near_fp32",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: document_precision int8 still embeds documents with PyTorch",
        "rag/indexing/embedding.py",
        '        return self._int8 if self.settings.document_precision == "int8" else None\n',
        "        return None\n",
        "tests/rag/indexing/test_embedding_int8.py::test_int8_documents_encode_chunks_and_sentences_at_int8",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: the quantized graph encodes a batch in one run (a vector depends on its companions)",
        "rag/indexing/embedding_onnx.py",
        '        self.one_text_per_run = precision == "int8"\n',
        "        self.one_text_per_run = False\n",
        "tests/rag/indexing/test_embedding_int8.py::test_an_int8_vector_does_not_depend_on_the_texts_encoded_with_it",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: an index built at one document precision opens at another",
        "rag/indexing/index.py",
        "        if built_at != identity.document_precision:\n",
        "        if False:\n",
        "tests/rag/indexing/test_embedding_int8.py::test_the_index_records_what_encoded_its_documents",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: the identity does not record the document precision",
        "rag/indexing/embedding.py",
        "                document_precision=self.settings.document_precision,\n",
        "",
        "tests/rag/indexing/test_embedding_int8.py::test_the_index_records_what_encoded_its_documents",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: sentence vectors made at int8 keep the fp32 identity",
        "rag/indexing/embedding.py",
        '        return f"{self.fingerprint}:{self.document_precision}"\n',
        "        return self.fingerprint\n",
        "tests/rag/indexing/test_embedding_int8.py::test_the_index_records_what_encoded_its_documents",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: an fp32 identity gains a key (every older index, cache and eval index changes)",
        "rag/indexing/embedding.py",
        '            del out["document_precision"]\n',
        "            pass\n",
        "tests/rag/indexing/test_embedding_int8.py::test_the_index_records_what_encoded_its_documents",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: ingestion embeds a few chunks with the query encoder",
        "rag/indexing/ingest.py",
        "embedded = self.index.embedder.embed_chunks([to_embed[k] for k in keys])",
        "embedded = self.index.embedder.embed([to_embed[k] for k in keys])",
        "tests/rag/indexing/test_embedding_int8.py::test_chunks_are_stored_at_the_document_precision_whatever_the_query_one",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: a quantization far from fp32 is used anyway",
        "rag/indexing/embedding.py",
        "                if self.int8_cosine < self.settings.min_int8_cosine:\n",
        "                if False:\n",
        "tests/rag/indexing/test_embedding_int8.py::test_int8_unavailable_or_too_far_from_fp32_is_a_clear_error",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: quantization unavailable falls back to fp32 silently",
        "rag/indexing/embedding.py",
        "        if reason is None:\n            return encoder\n        raise EmbeddingError(",
        "        if True:\n            return encoder if reason is None else None\n        raise EmbeddingError(",
        "tests/rag/indexing/test_embedding_int8.py::test_int8_unavailable_or_too_far_from_fp32_is_a_clear_error",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    Break(
        "int8: rag status does not show what encoded the documents",
        "rag/indexing/status.py",
        '            "document_precision": identity.document_precision,\n',
        "",
        "tests/rag/indexing/test_embedding_int8.py::test_the_index_records_what_encoded_its_documents",
        guarantee="Issue 29: int8 embedding encoder",
    ),
    # issue 30, session 5: referents of pydocs follow-ups, documentation sentences kept
    Break(
        "issue 30 (s5): 'one' means the topic (a name an answer gave), not what was asked about",
        "rag/query/condense.py",
        "    if kinds_only and ctx.kind:\n",
        "    if False:\n",
        "tests/rag/query/test_condense.py::test_one_is_an_instance_of_what_was_asked_about_not_the_name_answered",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): the kind a named topic is about is not kept through a follow-up",
        "rag/query/condense.py",
        "        return before.kind\n",
        "        return None\n",
        "tests/rag/query/test_condense.py::test_one_is_an_instance_of_what_was_asked_about_not_the_name_answered",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): an ellipsis's phrase drops what the replaced one was a part of",
        "rag/query/condense.py",
        '    if owner is not None and "of" not in {_low(w) for w in words}:\n',
        "    if False:\n",
        "tests/rag/query/test_condense.py::test_a_part_of_something_is_not_what_it_means",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): a pronoun means a part ('the given position of a list'), not the whole",
        "rag/query/condense.py",
        "        words = _whole_of_part(c.words(ctx.question), c.head - c.start)\n",
        "        words = c.words(ctx.question)\n",
        "tests/rag/query/test_condense.py::test_a_part_of_something_is_not_what_it_means",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): 'instead' loses the use the last turn asked about",
        "rag/query/condense.py",
        "        purpose = _purpose_phrase(ctx.question)\n",
        "        purpose = []\n",
        "tests/rag/query/test_condense.py::test_instead_keeps_the_use_the_last_turn_asked_about",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): 'instead' adds the last turn's purpose to one the question names itself",
        "rag/query/condense.py",
        "    if not {_low(t) for t in words} & _PURPOSE:\n",
        "    if True:\n",
        "tests/rag/query/test_condense.py::test_instead_keeps_the_use_the_last_turn_asked_about",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): 'it' is the first name an answer mentions, not the one it recommends",
        "rag/query/condense.py",
        "    for recommended in _USE_INSTEAD.finditer(answer):\n",
        "    for recommended in _USE_INSTEAD.finditer(''):\n",
        "tests/rag/query/test_condense.py::test_it_is_the_name_an_answer_recommends_not_the_first_it_mentions",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): verify: the marker's space removed before a dot that opens a name ('is.venv')",
        "rag/verification/citations.py",
        '    bare = re.sub(r"\\s+([.,;:!?])(?=[\\s\\"\')\\]]|$)", r"\\1", bare)\n',
        '    bare = re.sub(r"\\s+([.,;:!?])", r"\\1", bare)\n',
        "tests/rag/verification/test_citations.py::test_a_name_that_opens_with_a_dot_is_a_value_the_passage_holds",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): verify: every passage's headings make a sentence say nothing new",
        "rag/verification/citations.py",
        "        cited = [n for n in markers if n in self._headings] or list(self._headings)\n",
        "        cited = list(self._headings)\n",
        "tests/rag/verification/test_citations.py::test_another_pages_title_does_not_make_a_sentence_say_nothing",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): verify: a definition's label split off its sentence",
        "rag/verification/citations.py",
        "    return tuple(dict.fromkeys([*sentences, *passage_segments(text)]))\n",
        "    return tuple(sentences)\n",
        "tests/rag/verification/test_citations.py::test_a_definitions_label_is_a_value_its_passage_states",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): 'it' after 'What should I use ...?' is not the name the answer gave",
        "rag/query/condense.py",
        "        if _ASKS_WHAT_TO_USE.match(_text(ctx.question)):\n",
        "        if False:\n",
        "tests/rag/query/test_condense.py::test_it_is_what_an_answer_to_what_should_i_use_named",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): a definition's label does not answer what the thing it names is",
        "rag/generate/extractive.py",
        "        elif defines_what_is_asked(question, sentence, headings[n]):\n",
        "        elif False:\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_definitions_label_answers_what_the_thing_it_names_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): any label answers 'What is X?', whatever it names",
        "rag/generate/extractive.py",
        '    if name == thing or name.endswith("." + thing) or thing.endswith("." + name):\n',
        "    if True:\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_definitions_label_answers_what_the_thing_it_names_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s5): a subcommand's label answers on any page",
        "rag/generate/extractive.py",
        "    return len(words) > 1 and name == words[-1] and all(w in place for w in words[:-1])\n",
        "    return len(words) > 1 and name == words[-1]\n",
        "tests/rag/generate/test_generate_extractive.py::test_a_definitions_label_answers_what_the_thing_it_names_is",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    # issue 22, session 5: leaks closed as classes, chatty wording (blind3 tune half)
    Break(
        "verify: a reworded action's actor is not looked for by what it is done to",
        "rag/verification/support.py",
        "            doing = _said_of(claim, role, action, sentences)\n",
        "            doing = []\n",
        "tests/rag/verification/test_support.py::test_the_actor_of_a_reworded_action_is_the_one_its_passage_sentence_names",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: two events told in the other order are not a flip",
        "rag/verification/support.py",
        "    is_flipped = is_flipped or _order_flipped(stated, restated)\n",
        "",
        "tests/rag/verification/test_support.py::test_two_events_told_in_the_other_order_say_the_opposite",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'after' read as 'before'",
        "rag/verification/support.py",
        "    return (own, other) if before else (other, own)\n",
        "    return (own, other)\n",
        "tests/rag/verification/test_support.py::test_two_events_told_in_the_other_order_say_the_opposite",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a value said of another subject of its passage is grounded",
        "rag/verification/support.py",
        "    missing += [v for v in _misplaced_values(stated, sentences) if v not in missing]\n",
        "",
        "tests/rag/verification/test_support.py::test_a_value_said_of_another_subject_of_its_passage_is_not_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a clause holding a value the claim also states is a rival",
        "rag/verification/support.py",
        "                    and not any(u is not v and grounded_in(u, r.text) for u in said)\n",
        "",
        "tests/rag/verification/test_support.py::test_a_value_said_of_another_subject_of_its_passage_is_not_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: how often is a rival of how long",
        "rag/verification/support.py",
        "                    and _periodic(r, c) == _periodic(v, part)\n",
        "",
        "tests/rag/verification/test_support.py::test_a_value_said_of_another_subject_of_its_passage_is_not_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: code names of one series ('SEV1', 'SEV2') are no rivals",
        "rag/verification/grounding.py",
        '    if a.kind == "code":  # one series, another member: "SEV1" / "SEV2", "v2" / "v3"\n',
        '    if a.kind == "code":\n        return False\n    if False:\n',
        "tests/rag/verification/test_support.py::test_a_value_said_of_another_subject_of_its_passage_is_not_grounded",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a pieced claim's subject from a second sentence spares its unsupported word",
        "rag/verification/support.py",
        "        if set(pieced) & set(_subject_words(stated)):\n",
        "        if len(pieced) >= 3:\n",
        "tests/rag/verification/test_support.py::test_a_claim_pieced_from_two_sentences_has_no_word_to_spare",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: one chance word from a second sentence fails a reworded claim",
        "rag/verification/support.py",
        "        if set(pieced) & set(_subject_words(stated)):\n",
        "        if pieced:\n",
        "tests/rag/verification/test_support.py::test_a_claim_pieced_from_two_sentences_has_no_word_to_spare",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an ISO date inside a name says no date",
        "rag/verification/grounding.py",
        "        for m in _DATE_ISO.finditer(text)\n        if 1 <= int",
        '        for m in _DATE_ISO.finditer("")\n        if 1 <= int',
        "tests/rag/verification/test_grounding.py::test_an_iso_date_inside_a_name_grounds_the_date_written_in_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a month name is not grounded by a date the passage writes in digits",
        "rag/verification/grounding.py",
        '                return True  # "March" of a date the passage writes 2026-03-14\n',
        "                pass\n",
        "tests/rag/verification/test_grounding.py::test_an_iso_date_inside_a_name_grounds_the_date_written_in_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'And no, ...' negates what follows",
        "rag/verification/grounding.py",
        r'    r"^\s*(?:(?:and|but|so|well|oh|okay|ok)\s*,?\s+)?(?:no|',
        r'    r"^\s*(?:no|',
        "tests/rag/verification/test_support.py::test_chatty_frames_lead_ins_and_phrasal_verbs_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'The good news is that' must be said by the passage",
        "rag/verification/support.py",
        r'            r"thing|point|takeaway)\s+(?:here\s+)?(?:is|being)(?:\s+that)?|"',
        r'            r"thing|point|takeaway)\s+(?:here\s+)?(?:is|being)(?:\s+that)?XX|"',
        "tests/rag/verification/test_support.py::test_chatty_frames_lead_ins_and_phrasal_verbs_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a phrasal verb ('stick around') is two words the passage lacks",
        "rag/verification/support.py",
        r'\s+around", "kept"),',
        r'\s+around", "stick around"),',
        "tests/rag/verification/test_support.py::test_chatty_frames_lead_ins_and_phrasal_verbs_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'You're expected to' read as 'Youshould'",
        "rag/verification/support.py",
        '            " should",  # apart',
        '            "should",  # apart',
        "tests/rag/verification/test_support.py::test_chatty_frames_lead_ins_and_phrasal_verbs_say_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a chatty question's wrapping words must be said",
        "rag/verification/citations.py",
        '    asked_words = content_words(_CHATTY.sub(" ", question))\n',
        "    asked_words = content_words(question)\n",
        "tests/rag/verification/test_citations.py::test_a_chatty_question_is_read_for_what_it_asks",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        'verify: "I\'m" in a question is a name',
        "rag/verification/answer_types.py",
        """            and re.sub(r"['’](?:m|ve|d|ll)$", "", w) != "I\"""",
        '            and w != "I"',
        "tests/rag/verification/test_citations.py::test_a_chatty_question_is_read_for_what_it_asks",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a clipped word counts in fragment questions only",
        "rag/verification/citations.py",
        "    said |= {a for a in asked if _clipped(a, low)}\n",
        "    said |= {a for a in asked if fragment and _clipped(a, low)}\n",
        "tests/rag/verification/test_citations.py::test_a_chatty_question_is_read_for_what_it_asks",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a courtesy ('Good question!') is a claim no passage holds",
        "rag/verification/citations.py",
        "        ) and not _COURTESY.fullmatch(text)\n",
        "        )\n",
        "tests/rag/verification/test_citations.py::test_a_courtesy_is_said_and_an_interjection_names_nothing",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'turned off' negates nothing",
        "rag/verification/grounding.py",
        '        (r"\\b(?:turn(?:s|ed)?|switch(?:es|ed)?|shut(?:s)?)\\s+off\\b|\\bdisabled?\\b", "not enabled"),\n',
        "",
        "tests/rag/verification/test_support.py::test_more_chatty_wording_is_read_and_its_opposites_still_flip",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a wiki is not named by the word before it",
        "rag/verification/grounding.py",
        "desk|squad|office|wiki|",
        "desk|squad|office|",
        "tests/rag/verification/test_support.py::test_more_chatty_wording_is_read_and_its_opposites_still_flip",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'get back to' is two words the passage lacks",
        "rag/verification/support.py",
        '\\s+back\\s+to", "answer"),',
        '\\s+back\\s+to", "returnx"),',
        "tests/rag/verification/test_support.py::test_more_chatty_wording_is_read_and_its_opposites_still_flip",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a bound on a number ('under six hours') has no opposite",
        "rag/verification/grounding.py",
        '            rf"exceeding|beyond)\\s+(?:an?\\s+)?(?=\\d|(?:{_WORDS_RE})\\b)",\n',
        '            rf"exceeding|beyond)\\s+(?:an?\\s+)?(?=NEVER)",\n',
        "tests/rag/verification/test_support.py::test_a_bound_on_a_number_flips_to_its_opposite",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # -- after the merges, session 5 --------------------------------------------------------
    Break(
        "verify: 'how big' read as the form of the answer, not part of what is asked",
        "rag/verification/citations.py",
        "(?:quickly|fast|soon|long|often|frequently|early|late)",
        "(?:quickly|fast|soon|long|often|frequently|big|early|late)",
        "tests/api/test_follow_ups.py::test_a_follow_up_the_documents_do_not_answer_abstains",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # -- issue 30, session 6 ------------------------------------------------------------------
    Break(
        "issue 30 (s6): eval: the code-aware match removes punctuation as SQuAD does",
        "evals/answers.py",
        "text.lower().translate(_PUNCT_AS_SPACE)",
        "text.lower().translate(_PUNCT)",
        "tests/evals/test_answers.py::test_a_code_name_inside_a_call_is_right_code_aware_but_not_squad",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): eval: conversations score the code-aware match as SQuAD's",
        "evals/conversations.py",
        '"contains_gold_code_aware": contains_gold_code_aware(answer, turn.answers)',
        '"contains_gold_code_aware": contains_gold(answer, turn.answers)',
        "tests/evals/test_answers.py::test_conversations_report_both_matches_for_first_turns_and_follow_ups",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): eval: the text report leaves the code-aware figure out",
        "evals/report.py",
        """    "answer_contains_gold_code_aware",
    "gold_cited",
    "citation_precision",""",
        """    "gold_cited",
    "citation_precision",""",
        "tests/evals/test_answers.py::test_the_answer_eval_reports_both_matches_side_by_side",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive: the API entry a how-do-I question asks for is not preferred",
        "rag/generate/extractive.py",
        "    return _asked_entry_first(question, out, segments)",
        "    return out",
        "tests/rag/generate/test_generate_extractive.py::test_the_api_entry_a_how_do_i_question_asks_for_is_its_answer",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: a root is any word it opens ('copy' does 'copyreg')",
        "rag/generate/entries.py",
        "long_.startswith(short) and len(long_) - len(short) <= 2",
        "long_.startswith(short)",
        "tests/rag/generate/test_generate_extractive.py::test_entry_morphology_and_labels",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: the kind asked for is not required ('Which class' gets a method)",
        "rag/generate/entries.py",
        "if _of_kind(e, kind) and (s := entry_match(action, e)) is not None",
        "if (s := entry_match(action, e)) is not None",
        "tests/rag/generate/test_generate_extractive.py::test_the_kind_asked_for_and_a_mention_that_does_it",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive: no mention of a code name that does what is asked",
        "rag/generate/extractive.py",
        "        return _mention_doing_it(question, action, found, frozenset(parameters))",
        "        return found",
        "tests/rag/generate/test_generate_extractive.py::test_the_kind_asked_for_and_a_mention_that_does_it",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive: a continuing follow-up ranks every document alike",
        "rag/generate/extractive.py",
        "            found = where_the_conversation_is(found, request, follow_up)\n",
        "",
        "tests/rag/generate/test_generate_extractive.py::test_a_continuing_follow_up_ranks_the_previous_answers_document_higher",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): condense: the unknown word after 'do I' is a noun",
        "rag/query/condense.py",
        "                and _low(tokens[i - 1]) in _SUBJECTS\n",
        "                and _low(tokens[i - 1]) in _SUBJECTS\n                and False\n",
        "tests/rag/query/test_condense.py::test_a_how_do_i_follow_up_keeps_the_action_or_takes_a_new_one",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): condense: a fragment opening with a verb is no new action",
        "rag/query/condense.py",
        "        elif (predicate := _replace_predicate(words, ctx.question)) is not None:",
        "        elif (predicate := None) is not None:",
        "tests/rag/query/test_condense.py::test_a_how_do_i_follow_up_keeps_the_action_or_takes_a_new_one",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: a manual page's NAME line and options are no entries",
        "rag/generate/entries.py",
        "        return _command_or_option(segment, following)",
        "        return None",
        "tests/rag/generate/test_generate_extractive.py::test_a_manual_pages_command_and_options_are_entries_too",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: a NAME line said with its description again",
        "rag/generate/extractive.py",
        'alone = "\\n" not in c.sentence and entry.description not in c.sentence',
        'alone = "\\n" not in c.sentence',
        "tests/rag/generate/test_generate_extractive.py::test_a_manual_pages_command_and_options_are_entries_too",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: an entry far down the ranking is raised",
        "rag/generate/extractive.py",
        "        if near_top and entry.description:",
        "        if entry.description:",
        "tests/rag/generate/test_generate_extractive.py::test_an_entry_far_down_the_ranking_is_about_something_else",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    Break(
        "issue 30 (s6): extractive entries: a parameter mentioned does what the question asks",
        "rag/generate/entries.py",
        "        if name.lower() in asked or name in parameters:",
        "        if name.lower() in asked:",
        "tests/rag/generate/test_generate_extractive.py::test_the_api_entry_a_how_do_i_question_asks_for_is_its_answer",
        guarantee="Issue 30: right answers beyond the fixtures, follow-ups",
    ),
    # -- issue 22, session 6 -------------------------------------------------------------
    Break(
        "verify: how often grounds how long ('every quarter' holds '90 days')",
        "rag/verification/grounding.py",
        "    if a.every != b.every and ua != ub:\n",
        "    if False:\n",
        "tests/rag/verification/test_support.py::test_how_often_is_not_how_long",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a bound is read against both sentences holding its number together",
        "rag/verification/support.py",
        "    is_flipped = is_flipped or _bound_flipped(stated, sentences)\n",
        "",
        "tests/rag/verification/test_support.py::test_a_bound_is_read_against_the_sentence_holding_the_value_it_bounds",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a version is not owned by the product it follows ('Python 16')",
        "rag/verification/support.py",
        "    missing += _swapped_owners(stated, passages)\n",
        "",
        "tests/rag/verification/test_support.py::test_a_version_belongs_to_the_product_it_follows",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: the actor after an opening clause is not checked",
        "rag/verification/support.py",
        '    r"^\\W*(?:(?:once|after|when|whenever|before|if|as\\s+soon\\s+as|following|until)\\b[^,;]*,\\s*)?"\n',
        '    r"^\\W*"\n',
        "tests/rag/verification/test_support.py::test_the_actor_after_an_opening_clause_is_checked_too",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a value may be said of a subject only another sentence names ('API keys ... 14 characters')",
        "rag/verification/support.py",
        "            and any(_literal(w, o) for w in subject for o in sentences if o not in held)\n",
        "            and False\n",
        "tests/rag/verification/test_support.py::test_a_value_is_not_given_to_a_subject_another_sentence_names",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a kind another sentence names may be given a value ('incremental backups ... 02:00')",
        "rag/verification/support.py",
        "            if pieced or named:\n",
        "            if named:\n",
        "tests/rag/verification/test_support.py::test_a_value_is_not_given_to_a_subject_another_sentence_names",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a named kind may be swapped for another word ('encryption keys' for 'API keys')",
        "rag/verification/support.py",
        "            if pieced or named:\n",
        "            if pieced:\n",
        "tests/rag/verification/test_support.py::test_a_named_kind_is_not_swapped_for_another_word",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a rewording in other words passes whatever it means",
        "rag/verification/support.py",
        "        score = similarity if similarity >= REWORDED_SIMILARITY else 0.0\n",
        "        score = similarity if similarity >= -1.0 else 0.0\n",
        "tests/rag/verification/test_rewording.py::test_a_rewording_that_adds_changes_or_flips_is_refused",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a rewording's new words need stand for nothing the passage says (a phrase added)",
        "rag/verification/support.py",
        "        and len(unmatched) <= len(_left_out(stated, _restated_clauses(words, restated[0])))\n",
        "",
        "tests/rag/verification/test_rewording.py::test_a_rewording_that_adds_changes_or_flips_is_refused",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a rewording in other words is never judged by its meaning",
        "rag/verification/citations.py",
        "        similar = self.similarity if self.embed is not None else None\n",
        "        similar = None\n",
        "tests/rag/verification/test_rewording.py::test_a_rewording_in_other_words_passes_when_it_means_the_sentence",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'which class of travel' asks for a code name",
        "rag/verification/answer_types.py",
        '_BARE_NOUN_AFTER_OF = r"(?!\\s+of\\s+(?!(?:the|a|an|this|that|these|those|its|their)\\b)[a-z])"\n',
        '_BARE_NOUN_AFTER_OF = r""\n',
        "tests/rag/verification/test_rewording.py::test_a_kind_of_something_is_no_code_name_asked_for",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: formal synonyms ('oblige' for 'require') are words the passage lacks",
        "rag/verification/support.py",
        "      oblige obliges obliged mandate mandates mandated necessitate necessitates necessitated\n",
        "",
        "tests/rag/verification/test_rewording.py::test_formal_synonyms_and_existence_words_read_as_the_passage_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'is available' is a word the passage must hold",
        "rag/verification/support.py",
        " existing available\n",
        " existing\n",
        "tests/rag/verification/test_rewording.py::test_formal_synonyms_and_existence_words_read_as_the_passage_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: British '-our' spellings are other words",
        "rag/verification/support.py",
        '    (re.compile(r"\\b([a-z]{3,})our(s|ed|ing)?\\b", re.IGNORECASE), r"\\1or\\2"),\n',
        "",
        "tests/rag/verification/test_rewording.py::test_british_spellings_and_function_words_read_as_the_passage_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'upon' is a content word",
        "rag/verification/support.py",
        '        "upon",\n',
        "",
        "tests/rag/verification/test_rewording.py::test_british_spellings_and_function_words_read_as_the_passage_words",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an intensifier ('fully') is a word the passage must hold",
        "rag/verification/support.py",
        "    fully completely entirely wholly\n",
        "",
        "tests/rag/verification/test_rewording.py::test_intensifiers_and_everyday_synonyms_say_no_more_than_the_passage",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a wrapped line going on with a name is read as a heading",
        "rag/verification/support.py",
        '_HEADING_LINES = re.compile(r"^(?:[ \\t]*(?:[^\\W\\d_][\\w\'’&/-]*[ \\t]*){1,6}\\n)+(?=[A-Z])")\n',
        '_HEADING_LINES = re.compile(r"^(?:[^\\n.!?:;]*\\n)+(?=[A-Z])")\n',
        "tests/rag/verification/test_support.py::test_a_wrapped_line_going_on_with_a_name_is_no_heading",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: an instruction's first word ('Grab a laptop') is taken for a name",
        "rag/verification/support.py",
        "            and not _IMPERATIVE.match(claim)\n",
        "",
        "tests/rag/verification/test_support.py::test_an_instruction_opens_with_a_verb_not_a_name",
        guarantee="Issue 22: verified answers on the production path",
    ),
    # issue 29, session 6
    Break(
        "int8 auto: the shipped config pins queries to fp32 (auto is not the default)",
        "configs/default.yaml",
        "  query_precision: auto  #",
        "  query_precision: fp32  #",
        "tests/rag/indexing/test_embedding_int8.py::test_auto_the_default_embeds_queries_at_int8_here",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: auto stays at fp32 where int8 passes the check",
        "rag/indexing/embedding.py",
        '                f"{self.settings.min_int8_cosine})"\n            )\n            return "int8"\n',
        '                f"{self.settings.min_int8_cosine})"\n            )\n            return "fp32"\n',
        "tests/rag/indexing/test_embedding_int8.py::test_auto_the_default_embeds_queries_at_int8_here",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: the fallback to fp32 is silent (no warning)",
        "rag/indexing/embedding.py",
        '        log.warning(\n            "queries are embedded at fp32, not int8',
        '        log.debug(\n            "queries are embedded at fp32, not int8',
        "tests/rag/indexing/test_embedding_int8.py::test_auto_falls_back_to_fp32_saying_why_once_where_explicit_int8_refuses",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: an explicit int8 falls back like auto instead of refusing",
        "rag/indexing/embedding.py",
        '        if setting == "int8":\n            self._int8 = self._load_int8(fp32)',
        '        if setting == "int8" and False:\n            self._int8 = self._load_int8(fp32)',
        "tests/rag/indexing/test_embedding_int8.py::test_auto_falls_back_to_fp32_saying_why_once_where_explicit_int8_refuses",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: what is shown as resolved is the setting",
        "rag/indexing/embedding.py",
        '            "resolved": self._query_precision,\n',
        '            "resolved": self.settings.query_precision,\n',
        "tests/rag/indexing/test_embedding_int8.py::test_auto_the_default_embeds_queries_at_int8_here",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: /readyz shows the setting, not what it resolved to",
        "api/routes_ops.py",
        "f\"; queries {queries['resolved']}: {queries['reason']})\"",
        "f\"; queries {queries['setting']}: {queries['reason']})\"",
        "tests/api/test_readiness.py::test_readyz_names_a_generator_that_cannot_answer",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "int8 auto: the answer cache's scope ignores the query precision",
        "rag/query/answer_cache.py",
        '                embedding["query_precision"] = queries\n',
        "                pass\n",
        "tests/rag/query/test_answer_cache.py::"
        "test_an_answer_cached_at_one_query_precision_is_not_served_at_another",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    Break(
        "log scrubbing: daemon threads still run the PII model while the process exits",
        "rag/guards/pii/logs.py",
        "                    if _exit_state.exiting:\n",
        "                    if False:\n",
        "tests/rag/guards/pii/test_log_scrubbing_exit.py::"
        "test_background_threads_logging_at_exit_neither_crash_the_process_nor_leak",
        guarantee="Issue 29: a process exits with its own status (break checks read it)",
    ),
    Break(
        "log scrubbing: the exit is not hooked (daemon threads scrub through the teardown)",
        "rag/guards/pii/logs.py",
        "        _hook_exit()\n        previous = logging.getLogRecordFactory()\n",
        "        previous = logging.getLogRecordFactory()\n",
        "tests/rag/guards/pii/test_log_scrubbing_exit.py::"
        "test_background_threads_logging_at_exit_neither_crash_the_process_nor_leak",
        guarantee="Issue 29: a process exits with its own status (break checks read it)",
    ),
    Break(
        "pii: a question asked again is analysed again on the openai path",
        "rag/guards/pii/outbound.py",
        "    p.note(request.question, detector.detect_cached(request.question))\n",
        "    p.note(request.question)\n",
        "tests/rag/guards/pii/test_real_world.py::test_a_question_asked_again_is_not_analysed_again",
        guarantee="Issue 29: PII policy on the openai path",
    ),
    Break(
        "int8 auto: embedding.onnx_cache_dir is ignored (each data dir exports and quantizes)",
        "rag/indexing/embedding.py",
        "        if cache_dir is None and settings.onnx_cache_dir:\n",
        "        if False:\n",
        "tests/rag/indexing/test_embedding_int8.py::"
        "test_a_shared_onnx_cache_dir_spares_a_new_data_dir_the_export",
        guarantee="Issue 29: int8 queries by default (embedding.query_precision: auto)",
    ),
    # issue 22, session 6b
    Break(
        "verify: a passage clause said again plus one word joined on passes on coverage",
        "rag/verification/support.py",
        "        and _joined_on(unmatched[0], stated)\n",
        "        and False\n",
        "tests/rag/verification/test_rewording.py::"
        "test_a_passage_sentence_said_again_with_one_word_added_is_refused",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: a word of its own never stands for a word the restated clause leaves out",
        "rag/verification/support.py",
        "    return any(_left_out(stated, _restated_clauses(words, s)) for s in restated)\n",
        "    return False\n",
        "tests/rag/verification/test_rewording.py::"
        "test_a_passage_sentence_said_again_with_a_function_word_is_kept",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: every word of its own counts as joined on ('every single change' refused)",
        "rag/verification/support.py",
        '    return re.search(rf"{_JOINS}{re.escape(word)}\\b", claim, re.IGNORECASE) is not None\n',
        "    return True\n",
        "tests/rag/verification/test_rewording.py::"
        "test_a_passage_sentence_said_again_with_a_function_word_is_kept",
        guarantee="Issue 22: verified answers on the production path",
    ),
    Break(
        "verify: 'either' read as a word of the claim's own ('in either case, ...')",
        "rag/verification/support.py",
        "    either\n",
        "",
        "tests/rag/verification/test_rewording.py::"
        "test_a_passage_sentence_said_again_with_a_function_word_is_kept",
        guarantee="Issue 22: verified answers on the production path",
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
