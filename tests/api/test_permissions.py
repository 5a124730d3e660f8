"""Document permissions through the real API: a user outside ``hr`` never gets an HR fact.

A deployment of its own (real MiniLM embedder, real Qdrant Edge store, the extractive
generator, a ``WatchDaemon`` on the watched folder and the tenants folder, as `rag serve`):

- ``hr/salaries.md`` (``access.rules``: ``hr/`` is ``hr``) holds the HR fact: staff engineers'
  salary band, 187,000 zorkmids;
- ``hr/handbook.md`` is everyone's (a later rule gives it ``all``): its review month is the
  public half of a mixed answer;
- ``legal/`` carries a sidecar ``.access.yaml`` (``groups: [legal]``) on the Heron merger;
- ``eng/runbook.md`` and ``general.md`` are everyone's.

Keys: ``hr`` (groups hr), ``eng`` (groups eng), ``legal`` (groups legal), ``plain`` (none).
Each leak test also asks as someone who may read the fact and checks it is there: a test
that could not see the fact at all would prove nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import KeyStore
from ingestion.daemon import WatchDaemon
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR
from tests.api.conftest import LiveServer, settings_for, sse_events, wait_for

HR_FACT = ("187,000", "zorkmids")
LEGAL_FACT = ("Quillfeather", "42 million")
DOCS = {
    "hr/salaries.md": "# Salary bands\n\nThe salary band for a staff engineer is 187,000 "
    "zorkmids a year, set by the compensation board.\n",
    "hr/handbook.md": "# Employee handbook\n\nStaff engineers are reviewed every March by "
    "their manager. Every employee gets twenty-five vacation days a year.\n",
    "legal/.access.yaml": "groups: [legal]\n",
    "legal/heron.md": "# Project Heron\n\nThe acquisition of Quillfeather Labs closes on 14 May "
    "for 42 million euros.\n",
    "eng/runbook.md": "# Deploy runbook\n\nDeploys to production happen on Tuesdays after the "
    "change advisory meeting.\n",
    "general.md": "# Office\n\nThe office opens at eight and the cafeteria serves lunch from "
    "noon.\n",
}
RULES = [{"path": "hr/", "groups": ["hr"]}, {"path": "hr/handbook.md", "groups": ["all"]}]
DIRECT = "What is the salary band for a staff engineer?"
PARAPHRASES = [
    "How much is a staff engineer paid per year?",
    "staff engineer salary band",
    "What does the compensation board set for staff engineers?",
]
MIXED = "When are staff engineers reviewed, and what is their salary band?"
KEY_GROUPS = {"hr": ["hr"], "eng": ["eng"], "legal": ["legal"], "plain": []}


@dataclass
class Perms:
    settings: Settings
    index: Index
    docs: Path
    keys: dict[str, str]
    ids: dict[str, str]
    store: KeyStore
    daemon: WatchDaemon
    server: LiveServer

    def client(self, who: str, server: LiveServer | None = None) -> httpx.Client:
        return (server or self.server).client(self.keys[who])

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_for(lambda: self.daemon.stats()["idle"], "the daemon to be idle", timeout)


@pytest.fixture(scope="module")
def perms(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Perms]:
    base = tmp_path_factory.mktemp("perms")
    docs = base / "docs"
    for rel, text in DOCS.items():
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text(text, encoding="utf-8")
    settings = settings_for(base / "data", access={"rules": RULES})
    index = Index(settings, embedder=embedder)
    index.open()
    tenants = index.data_dir / TENANTS_DIR
    tenants.mkdir(parents=True, exist_ok=True)
    daemon = WatchDaemon(index, [docs, tenants], debounce_seconds=0.2, reconcile_interval=3600)
    daemon.start()
    if not daemon.ready.wait(180):
        raise AssertionError("the daemon's initial sync did not finish")
    store = KeyStore(index.data_dir)
    keys: dict[str, str] = {}
    ids: dict[str, str] = {}
    for who, groups in KEY_GROUPS.items():
        rec, keys[who] = store.create("default", who, user=who, groups=groups)
        ids[who] = rec.id
    server = LiveServer(create_app(settings, index=index, daemon=daemon, keys=store)).start()
    server.wait_ready()
    yield Perms(settings, index, docs, keys, ids, store, daemon, server)
    server.stop()
    daemon.stop()
    index.close()


@pytest.fixture(scope="module")
def cached_server(perms: Perms) -> Iterator[LiveServer]:
    """Another app on the same index with the answer cache on (semantic matches too)."""
    settings = settings_for(perms.index.data_dir, access={"rules": RULES}, cache={"enabled": True})
    server = LiveServer(create_app(settings, index=perms.index, keys=perms.store)).start()
    server.wait_ready()
    yield server
    server.stop()


def leaked(payload: Any, fact: tuple[str, ...] = HR_FACT) -> bool:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return any(marker in text for marker in fact)


def ask(c: httpx.Client, question: str, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/query", json={"question": question, **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def sources(answer: dict[str, Any]) -> set[str]:
    return {c["source"] for c in answer["citations"]}


# -- retrieval: asking directly, by paraphrase, as context ---------------------------------------
def test_hr_reads_the_hr_fact(perms: Perms) -> None:
    with perms.client("hr") as c:
        answer = ask(c, DIRECT)
    assert leaked(answer["answer"]), answer
    assert "hr/salaries.md" in sources(answer)


@pytest.mark.parametrize("who", ["eng", "plain", "legal"])
@pytest.mark.parametrize(
    "question",
    [DIRECT, *PARAPHRASES, MIXED],
    ids=["direct", "paraphrase1", "paraphrase2", "paraphrase3", "mixed"],
)
def test_outside_hr_no_answer_holds_the_hr_fact(perms: Perms, who: str, question: str) -> None:
    with perms.client(who) as c:
        answer = ask(c, question)
        context = ask(c, question, generate=False)
    assert not leaked(answer), answer
    assert not leaked(context), context
    assert "hr/salaries.md" not in sources(answer) | sources(context)


def test_the_public_half_of_a_mixed_question_is_still_answered(perms: Perms) -> None:
    with perms.client("eng") as c:
        context = ask(c, MIXED, generate=False)
    assert "hr/handbook.md" in sources(context)
    with perms.client("hr") as c:
        assert {"hr/handbook.md", "hr/salaries.md"} <= sources(ask(c, MIXED, generate=False))


def test_a_sidecar_labels_its_folder(perms: Perms) -> None:
    question = "When does the Quillfeather acquisition close?"
    with perms.client("legal") as c:
        assert leaked(ask(c, question), LEGAL_FACT)
    with perms.client("hr") as c:
        assert not leaked(ask(c, question), LEGAL_FACT)
        assert not leaked(ask(c, question, generate=False), LEGAL_FACT)


def test_filters_cannot_choose_groups(perms: Perms) -> None:
    with perms.client("eng") as c:
        r = c.post("/v1/query", json={"question": DIRECT, "filters": {"groups": ["hr"]}})
    assert r.status_code in (400, 422), r.text
    assert not leaked(r.text)


# -- streaming and the OpenAI-compatible endpoint -------------------------------------------------
def _stream(c: httpx.Client, path: str, body: dict[str, Any]) -> str:
    with c.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        return "\n".join(data for _, data in sse_events(r.iter_lines()))


def test_streaming_never_sends_the_hr_fact(perms: Perms) -> None:
    body = {"question": DIRECT, "stream": True}
    with perms.client("hr") as c:
        assert leaked(_stream(c, "/v1/query", body))
    with perms.client("eng") as c:
        assert not leaked(_stream(c, "/v1/query", body))


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_endpoint_never_answers_with_the_hr_fact(perms: Perms, stream: bool) -> None:
    body = {
        "model": perms.settings.api.model_name,
        "messages": [{"role": "user", "content": DIRECT}],
        "stream": stream,
    }

    def call(who: str) -> str:
        with perms.client(who) as c:
            if stream:
                return _stream(c, "/v1/chat/completions", body)
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            return r.text

    assert leaked(call("hr"))
    assert not leaked(call("eng"))


# -- documents: listings, counts, status, sources, uploads and deletes ---------------------------
def test_listings_and_counts_leave_out_what_the_key_may_not_read(perms: Perms) -> None:
    with perms.client("eng") as c:
        listed = c.get("/v1/documents").json()
    paths = {d["path"] for d in listed["documents"]}
    assert {"hr/handbook.md", "eng/runbook.md", "general.md"} <= paths
    assert not paths & {"hr/salaries.md", "legal/heron.md"}, paths
    assert listed["total"] == len(listed["documents"])
    with perms.client("hr") as c:
        hr_paths = {d["path"] for d in c.get("/v1/documents").json()["documents"]}
    assert "hr/salaries.md" in hr_paths and "legal/heron.md" not in hr_paths


@pytest.mark.parametrize(
    "path",
    ["/v1/sources/hr/salaries.md", "/v1/documents/hr/salaries.md"],
    ids=["source", "status"],
)
def test_a_guessed_path_is_not_found(perms: Perms, path: str) -> None:
    with perms.client("hr") as c:
        r = c.get(path)
        assert r.status_code == 200, r.text
        if path.startswith("/v1/sources/"):
            assert leaked(r.text)
    with perms.client("eng") as c:
        r = c.get(path)
        missing = c.get(path.replace("salaries", "no-such-file"))
    assert r.status_code == 404, r.text
    # Answered exactly like a document that does not exist: nothing tells them apart.
    assert r.json()["error"]["type"] == missing.json()["error"]["type"]
    assert not leaked(r.text)


def _wait_ok(perms: Perms, who: str, path: str) -> None:
    def ok() -> bool:
        with perms.client(who) as c:
            r = c.get(f"/v1/documents/{path}")
        return r.status_code == 200 and r.json()["status"] == "ok"

    wait_for(ok, f"{path} to be ingested")


def test_an_upload_is_read_only_by_the_groups_it_is_given(perms: Perms) -> None:
    path = "default/bonus/pool.md"
    text = "# Bonus pool\n\nThe staff engineer bonus pool is 9,900 zorkmids this year.\n"
    fact = ("9,900",)
    question = "How big is the staff engineer bonus pool?"
    with perms.client("eng") as c:  # groups it does not read with: refused
        r = c.post(
            "/v1/documents",
            files={"file": ("pool.md", text)},
            data={"path": "bonus/pool.md", "groups": "hr"},
        )
        assert r.status_code == 403, r.text
    with perms.client("hr") as c:
        r = c.post(
            "/v1/documents",
            files={"file": ("pool.md", text)},
            data={"path": "bonus/pool.md", "groups": "hr"},
        )
        assert r.status_code == 202, r.text
    _wait_ok(perms, "hr", path)
    with perms.client("hr") as c:
        assert leaked(ask(c, question), fact)
    with perms.client("eng") as c:
        assert not leaked(ask(c, question), fact)
        assert not leaked(ask(c, question, generate=False), fact)
        assert c.get(f"/v1/documents/{path}").status_code == 404
        assert c.get(f"/v1/sources/{path}").status_code == 404
        # Neither replaced nor deleted by someone who may not read it.
        r = c.post(
            "/v1/documents",
            files={"file": ("pool.md", "# Bonus\n\nNo bonus.\n")},
            data={"path": "bonus/pool.md"},
        )
        assert r.status_code == 403, r.text
        assert c.delete(f"/v1/documents/{path}").status_code == 404
    with perms.client("hr") as c:
        assert c.get(f"/v1/sources/{path}").text == text
        assert c.delete(f"/v1/documents/{path}").status_code == 202


# -- the answer cache ---------------------------------------------------------------------------
def test_a_cached_answer_is_served_only_to_who_may_read_what_it_cites(
    perms: Perms, cached_server: LiveServer
) -> None:
    for question in (DIRECT, MIXED):
        with perms.client("hr", cached_server) as c:
            first = ask(c, question)
            again = ask(c, question)
        assert leaked(first["answer"]) and again["cached"], (first, again)
        with perms.client("eng", cached_server) as c:
            for asked in (question, question.upper(), PARAPHRASES[0]):
                answer = ask(c, asked)
                assert not leaked(answer), (asked, answer)
                assert "hr/salaries.md" not in sources(answer)
    # The hr entries are still there for hr: skipped for eng, not dropped.
    with perms.client("hr", cached_server) as c:
        assert ask(c, DIRECT)["cached"]


def test_a_cached_answer_is_rechecked_when_a_key_loses_a_group(
    perms: Perms, cached_server: LiveServer
) -> None:
    rec, key = perms.store.create("default", "hr-then-not", user="henk", groups=["hr"])
    with cached_server.client(key) as c:
        ask(c, DIRECT)
        assert ask(c, DIRECT)["cached"]
    perms.store.set_groups(rec.id, [])
    with cached_server.client(key) as c:
        answer = ask(c, DIRECT)
    assert not leaked(answer), answer


# -- revocation takes effect on the next request or sync ----------------------------------------
def test_a_group_revoked_from_a_key_counts_from_the_next_request(perms: Perms) -> None:
    rec, key = perms.store.create("default", "temp", user="tia", groups=["hr", "eng"])
    with perms.server.client(key) as c:
        assert leaked(ask(c, DIRECT)["answer"])
        assert c.get("/v1/sources/hr/salaries.md").status_code == 200
    perms.store.set_groups(rec.id, ["eng"])
    with perms.server.client(key) as c:
        assert not leaked(ask(c, DIRECT))
        assert c.get("/v1/sources/hr/salaries.md").status_code == 404


def test_a_sidecar_change_relabels_on_the_next_sync_without_reembedding(perms: Perms) -> None:
    question = "When does the Quillfeather acquisition close?"
    sidecar = perms.docs / "legal" / ".access.yaml"
    embedded = perms.daemon.stats()["chunks_embedded"]
    try:
        sidecar.write_text("groups: [board]\n", encoding="utf-8")

        def relabelled() -> bool:
            with perms.client("legal") as c:
                return not leaked(ask(c, question, generate=False), LEGAL_FACT)

        wait_for(relabelled, "the legal folder's new label to apply", timeout=30)
        with perms.client("legal") as c:
            assert not leaked(ask(c, question), LEGAL_FACT)
            assert c.get("/v1/sources/legal/heron.md").status_code == 404
        assert perms.daemon.stats()["chunks_embedded"] == embedded  # relabelled in place
    finally:
        sidecar.write_text("groups: [legal]\n", encoding="utf-8")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with perms.client("legal") as c:
                if leaked(ask(c, question, generate=False), LEGAL_FACT):
                    break
            time.sleep(0.2)


# -- JWT principals (auth.jwt) ------------------------------------------------------------------
@dataclass
class Login:
    """A company login stand-in: an RSA key whose public half is the JWKS file auth.jwt names."""

    private: Any
    jwks: Path
    server: LiveServer

    def token(self, **claims: Any) -> str:
        import jwt

        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jo", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": "k1"})


ISSUER = "https://login.example.com/"
AUDIENCE = "rag-kb"


@pytest.fixture(scope="module")
def login(perms: Perms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Login]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path_factory.mktemp("login") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig"}]}))
    settings = settings_for(
        perms.index.data_dir,
        access={"rules": RULES},
        auth={"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks": str(jwks)}},
    )
    server = LiveServer(create_app(settings, index=perms.index, keys=perms.store)).start()
    server.wait_ready()
    yield Login(private, jwks, server)
    server.stop()


def test_a_jwt_reads_with_the_groups_its_claims_name(perms: Perms, login: Login) -> None:
    with login.server.client(login.token(groups=["hr"])) as c:
        assert leaked(ask(c, DIRECT)["answer"])
        assert c.get("/v1/sources/hr/salaries.md").status_code == 200
    for groups in (["eng"], [], "eng,legal", None):
        with login.server.client(login.token(groups=groups)) as c:
            assert not leaked(ask(c, DIRECT))
            assert c.get("/v1/sources/hr/salaries.md").status_code == 404
    # API keys still work beside tokens.
    with perms.client("hr", login.server) as c:
        assert leaked(ask(c, DIRECT)["answer"])


def test_a_jwt_that_does_not_verify_is_refused(login: Login) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    good = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jo", "exp": now + 300, "groups": ["hr"]}
    bad = {
        "expired": login.token(groups=["hr"], exp=now - 3600),
        "other audience": login.token(groups=["hr"], aud="someone-else"),
        "other issuer": login.token(groups=["hr"], iss="https://evil.example.com/"),
        "no expiry": login.token(groups=["hr"], exp=None),
        "no user": login.token(groups=["hr"], sub=None),
        "signed by another key": jwt.encode(good, stranger, "RS256", headers={"kid": "k1"}),
        "unsigned": jwt.encode(good, None, algorithm="none"),
        "bad group name": login.token(groups=["h r"]),
    }
    for why, token in bad.items():
        with login.server.client(token) as c:
            r = c.post("/v1/query", json={"question": DIRECT})
        assert r.status_code == 401, (why, r.text)
        assert r.json()["error"]["type"] == "unauthorized"
        assert token not in r.text and not leaked(r.text)


# -- traces and feedback (Langfuse stand-in) ----------------------------------------------------
def _traced(perms: Perms, url: str, passages: str) -> LiveServer:
    settings = settings_for(
        perms.index.data_dir,
        access={"rules": RULES},
        tracing={
            "public_key": f"pk-lf-perms-{passages}-{int(time.time() * 1000)}",
            "secret_key": "sk-lf-perms",
            "base_url": url,
            "flush_interval_seconds": 0.2,
            "export_timeout_seconds": 1.0,
            "passages": passages,
        },
    )
    server = LiveServer(create_app(settings, index=perms.index, keys=perms.store)).start()
    server.wait_ready()
    return server


def _trace_text(standin: Any, trace_id: str) -> str:
    assert standin.wait_for(
        lambda s: any(x.name == "query" and x.trace_id == trace_id for x in s.spans)
    ), f"no trace {trace_id}"
    time.sleep(0.3)
    return "\n".join(x.text() for x in standin.trace(trace_id))


@pytest.mark.parametrize("passages", ["ids", "text"])
def test_traces_carry_user_and_groups_and_no_restricted_text_unless_asked(
    perms: Perms, passages: str
) -> None:
    from tests.langfuse_standin import LangfuseStandIn

    with LangfuseStandIn() as standin:
        server = _traced(perms, standin.url, passages)
        try:
            with perms.client("hr", server) as hr, perms.client("eng", server) as eng:
                asked = hr.post("/v1/query", json={"question": DIRECT}).json()
                assert leaked(asked["answer"])
                text = _trace_text(standin, asked["trace_id"])
                root = next(x for x in standin.trace(asked["trace_id"]) if x.name == "query")
                assert root.json_attr("langfuse.trace.metadata.groups") == ["hr"]
                assert "group:hr" in root.attributes["langfuse.trace.tags"]
                assert root.attributes["user.id"].startswith("u_")  # "hr", pseudonymised
                assert leaked(text) == (passages == "text"), text
                # Another user of the tenant may not rate hr's answer.
                body = {"trace_id": asked["trace_id"], "value": 0}
                assert eng.post("/v1/feedback", json=body).status_code == 404
                assert hr.post("/v1/feedback", json=body).status_code == 200
                record = server.app.state.rag.tracing.feedback.records()[-1]
                assert leaked(json.dumps(record)) == (passages == "text")
        finally:
            server.app.state.rag.tracing.shutdown(1.0)
            server.stop()


# -- MCP ----------------------------------------------------------------------------------------
def test_mcp_tools_never_hand_out_the_hr_fact(perms: Perms) -> None:
    from tests.api.test_mcp import session, text_of

    async def use(client: Any) -> dict[str, str]:
        out = {}
        out["ask"] = text_of(await client.call_tool("ask", {"question": DIRECT}))
        out["search"] = text_of(await client.call_tool("search", {"query": DIRECT}))
        out["list"] = text_of(await client.call_tool("list_documents", {}))
        out["source"] = text_of(await client.call_tool("get_source", {"path": "hr/salaries.md"}))
        return out

    hr = session(perms.server.url, perms.keys["hr"], use)
    assert all(leaked(hr[k]) for k in ("ask", "search", "source")), hr
    assert "hr/salaries.md" in hr["list"]
    eng = session(perms.server.url, perms.keys["eng"], use)
    assert not any(leaked(v) for v in eng.values()), eng
    assert "hr/salaries.md" not in eng["list"]
    assert "no document" in eng["source"]


# -- eval reports: run as access.cli_groups, read only by who reads all of it --------------------
def test_eval_reports_are_for_principals_reading_what_evals_read(perms: Perms) -> None:
    for who in ("eng", "hr", "plain"):
        with perms.client(who) as c:
            r = c.get("/v1/evals/latest")
        assert r.status_code == 403, (who, r.text)
    operator = perms.store.local_key("default")
    with perms.server.client(operator) as c:
        r = c.get("/v1/evals/latest")
    assert r.status_code in (200, 404), r.text  # allowed (404: no report yet)


def test_keys_carry_user_and_groups_and_the_local_key_is_the_operators(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    _, key = store.create("default", "k", user="ann", groups=["hr", "eng", "hr"])
    principal = store.verify(key)
    assert principal is not None and (principal.user, principal.groups) == ("ann", ("eng", "hr"))
    assert store.records()[0].public()["groups"] == ["eng", "hr"]
    with pytest.raises(ValueError, match="group"):
        store.create("default", "bad", groups=["h r"])
    # A local key made before permissions (groups []) becomes the operator's (access.cli_groups).
    _, old_key = store.create("default", "local", groups=[])
    (tmp_path / "local.key").write_text(old_key + "\n", encoding="utf-8")
    assert store.local_key("default") == old_key
    upgraded = store.verify(old_key)
    assert upgraded is not None and upgraded.groups is None
