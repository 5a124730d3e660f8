"""Accounting and budgets through the real query path: an OpenAI-compatible server (the
``chat_server`` stand-in) first, the real extractive backend after it, a real index."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import DEFAULT_CONFIG, CostSettings, Settings, load_settings
from rag.core.types import BackendUsage, DoneEvent, Query, Usage
from rag.generate.chain import ChainOutcome
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.query.costs import LEDGER_FILE, CostController, utc_day
from rag.query.pipeline import QueryPipeline
from tests.rag.chat_server import ChatServer, Fault
from tests.rag.conftest import DOCS

EIFFEL = "When was the Eiffel Tower built?"
GOOD = "The Eiffel Tower was built between 1887 and 1889 [1]."
# Nothing in the documents says it: verification refuses it, extractive answers next.
UNSUPPORTED = "Bananas are an excellent source of potassium and vitamins [1]."
PRICE = {"openai": {"input_per_million": 1000.0, "output_per_million": 2000.0}}


@pytest.fixture()
def index(tmp_path: Path, embedder: Embedder) -> Iterator[Index]:
    folder = tmp_path / "docs"
    for rel, text in DOCS.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    settings = load_settings(DEFAULT_CONFIG, {"data_dir": str(tmp_path / "data")})
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    assert Ingestor(index).sync_folder(folder).failed == 0
    yield index
    index.close()


def settings_for(index: Index, server: ChatServer, **costs: Any) -> Settings:
    return load_settings(
        DEFAULT_CONFIG,
        {
            "data_dir": str(index.data_dir),
            "cache": {"enabled": False},  # every question reaches the backends here
            "generation": {
                "chain": ["openai", "extractive"],
                "openai": {"base_url": server.base_url, "max_retries": 0},
            },
            "costs": {"prices": PRICE, **costs},
        },
    )


def cost(prompt: int, completion: int) -> float:
    return (prompt * 1000.0 + completion * 2000.0) / 1_000_000


def test_usage_sums_the_attempt_verification_refused(index: Index, chat_server: ChatServer) -> None:
    chat_server.reply = UNSUPPORTED
    p = QueryPipeline(index, settings_for(index, chat_server))
    answer = p.run(EIFFEL)
    assert answer.generator == "extractive" and not answer.degraded
    assert answer.fallbacks[0].generator == "openai"
    refused, answered = answer.usage.backends
    assert (refused.backend, refused.outcome, answered.backend, answered.outcome) == (
        "openai",
        "refused",
        "extractive",
        "answered",
    )
    # What the server billed for the refused call counts, though another backend answered.
    sent = chat_server.requests[-1]
    prompt_tokens = sum(len(m["content"].split()) for m in sent["messages"])
    assert refused.prompt_tokens == prompt_tokens > 0
    assert refused.completion_tokens == len(UNSUPPORTED.split())
    assert refused.model == "smollm2-135m-instruct" and not refused.estimated
    assert answer.usage.prompt_tokens == prompt_tokens
    assert answer.usage.completion_tokens == len(UNSUPPORTED.split())
    assert refused.cost == pytest.approx(cost(prompt_tokens, len(UNSUPPORTED.split())))
    assert answered.cost == 0.0, "in-process backends cost nothing unless priced"
    assert answer.usage.cost == pytest.approx(refused.cost) and answer.usage.cost > 0
    assert answer.as_json()["usage"]["cost"] == pytest.approx(refused.cost)


def test_a_call_that_broke_off_is_counted(index: Index, chat_server: ChatServer) -> None:
    chat_server.reply = GOOD + " The tower is in Paris [1]."
    chat_server.faults.append(Fault(drop_after_tokens=12))
    p = QueryPipeline(index, settings_for(index, chat_server))
    done = list(p.stream(EIFFEL))[-1]
    assert isinstance(done, DoneEvent)
    answer = done.answer
    assert answer.degraded and answer.generator == "extractive"
    failed = answer.usage.backends[0]
    assert failed.outcome == "failed" and failed.estimated
    assert failed.completion_tokens > 0 and failed.prompt_tokens > 0 and failed.cost > 0
    assert answer.usage.completion_tokens == failed.completion_tokens


def test_the_budget_degrades_instead_of_failing(
    index: Index, chat_server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    chat_server.reply = GOOD
    p = QueryPipeline(index, settings_for(index, chat_server, daily_budget=0.05))
    with caplog.at_level(logging.WARNING, logger="rag.query.costs"):
        first = p.run(EIFFEL)
    assert first.generator == "openai" and first.usage.cost > 0.05, "one call spends it all"
    warnings = [r.getMessage() for r in caplog.records if r.name == "rag.query.costs"]
    assert len(warnings) == 2 and all("of its daily budget" in w for w in warnings)
    assert "priced backends are skipped until UTC midnight" in warnings[1]
    mine = p.stage("generate").costs  # type: ignore[attr-defined]
    assert mine.report()["warnings"] == {("default", "0.8"): 1, ("default", "1"): 1}
    calls = len(chat_server.requests)
    second = p.run(Query("How tall is the Eiffel Tower?"))
    assert len(chat_server.requests) == calls, "the priced backend was not asked"
    assert second.generator == "extractive" and second.degraded and not second.abstained
    assert second.fallbacks[0].generator == "openai"
    assert second.fallbacks[0].error.startswith("budget")
    assert second.usage.backends[0].outcome == "skipped" and second.usage.cost == 0
    # Another tenant has its own budget; an override lifts it for one tenant.
    other = QueryPipeline(
        index,
        settings_for(
            index, chat_server, daily_budget=0.05, tenants={"rich": {"daily_budget": 100.0}}
        ),
    )
    costs = other.stage("generate").costs  # type: ignore[attr-defined]
    assert costs.budget("rich") == 100.0 and costs.budget("default") == 0.05
    assert costs.spent("default") == pytest.approx(first.usage.cost)
    assert costs.spent("rich") == 0.0
    assert costs.report()["warnings"] == {}, "warned once a day, across restarts"


def test_every_backend_priced_still_answers(index: Index, chat_server: ChatServer) -> None:
    settings = settings_for(index, chat_server, daily_budget=0.0)
    settings.generation.chain = ["openai"]
    p = QueryPipeline(index, settings)
    answer = p.run(EIFFEL)
    assert not chat_server.requests
    assert answer.generator == "extractive" and answer.degraded and "1889" in answer.answer
    assert answer.fallbacks[0].error.startswith("budget")


def test_spend_survives_restarts_and_resets_at_utc_midnight(tmp_path: Path) -> None:
    now = [20_834 * 86_400.0 - 60]  # one minute before a UTC midnight
    assert utc_day(now[0]) != utc_day(now[0] + 120)
    settings = CostSettings(prices=PRICE, daily_budget=1.0)  # type: ignore[arg-type]
    costs = CostController(settings, tmp_path, clock=lambda: now[0])

    outcome = ChainOutcome(
        "text",
        "openai",
        False,
        Usage(),
        attempts=[BackendUsage(backend="openai", prompt_tokens=500, completion_tokens=300)],
    )
    assert costs.charge(outcome, "acme").cost == pytest.approx(1.1)
    assert costs.spent("acme") == pytest.approx(1.1)
    assert stat.S_IMODE((tmp_path / LEDGER_FILE).stat().st_mode) == 0o600
    costs.close()
    restarted = CostController(settings, tmp_path, clock=lambda: now[0])
    assert restarted.spent("acme") == pytest.approx(1.1)

    class Openai:
        name = "openai"

    assert restarted.skip_reason("acme", Openai()) is not None  # type: ignore[arg-type]
    assert restarted.skip_reason("globex", Openai()) is None  # type: ignore[arg-type]
    now[0] += 120  # past midnight UTC
    assert restarted.spent("acme") == 0.0
    assert restarted.skip_reason("acme", Openai()) is None  # type: ignore[arg-type]
    report = restarted.report()
    assert report["tenants"] == {} and report["day"] == utc_day(now[0])


def test_a_client_that_goes_away_is_still_charged(index: Index, chat_server: ChatServer) -> None:
    chat_server.reply = GOOD + " It is in Paris and it is 330 metres tall [1]. " * 3
    chat_server.token_delay = 0.01
    p = QueryPipeline(index, settings_for(index, chat_server))
    events = p.stream(EIFFEL)
    for event in events:
        if event.kind == "token":
            break  # the first sentence arrived; the client hangs up mid-answer
    events.close()  # type: ignore[attr-defined]
    costs = p.stage("generate").costs  # type: ignore[attr-defined]
    spent = costs.spent("default")
    assert spent > 0, "the tokens the server produced before the hang-up count"
    totals = costs.ledger.day_totals(costs.day())["default"]
    assert totals["calls"] == 1 and totals["completion_tokens"] >= len(GOOD.split())
