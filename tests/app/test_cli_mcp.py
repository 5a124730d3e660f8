"""``rag mcp``: the MCP server over stdio, started the way a desktop client starts it — the
``mcpServers`` entry ``rag mcp --print-config`` prints, spawned by the official SDK's stdio
client (``mcp.Client`` over ``StdioServerParameters``) with the SDK's minimal environment —
over a data dir holding ``examples/docs``. The global ``--config`` and ``--data-dir`` reach the
server (a config's ``retrieval.top_k`` is the search tool's limit). The HTTP transport and
tenant isolation are tested in ``tests/api/test_mcp.py``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent, TextResourceContents

from rag.core.config import DEFAULT_CONFIG, load_settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from tests.conftest import TEST_TORCH_THREADS, RagCli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "docs"
EXAMPLE_SOURCES = {
    p.relative_to(EXAMPLES).as_posix()
    for p in EXAMPLES.rglob("*")
    if p.is_file() and not p.name.startswith(".")
}


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def harness_env() -> dict[str, str]:
    """What this test run adds to the SDK's minimal environment: where this checkout's code is
    (a worktree on PYTHONPATH), no model downloads, one torch thread. The printed entry itself
    needs none of it."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAG_EMBEDDING__THREADS": TEST_TORCH_THREADS,
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def test_rag_mcp_serves_the_tools_over_stdio_as_a_desktop_client_starts_it(
    tmp_path: Path, embedder: Embedder, rag_cli: RagCli
) -> None:
    data_dir = tmp_path / "data"
    index = Index(load_settings(DEFAULT_CONFIG, {"data_dir": str(data_dir)}), embedder=embedder)
    index.open()
    try:
        Ingestor(index).sync_folder(EXAMPLES)
    finally:
        index.close()
    config = tmp_path / "kb.yaml"
    config.write_text("retrieval:\n  top_k: 3\n", encoding="utf-8")

    printed = rag_cli.json(
        "--config", str(config), "--data-dir", str(data_dir), "mcp", "--print-config",
        data_dir=data_dir,
    )  # fmt: skip
    entry = printed["mcpServers"]["knowledge-base"]
    assert entry["command"] == str(rag_cli.bin)
    assert entry["args"] == ["--config", str(config), "--data-dir", str(data_dir), "mcp"]

    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def session() -> dict[str, Any]:
        server = StdioServerParameters(
            command=entry["command"], args=entry["args"], env=harness_env()
        )
        async with Client(server, read_timeout_seconds=300) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            out: dict[str, Any] = {"tools": tools}
            out["search"] = ok(
                await client.call_tool("search", {"query": "How long are backups retained?"})
            )
            out["ask"] = ok(
                await client.call_tool(
                    "ask",
                    {"question": "How long are backups retained?"},
                    progress_callback=on_progress,
                )
            )
            out["abstain"] = ok(
                await client.call_tool(
                    "ask", {"question": "What colour is the chief executive's sailing boat?"}
                )
            )
            out["listed"] = ok(await client.call_tool("list_documents", {}))
            out["source"] = ok(
                await client.call_tool("get_source", {"path": "policies/backup-policy.md"})
            )
            out["bad"] = await client.call_tool("search", {"query": "backups", "top_k": 4})
            uri = next(d["uri"] for d in out["listed"]["documents"] if d["path"] == "onboarding.md")
            out["resource"] = await client.read_resource(uri)
            return out

    seen = anyio.run(session)
    tools = seen["tools"]
    assert set(tools) == {"search", "ask", "list_documents", "get_source"}
    # --config reached the server: its retrieval.top_k is the search tool's limit.
    assert tools["search"].input_schema["properties"]["top_k"]["anyOf"][0]["maximum"] == 3
    passages = seen["search"]["passages"]
    assert 0 < len(passages) <= 3 and passages[0]["source"] == "policies/backup-policy.md"
    answer = seen["ask"]
    assert not answer["abstained"] and "35 days" in answer["answer"], answer
    assert answer["citations"] and answer["citations"][0]["verified"]
    assert progress[0] == "searching the documents" and "".join(progress[1:]) == answer["answer"]
    assert seen["abstain"]["abstained"] is True, seen["abstain"]
    assert {d["path"] for d in seen["listed"]["documents"]} == EXAMPLE_SOURCES
    assert "35 days" in seen["source"]["text"]
    assert seen["bad"].is_error and "top_k" in text_of(seen["bad"])
    (contents,) = seen["resource"].contents
    assert isinstance(contents, TextResourceContents)
    assert "Engineering Onboarding Guide" in contents.text


def test_the_readme_snippet_is_the_printed_entry(tmp_path: Path, rag_cli: RagCli) -> None:
    """The README's desktop-client snippet has the shape ``rag mcp --print-config`` prints
    (which the test above starts the server with), so it works as printed once its paths are
    the reader's."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### MCP", 1)[1].split("\n## ", 1)[0]
    snippet = json.loads(re.search(r"```json\n(.*?)\n```", section, re.DOTALL)[1])  # type: ignore[index]
    data_dir = tmp_path / "data"
    printed = rag_cli.json("--data-dir", str(data_dir), "mcp", "--print-config", data_dir=data_dir)
    ours, theirs = snippet["mcpServers"], printed["mcpServers"]
    assert list(ours) == list(theirs) == ["knowledge-base"]
    assert ours["knowledge-base"].keys() == theirs["knowledge-base"].keys() == {"command", "args"}
    assert Path(ours["knowledge-base"]["command"]).name == "rag"
    assert ours["knowledge-base"]["args"][0] == "--data-dir"
    assert ours["knowledge-base"]["args"][2:] == theirs["knowledge-base"]["args"][2:] == ["mcp"]
