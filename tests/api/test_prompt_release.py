"""Prompt releases through the real API: ``answer@v4`` (a worse candidate: under it the scripted
model adds a made-up sentence to every answer) passes the golden-set gate — verification drops
the sentence, so the golden answers are the same — but its live answers are not all verified:
rolled back at the first step, marked on its Langfuse trace, counted in ``/metrics``.
``answer@v5`` (as good as the live v3) goes 5 % → 50 % → 100 %, through a restart in the middle.

Real parts: uvicorn + the app, the MiniLM embedder and a Qdrant Edge store holding the example
documents, the golden set, verification, the Langfuse SDK (to a loopback stand-in). Fakes: the
model (``evals.chat_server``, an OpenAI-compatible server answering from a script: nothing else
can be told to behave worse under one prompt version) and the Langfuse server. The window's
figures come from real requests; users are picked by the A/B hash so each lands on the side
the test means (the test computes it with the pipeline's own function, it does not set it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.auth import KeyStore
from evals.chat_server import INVENTED_CLAIM, ChatServer, by_system, faithful, invents
from evals.releases import release_prompt
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.query import releases as releases_module
from rag.query.prompts import subject_point
from tests.api.conftest import EXAMPLES, LiveServer, settings_for
from tests.langfuse_standin import LangfuseStandIn

REPO = Path(__file__).resolve().parents[2]
# Golden questions the faithful model answers from one passage under v3 (verified, not abstained)
QUESTIONS = [
    "In which region are backup copies stored?",
    "What is the recovery time objective for the customer database?",
    "How quickly must the primary on-call acknowledge a page?",
    "When do new engineers start doing on-call shifts?",
    "How soon after a SEV1 starts must the status page be updated?",
    "When is the blameless postmortem held after an incident?",
    "How many API requests per minute does the free tier get?",
    "What should a client do when the API returns 429 Too Many Requests?",
    "What is the maximum hotel cost per night that gets reimbursed?",
    "When may I fly business class?",
    "What is the minimum password length?",
    "How long are backups retained?",
]
MIN_REQUESTS = len(QUESTIONS)
# A tie at 0/12 on both sides has an upper bound of 0.184 (Wilson, 95 % one-sided): under this
# margin; a candidate whose 12 answers are all unverified against 0/12 has a lower bound of 0.74.
RELEASES = {
    "steps": [5, 50, 100],
    "min_requests": MIN_REQUESTS,
    "margin": 0.3,
    # latency on a shared CPU moves with the load; the rates decide these tests
    "latency_slack_ms": 5000,
}


def _users(low: float, high: float, n: int, tag: str) -> list[str]:
    """``n`` user ids whose A/B point (the pipeline's own hash) lies in [low, high)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        user = f"{tag}-{i}"
        if low <= subject_point(f"answer:{user}") < high:
            out.append(user)
        i += 1
    return out


def _write_prompts(folder: Path) -> Path:
    v3 = (REPO / "configs" / "prompts" / "answer" / "v3.yaml").read_text(encoding="utf-8")
    answer = folder / "answer"
    answer.mkdir(parents=True)
    (answer / "v3.yaml").write_text(v3, encoding="utf-8")
    for version, marker in (("v4", "Candidate V4."), ("v5", "Candidate V5.")):
        (answer / f"{version}.yaml").write_text(
            v3.replace("version: v3", f"version: {version}").replace(
                "You answer questions", f"{marker} You answer questions"
            ),
            encoding="utf-8",
        )
    return folder


@dataclass
class Site:
    settings: Settings
    index: Index
    keys: KeyStore
    key: str
    chat: ChatServer
    standin: LangfuseStandIn
    server: LiveServer | None = None

    def start(self) -> LiveServer:
        self.server = LiveServer(create_app(self.settings, index=self.index, keys=self.keys))
        self.server.start().wait_ready()
        return self.server

    def stop(self, shutdown_tracing: bool = True) -> None:
        if self.server is not None:
            tracing = self.server.app.state.rag.tracing
            if tracing is not None and shutdown_tracing:
                tracing.shutdown(2.0)
            self.server.stop()
            self.server = None

    def ask(self, user: str, question: str) -> dict[str, Any]:
        assert self.server is not None
        with self.server.client(self.key) as c:
            r = c.post("/v1/query", json={"question": question, "user": user})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def status(self) -> dict[str, Any]:
        return releases_module.release_store(self.settings.resolved_data_dir()).status()


@pytest.fixture()
def site(tmp_path: Path, embedder: Embedder) -> Iterator[Site]:
    chat = ChatServer(respond=by_system({"Candidate V4.": invents(faithful())}, faithful()))
    standin = LangfuseStandIn().__enter__()  # serving from here; stopped at the end
    settings = settings_for(
        tmp_path / "data",
        generation={"chain": ["openai"], "openai": {"base_url": chat.base_url, "max_retries": 0}},
        prompts={"directory": str(_write_prompts(tmp_path / "prompts")), "pin": "v3"},
        releases=RELEASES,
        evals={"verify": False},
        tracing={
            "public_key": f"pk-lf-release-{uuid.uuid4().hex[:12]}",
            "secret_key": "sk-lf-release",
            "base_url": standin.url,
            "flush_interval_seconds": 0.2,
            "export_timeout_seconds": 1.0,
        },
    )
    index = Index(settings, embedder=embedder)
    index.open()
    Ingestor(index).sync_folder(EXAMPLES)
    keys = KeyStore(index.data_dir)
    key = keys.create("default", "release test")[1]
    s = Site(settings, index, keys, key, chat, standin)
    try:
        yield s
    finally:
        s.stop()
        releases_module.release_store(index.data_dir).close()
        releases_module._stores.clear()  # a later test's store starts from its own files
        index.close()
        chat.close()
        standin.stop()


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_worse_candidate_is_rolled_back_at_the_first_step(site: Site) -> None:
    released = release_prompt(site.index, "answer@v4", [5, 50, 100])
    # The golden set cannot tell: the made-up sentence is never shown (verification drops it).
    assert released["released"] and not released["regressions"], released
    site.start()
    candidates = _users(0.0, 0.05, MIN_REQUESTS, "c")
    live = _users(0.5, 1.0, MIN_REQUESTS, "l")
    for user, question in zip(live, QUESTIONS, strict=True):
        assert site.ask(user, question)["prompt"]["version"] == "v3"
    seen: list[dict[str, Any]] = []
    for user, question in zip(candidates, QUESTIONS, strict=True):
        answer = site.ask(user, question)
        seen.append(answer)
        if site.status()["answer"]["status"] != "running":
            break
    assert all(a["prompt"]["version"] == "v4" for a in seen)
    assert all(INVENTED_CLAIM not in a["answer"] and a["withheld"] >= 1 for a in seen)
    state = site.status()["answer"]
    assert state["status"] == "rolled_back", state
    assert "unverified_rate" in state["reason"] and "worse by more than" in state["reason"]
    assert state["history"][-1]["share"] == 5, "rolled back at the first step"
    assert state["share"] == {"v3": 100}
    # everyone is back on v3, the candidate's users too
    assert site.ask(candidates[0], QUESTIONS[0])["prompt"]["version"] == "v3"
    # counted in /metrics
    with site.server.client() as c:  # type: ignore[union-attr]
        metrics = c.get("/metrics").text
    assert _metric(metrics, "rag_prompt_release_rollbacks_total", prompt="answer") == 1.0
    assert _metric(metrics, "rag_prompt_release_share", prompt="answer", version="v3") == 100.0
    assert (_metric(metrics, "rag_variant_answers_total", prompt="answer@v4") or 0) >= 1
    # marked on the Langfuse trace of the answer that decided it
    deciding = seen[-1]["trace_id"]
    assert site.standin.wait_for(
        lambda s: any(x.trace_id == deciding and x.name == "query" for x in s.spans)
    )
    root = next(x for x in site.standin.trace(deciding) if x.name == "query")
    mark = json.loads(root.attributes["langfuse.trace.metadata.release"])
    assert mark["role"] == "candidate" and mark["prompt"] == "answer@v4"
    assert mark["decision"] == "rolled_back" and "unverified_rate" in mark["rolled_back"]
    assert "release:rolled_back" in list(root.attributes["langfuse.trace.tags"])


def test_an_equal_candidate_is_promoted_step_by_step_through_a_restart(
    site: Site, rag_cli: Any
) -> None:
    released = release_prompt(site.index, "answer@v5", [5, 50, 100])
    assert released["released"], released
    site.start()
    first = _users(0.0, 0.05, MIN_REQUESTS, "c")
    second = _users(0.05, 0.5, MIN_REQUESTS, "m")  # the 50 % step's new users
    live = _users(0.5, 1.0, MIN_REQUESTS, "l")
    for user, question in zip(live, QUESTIONS, strict=True):
        assert site.ask(user, question)["prompt"]["version"] == "v3"
    assert site.ask(second[0], QUESTIONS[0])["prompt"]["version"] == "v3", "not in 5 %"
    traces = [site.ask(u, q)["trace_id"] for u, q in zip(first, QUESTIONS, strict=True)]
    state = site.status()["answer"]
    assert state["status"] == "running" and state["share"] == {"v5": 50, "v3": 50}, state
    assert state["history"][-1]["event"] == "advanced"
    # a thumbs down on a 50 % answer counts in the new window
    down = site.ask(second[1], QUESTIONS[1])
    with site.server.client(site.key) as c:  # type: ignore[union-attr]
        assert (
            c.post("/v1/feedback", json={"trace_id": down["trace_id"], "value": 0}).status_code
            == 200
        )
    assert traces  # the 5 % answers were traced too

    # Restart: a new server, and a process that reads the state from the data dir only.
    site.stop(shutdown_tracing=False)
    releases_module.release_store(site.index.data_dir).close()
    releases_module._stores.clear()
    shown = rag_cli.json("prompts", "status", "--json", data_dir=site.settings.resolved_data_dir())
    assert shown["answer"]["share"] == {"v5": 50, "v3": 50}
    assert shown["answer"]["figures"]["candidate"]["thumbs_down_rate"] == pytest.approx(1.0)
    site.start()
    assert site.ask(second[0], QUESTIONS[0])["prompt"]["version"] == "v5", "the step was kept"
    for user, question in zip(second[2:], QUESTIONS[2:], strict=True):
        site.ask(user, question)
    for user, question in zip(live, QUESTIONS, strict=True):
        site.ask(user, question)
    state = site.status()["answer"]
    if state["status"] == "running":  # the thumbs down sits in the candidate's window
        for user, question in zip(second[:2], QUESTIONS[:2], strict=True):
            site.ask(user, question)
        state = site.status()["answer"]
    assert state["status"] == "promoted", state
    assert state["share"] == {"v5": 100}
    assert [h["event"] for h in state["history"]] == ["started", "advanced", "promoted"]
    for user in (live[0], first[0], second[0]):
        assert site.ask(user, QUESTIONS[0])["prompt"]["version"] == "v5"
    out = rag_cli.run("prompts", "status", data_dir=site.settings.resolved_data_dir()).stdout
    assert re.search(r"answer@v5 100 %", out), out
    # the release's figures side by side in /metrics (the last running window is gone now)
    with site.server.client() as c:  # type: ignore[union-attr]
        metrics = c.get("/metrics").text
    assert _metric(metrics, "rag_prompt_release_share", prompt="answer", version="v5") == 100.0
    assert _metric(metrics, "rag_prompt_release_rollbacks_total", prompt="answer") == 0.0
    with site.server.client(site.key) as c:  # type: ignore[union-attr]
        over_api = c.get("/v1/prompts/releases").json()
    assert over_api["answer"]["status"] == "promoted" and over_api["answer"]["share"] == {"v5": 100}


def test_a_candidate_the_golden_set_finds_worse_is_refused_before_any_traffic(
    site: Site,
) -> None:
    site.chat.respond = by_system(
        {"Candidate V5.": lambda r: "The documents don't contain an answer to this."},
        faithful(),
    )
    refused = release_prompt(site.index, "answer@v5", [5, 50, 100])
    assert refused["released"] is False
    assert "answers.answer_contains_gold" in {r["metric"] for r in refused["regressions"]}
    assert "evals.regression_threshold" in refused["reason"]
    assert site.status() == {}, "nothing recorded: no traffic goes to it"
    report = json.loads(Path(refused["gate"]["report"]).with_name("report.json").read_text())
    assert set(report["variants"]) == {"prompt:answer@v3", "prompt:answer@v5"}
