"""The MCP server over streamable HTTP (``/mcp`` on the API), driven by the official SDK's own
client (``mcp.Client`` over ``streamable_http_client``) against the session's live server: the
tools and their schemas, each tool, progress while ``ask`` answers, auth refused, tenants kept
apart, bad arguments answered as tool errors, and the API's answer cache, rate limit and Langfuse
tracing applying to MCP calls too. stdio (``rag mcp``) is tested in ``tests/app/test_cli_mcp.py``."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent, TextResourceContents

from tests.api.conftest import EXAMPLE_SOURCES, SHARED_PARAGRAPH, Deployment, LiveServer
from tests.langfuse_standin import LangfuseStandIn

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]

TOOLS = {"search", "ask", "list_documents", "get_source"}
BACKUPS = "How long are backups retained?"
# Nothing in any tenant's documents says this.
UNANSWERABLE = "What colour is the chief executive's sailing boat?"


@asynccontextmanager
async def connected(url: str, key: str | None) -> AsyncIterator[Client]:
    """The SDK's client on ``url``'s /mcp, sending ``key`` as the API expects it."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx2.Timeout(60.0, read=180.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport) as client:
            yield client


def session(url: str, key: str | None, body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with connected(url, key) as client:
            return await body(client)

    return anyio.run(main)


def as_tenant(deployment: Deployment, tenant: str, body: Callable[[Client], Awaitable[T]]) -> T:
    return session(deployment.server.url, deployment.keys[tenant], body)


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    # What a model reads is the same object, as JSON text.
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def test_the_tools_are_listed_with_schemas_a_model_can_follow(deployment: Deployment) -> None:
    listed = as_tenant(deployment, "default", lambda c: c.list_tools())
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        schema = tool.input_schema
        # Unknown argument names are refused, and every argument says what it is for.
        assert schema.get("additionalProperties") is False, tool.name
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), (tool.name, name)
        assert tool.output_schema is not None, tool.name
        assert tool.annotations is not None and tool.annotations.read_only_hint, tool.name
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["ask"].input_schema["required"] == ["question"]
    # The deployment's limits are in the schema: top_k up to retrieval.top_k.
    top_k = tools["search"].input_schema["properties"]["top_k"]["anyOf"][0]
    assert top_k["maximum"] == deployment.settings.retrieval.top_k
    # Filters are the /v1/query ones, with their documented keys (never the tenant).
    filters = json.dumps(tools["ask"].input_schema)
    assert '"source"' in filters and '"section"' in filters and '"tenant"' not in filters


def test_search_returns_passages_with_source_section_page_and_score(
    deployment: Deployment,
) -> None:
    async def body(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
        every = await client.call_tool("search", {"query": BACKUPS})
        one = await client.call_tool(
            "search",
            {"query": BACKUPS, "top_k": 1, "filters": {"source": "policies/backup-policy.md"}},
        )
        return structured(every), structured(one)

    every, one = as_tenant(deployment, "default", body)
    passages = every["passages"]
    assert passages and passages[0]["source"] == "policies/backup-policy.md", passages
    first = passages[0]
    assert "35 days" in first["text"]
    assert first["section"] and first["section"][0] == "Backup and Restore Policy"
    assert "page" in first and first["score"] > 0 and first["id"].startswith(first["source"] + "#")
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert len(one["passages"]) == 1 and one["passages"][0]["source"] == "policies/backup-policy.md"


def test_ask_answers_with_verified_citations_and_streams_its_sentences(
    deployment: Deployment,
) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async def body(client: Client) -> dict[str, Any]:
        result = await client.call_tool("ask", {"question": BACKUPS}, progress_callback=on_progress)
        return structured(result)

    answer = as_tenant(deployment, "default", body)
    assert answer["abstained"] is False and "35 days" in answer["answer"], answer
    cited = answer["citations"]
    assert cited and all(c["verified"] for c in cited), cited
    assert cited[0]["source"] == "policies/backup-policy.md" and cited[0]["quote"]
    # Progress: the search first, then each verified sentence as it was released; together
    # they are the answer (no sentence is sent that the answer does not hold).
    assert progress[0] == (0, "searching the documents"), progress
    sentences = [message or "" for value, message in progress[1:]]
    assert sentences and "".join(sentences) == answer["answer"], (sentences, answer["answer"])
    assert [value for value, _ in progress] == sorted(value for value, _ in progress)


def test_ask_abstains_on_a_question_the_documents_do_not_answer(deployment: Deployment) -> None:
    async def body(client: Client) -> dict[str, Any]:
        return structured(await client.call_tool("ask", {"question": UNANSWERABLE}))

    answer = as_tenant(deployment, "default", body)
    assert answer["abstained"] is True, answer
    assert not any(c["verified"] for c in answer["citations"])


def test_ask_answers_a_follow_up_with_the_conversation_as_history(deployment: Deployment) -> None:
    """Issue 30: MCP's ask takes the conversation as /v1/query does; "And the business tier?"
    is answered as the standalone question it stands for, which the result names."""
    history = [
        {"role": "user", "content": "What is the free tier rate limit of the public API?"},
        {"role": "assistant", "content": "The free tier allows 60 requests per minute [1]."},
    ]

    async def body(client: Client) -> dict[str, Any]:
        args = {"question": "And the business tier?", "history": history}
        return structured(await client.call_tool("ask", args))

    answer = as_tenant(deployment, "default", body)
    assert (
        answer["standalone_question"] == "What is the business tier rate limit of the public API?"
    )
    assert not answer["abstained"] and "1,200 requests per minute" in answer["answer"], answer
    assert answer["citations"] and all(c["verified"] for c in answer["citations"])


def test_documents_are_listed_and_read_by_path_passage_and_resource(
    deployment: Deployment,
) -> None:
    async def body(client: Client) -> tuple[Any, ...]:
        listed = structured(await client.call_tool("list_documents", {}))
        hit = structured(await client.call_tool("search", {"query": BACKUPS, "top_k": 1}))
        passage = hit["passages"][0]
        by_id = structured(await client.call_tool("get_source", {"passage": passage["id"]}))
        doc = structured(
            await client.call_tool("get_source", {"path": "policies/backup-policy.md"})
        )
        page = structured(
            await client.call_tool(
                "get_source", {"path": "policies/backup-policy.md", "offset": 10, "max_chars": 40}
            )
        )
        uri = next(d["uri"] for d in listed["documents"] if d["path"] == "onboarding.md")
        resource = await client.read_resource(uri)
        return listed, passage, by_id, doc, page, resource

    listed, passage, by_id, doc, page, resource = as_tenant(deployment, "default", body)
    assert {d["path"] for d in listed["documents"]} == EXAMPLE_SOURCES
    assert listed["total"] == len(EXAMPLE_SOURCES)
    assert all(d["status"] == "ok" and d["chunks"] > 0 for d in listed["documents"]), listed
    assert passage["text"] in by_id["text"] and by_id["path"] == "policies/backup-policy.md"
    assert doc["title"] == "Backup and Restore Policy"
    assert "35 days" in doc["text"] and "restore test" in doc["text"].lower()
    assert doc["next_offset"] is None and doc["total_chars"] == len(doc["text"])
    assert page["text"] == doc["text"][10:50] and page["next_offset"] == 50
    (contents,) = resource.contents
    assert isinstance(contents, TextResourceContents)
    assert "Engineering Onboarding Guide" in contents.text


def test_bad_arguments_are_tool_errors_and_the_server_keeps_answering(
    deployment: Deployment,
) -> None:
    limit = deployment.settings.api.max_question_chars
    bad = [
        ("search", {}, "query"),
        ("search", {"query": "backups", "top_k": 0}, "top_k"),
        ("search", {"query": "backups", "querry": "typo"}, "querry"),
        ("search", {"query": "backups", "filters": {"tenant": "acme"}}, "tenant"),
        ("ask", {"question": ""}, "question"),
        ("ask", {"question": "\u200b\u200b"}, "empty"),
        ("ask", {"question": "x" * (limit + 1)}, f"at most {limit} characters"),
        ("get_source", {}, "exactly one"),
        ("get_source", {"path": "onboarding.md", "passage": "onboarding.md#0-5"}, "exactly one"),
        ("get_source", {"passage": "no id here"}, "not a passage id"),
        ("get_source", {"path": "../../etc/passwd"}, "no document"),
        ("get_source", {"path": "onboarding.md", "max_chars": "many"}, "max_chars"),
        ("no_such_tool", {}, "no_such_tool"),
    ]

    async def body(client: Client) -> tuple[list[CallToolResult], int]:
        results = [await client.call_tool(name, args) for name, args, _ in bad]
        still = len((await client.list_tools()).tools)
        return results, still

    results, still = as_tenant(deployment, "default", body)
    for (name, args, expected), result in zip(bad, results, strict=True):
        message = text_of(result)
        assert result.is_error, (name, args, message)
        assert expected in message, (name, args, message)
        assert "Traceback" not in message and "xxxxx" not in message  # no echo of the input
    assert still == len(TOOLS)


def test_no_key_or_a_wrong_key_is_refused(deployment: Deployment) -> None:
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    wrong = "rk_000000000000_" + "x" * 43
    with httpx.Client(base_url=deployment.server.url, timeout=30) as http:
        none = http.post("/mcp", json=listing, headers=headers)
        bad = http.post(
            "/mcp", json=listing, headers={**headers, "Authorization": f"Bearer {wrong}"}
        )
    for r in (none, bad):
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "unauthorized"
    # The SDK's client gets no further than its first request either (it reports the HTTP
    # error as an MCPError, inside anyio's task-group wrappers).
    for key in (None, wrong):
        with pytest.raises(BaseExceptionGroup) as refused:
            session(deployment.server.url, key, lambda c: c.list_tools())
        assert refused.group_contains(MCPError), refused.value


def test_another_tenants_documents_are_invisible(deployment: Deployment) -> None:
    async def body(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {
            "listed": structured(await client.call_tool("list_documents", {})),
            "search": structured(
                await client.call_tool("search", {"query": "volcano lair elevator clearance"})
            ),
            "ask": structured(
                await client.call_tool("ask", {"question": "Who approves vacation days?"})
            ),
            "shared": structured(
                await client.call_tool("search", {"query": SHARED_PARAGRAPH, "top_k": 1})
            ),
        }
        for args in (
            {"path": "globex/volcano.md"},
            {"passage": "globex/volcano.md#0-80"},
            {"path": "onboarding.md"},
        ):
            out[json.dumps(args)] = await client.call_tool("get_source", args)
        try:
            await client.read_resource("rag://documents/globex/volcano.md")
            out["resource"] = "read"
        except Exception as exc:  # noqa: BLE001 - the refusal itself is what is checked
            out["resource"] = repr(exc)
        return out

    seen = as_tenant(deployment, "acme", body)
    assert {d["path"] for d in seen["listed"]["documents"]} == {
        "acme/handbook.md",
        "acme/security/badges.txt",
    }
    assert all(p["source"].startswith("acme/") for p in seen["search"]["passages"]), seen["search"]
    assert "level four" not in json.dumps(seen["search"])
    assert seen["ask"]["citations"], seen["ask"]
    assert all(c["source"].startswith("acme/") for c in seen["ask"]["citations"])
    assert "thirty" in seen["ask"]["answer"] and "Scorpio" not in seen["ask"]["answer"]
    assert seen["shared"]["passages"][0]["source"] == "acme/handbook.md"
    for args in ('{"path": "globex/volcano.md"}', '{"passage": "globex/volcano.md#0-80"}'):
        refused = seen[args]
        assert refused.is_error and "no document" in text_of(refused), text_of(refused)
        assert "level four" not in text_of(refused)
    assert seen['{"path": "onboarding.md"}'].is_error  # the default tenant's document
    assert "no document" in seen["resource"], seen["resource"]


def test_mcp_calls_share_the_answer_cache(deployment: Deployment, start_server: Any) -> None:
    server: LiveServer = start_server(cache={"enabled": True})

    async def body(client: Client) -> list[dict[str, Any]]:
        question = {"question": "How many vacation days do Globex employees get?"}
        return [structured(await client.call_tool("ask", question)) for _ in range(2)]

    first, again = session(server.url, deployment.keys["globex"], body)
    assert "twelve" in first["answer"] and first["cached"] is False
    assert again["cached"] is True and again["answer"] == first["answer"]


def test_every_mcp_request_counts_against_the_keys_rate_limit(
    deployment: Deployment, start_server: Any
) -> None:
    server: LiveServer = start_server(api={"requests_per_minute": 1, "burst": 2})
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {deployment.keys['acme']}",
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        codes = [http.post("/mcp", json=listing, headers=headers).status_code for _ in range(3)]
        limited = http.post("/mcp", json=listing, headers=headers)
    assert codes[:2] == [200, 200] and codes[2] == 429, codes
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert limited.json()["error"]["type"] == "rate_limited"


def test_the_readme_agent_example_runs_as_printed(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's streamable-HTTP example, run with this server's address and a key."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### MCP", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)\n```", section, re.DOTALL)
    assert match is not None, "no Python example in the README's MCP section"
    code = match[1].replace("http://127.0.0.1:8000", deployment.server.url)
    code = code.replace("<rag keys local>", deployment.keys["default"])
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "35 days" in printed and printed.rstrip().endswith("False"), printed


def test_a_get_stream_is_refused_not_held_open(deployment: Deployment) -> None:
    """Stateless, /mcp never sends anything on a GET stream: the SDK would hold one open for
    good (found by the hostile fuzz, whose request never returned); it is refused at once."""
    headers = {
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {deployment.keys['default']}",
    }
    with httpx.Client(base_url=deployment.server.url, timeout=10) as http:
        for method in ("GET", "PUT", "DELETE"):
            r = http.request(method, "/mcp", headers=headers)
            assert r.status_code == 405 and r.headers["allow"] == "POST", (method, r.text)
            assert "every message is a POST" in r.json()["error"]["message"]


def test_an_mcp_answer_is_traced_like_any_request(
    deployment: Deployment, start_server: Any
) -> None:
    """Langfuse tracing (the real SDK, the loopback stand-in): an ``ask`` is one trace, under
    the ``trace_id`` the tool returns, with the question's PII scrubbed as on /v1/query."""
    pii = "jane.roe@gmail.com"
    with LangfuseStandIn() as standin:
        server: LiveServer = start_server(
            tracing={
                "public_key": f"pk-lf-mcp-{uuid.uuid4().hex[:12]}",
                "secret_key": "sk-lf-mcp",
                "base_url": standin.url,
                "flush_interval_seconds": 0.2,
                "export_timeout_seconds": 1.0,
            }
        )

        async def body(client: Client) -> dict[str, Any]:
            question = {"question": f"How long are backups retained? {pii}"}
            return structured(await client.call_tool("ask", question))

        try:
            answer = session(server.url, deployment.keys["default"], body)
            trace_id = answer["trace_id"]
            assert trace_id and "35 days" in answer["answer"], answer
            assert standin.wait_for(
                lambda s: any(x.name == "query" for x in s.spans if x.trace_id == trace_id)
            ), f"no trace {trace_id}"
            time.sleep(0.3)
            names = [s.name for s in standin.trace(trace_id)]
            assert "retrieve" in names and "generate" in names, names
            assert pii not in standin.everything()
        finally:
            server.app.state.rag.tracing.shutdown(1.0)
            server.stop()
