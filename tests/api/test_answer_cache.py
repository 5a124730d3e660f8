"""The answer cache and cost accounting over real HTTP: ``cached`` answers (JSON and SSE),
tenants kept apart, an upload that replaces the cited document answered afresh, and the
counters an operator reads from ``/metrics``."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.api.conftest import Deployment, LiveServer, sse_events, wait_for

VACATION = "How many vacation days do staff get?"


@pytest.fixture(scope="module")
def server(start_server: Any) -> LiveServer:
    return start_server(cache={"enabled": True})  # type: ignore[no-any-return]


def ask(c: httpx.Client, question: str, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/query", json={"question": question, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_cached_answers_are_flagged_and_kept_per_tenant(
    deployment: Deployment, server: LiveServer
) -> None:
    with (
        server.client(deployment.keys["acme"]) as acme,
        server.client(deployment.keys["globex"]) as globex,
    ):
        first = ask(acme, VACATION)
        assert "thirty" in first["answer"] and first["cached"] is False
        again = ask(acme, VACATION)
        assert again["cached"] is True and again["answer"] == first["answer"]
        assert "retrieve" not in again["timings_ms"]
        # The same question from another tenant is never answered with acme's entry.
        theirs = ask(globex, VACATION)
        assert theirs["cached"] is False and "twelve" in theirs["answer"]
        assert "thirty" not in theirs["answer"]
        assert ask(globex, VACATION)["cached"] is True
        # A hit streams: the cached text as tokens, then citations, then done.
        with acme.stream("POST", "/v1/query", json={"question": VACATION, "stream": True}) as r:
            assert r.status_code == 200
            events = [(e, json.loads(d)) for e, d in sse_events(r.iter_lines())]
        kinds = [e for e, _ in events]
        assert kinds[-2:] == ["citations", "done"]
        done = events[-1][1]
        assert done["cached"] is True
        assert "".join(d["text"] for e, d in events if e == "token") == done["answer"]
        metrics = acme.get("/metrics").text
    assert metric(metrics, "rag_cache_hits_total") >= 3
    assert metric(metrics, "rag_cache_misses_total") >= 2
    assert re.search(r"^rag_cache_entries \d", metrics, re.M)
    assert metric(metrics, "rag_answers_total", generator="extractive", outcome="cached") >= 3


def test_replacing_the_cited_upload_gives_a_fresh_answer(
    deployment: Deployment, server: LiveServer
) -> None:
    tenant_key = deployment.store.create("cachetenant", "cache test")[1]
    question = "What colour are the Initech parking permits?"
    with server.client(tenant_key) as c:

        def upload(colour: str) -> None:
            body = f"# Parking\n\nInitech parking permits are {colour} and hang from the mirror.\n"
            r = c.post("/v1/documents", files={"file": ("parking.md", body.encode())})
            assert r.status_code == 202, r.text

        def answered(colour: str) -> dict[str, Any]:
            def probe() -> dict[str, Any] | None:
                a = ask(c, question)
                return a if colour in a["answer"] else None

            return wait_for(probe, f"an answer saying {colour}")  # type: ignore[no-any-return]

        upload("orange")
        answered("orange")
        assert ask(c, question)["cached"] is True
        upload("purple")
        fresh = answered("purple")
        assert "orange" not in fresh["answer"]
        r = c.delete("/v1/documents/cachetenant/parking.md")
        assert r.status_code in (200, 202, 204), r.text
        gone = wait_for(
            lambda: (a := ask(c, question)) and "purple" not in a["answer"] and a,
            "the deleted document no longer answers",
        )
        assert gone["cached"] is False


def test_usage_and_tokens_reach_the_metrics(deployment: Deployment, start_server: Any) -> None:
    from tests.rag.chat_server import ChatServer

    chat = ChatServer(reply="Bananas are an excellent source of potassium and vitamins [1].")
    try:
        priced = start_server(
            generation={
                "chain": ["openai", "extractive"],
                "openai": {"base_url": chat.base_url, "max_retries": 0},
            },
            costs={"prices": {"openai": {"input_per_million": 1.0, "output_per_million": 2.0}}},
            cache={"enabled": True},
        )
        with priced.client(deployment.keys["acme"]) as c:
            answer = ask(c, VACATION)
            again = ask(c, VACATION)
            metrics = c.get("/metrics").text
    finally:
        chat.close()
    usage = answer["usage"]
    assert answer["generator"] == "extractive", "verification refused the server's answer"
    assert [b["outcome"] for b in usage["backends"]] == ["refused", "answered"]
    assert usage["prompt_tokens"] > 0 and usage["cost"] > 0
    labels = {"backend": "openai", "model": "smollm2-135m-instruct", "tenant": "acme"}
    assert metric(metrics, "rag_llm_tokens_total", **labels) == (
        usage["prompt_tokens"] + usage["completion_tokens"]
    )
    assert metric(metrics, "rag_llm_cost_total", **labels) == pytest.approx(usage["cost"])
    assert metric(metrics, "rag_cost_today", tenant="acme") >= usage["cost"]
    # The repeat came from the cache: nothing spent, and what it saved is counted.
    assert again["cached"] is True and again["usage"]["cost"] == 0
    assert metric(metrics, "rag_cache_saved_cost_total") == pytest.approx(usage["cost"])
    assert metric(metrics, "rag_cache_saved_tokens_total") == (
        usage["prompt_tokens"] + usage["completion_tokens"]
    )


def test_a_cached_answer_does_not_wait_for_a_busy_backend(
    deployment: Deployment, start_server: Any
) -> None:
    import threading
    import time

    from tests.rag.chat_server import ChatServer, Fault

    chat = ChatServer(reply="Bananas are an excellent source of potassium and vitamins [1].")
    try:
        server = start_server(
            generation={
                "chain": ["openai", "extractive"],
                "openai": {"base_url": chat.base_url, "max_retries": 0},
            },
            api={"concurrency": {"openai": 1}},
            cache={"enabled": True},
        )
        with server.client(deployment.keys["globex"]) as c:
            assert not ask(c, VACATION)["cached"]
            chat.faults.append(Fault(stall_seconds=4.0))  # the next model call holds the slot
            slow = threading.Thread(target=ask, args=(c, "Who approves vacation at Globex?"))
            slow.start()
            wait_for(lambda: len(chat.requests) >= 2, "the slow call reached the model")
            started = time.monotonic()
            hit = ask(c, VACATION)
            waited = time.monotonic() - started
            slow.join()
    finally:
        chat.close()
    assert hit["cached"] is True and "twelve" in hit["answer"]
    assert waited < 2.0, f"the cache hit waited {waited:.1f}s behind the busy backend"
