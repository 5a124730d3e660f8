"""``rag feedback``: listing, thumbs-down candidates as golden-set lines, ``confirm`` into a
golden set that the eval loader reads; and ``rag query`` traced to Langfuse (the stand-in)
by the SDK's own variables, the process exiting promptly with its trace sent."""

from __future__ import annotations

import json
import time
from pathlib import Path

from evals.golden import load_golden
from rag.observability.feedback import FeedbackStore
from tests.conftest import RagCli
from tests.langfuse_standin import LangfuseStandIn, refused_url

REPO = Path(__file__).resolve().parents[2]


def _seed(data_dir: Path) -> tuple[str, str]:
    store = FeedbackStore(data_dir)
    up = store.add("a" * 32, "default", 1, "great", {"question": "How long are backups kept?"})
    down = store.add(
        "b" * 32,
        "acme",
        0,
        "wrong region",
        {"question": "Where are backup copies stored?", "sources": ["policies/backup-policy.md"]},
    )
    return up["id"], down["id"]


def test_feedback_lists_candidates_and_confirms_into_the_golden_set(
    rag_cli: RagCli, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    up, down = _seed(data)
    listed = rag_cli.json("feedback", "--json", data_dir=data)
    assert [r["id"] for r in listed] == [up, down]
    assert [r["id"] for r in rag_cli.json("feedback", "--down", "--json", data_dir=data)] == [down]
    text = rag_cli.run("feedback", data_dir=data).stdout
    assert "down" in text and "Where are backup copies stored?" in text
    out = rag_cli.run("feedback", "--candidates", data_dir=data).stdout.splitlines()
    assert len(out) == 1
    candidate = json.loads(out[0])
    assert candidate["question"] == "Where are backup copies stored?"
    assert candidate["sources"] == ["policies/backup-policy.md"] and candidate["_feedback"] == down

    golden = tmp_path / "golden.jsonl"
    golden.write_text((REPO / "evals" / "golden.jsonl").read_text(encoding="utf-8"))
    before = len(load_golden(golden))
    rag_cli.run(
        "feedback", "confirm", down, "--golden", str(golden), "--answer", "eu-west-2", data_dir=data
    )
    items = load_golden(golden)
    assert len(items) == before + 1
    assert items[-1].question == "Where are backup copies stored?"
    assert items[-1].answers == ["eu-west-2"]
    # confirmed: no longer a candidate, and not twice
    assert rag_cli.run("feedback", "--candidates", data_dir=data).stdout.strip() == ""
    again = rag_cli.run(
        "feedback", "confirm", down, "--golden", str(golden), data_dir=data, check=False
    )
    assert again.returncode == 1 and "already" in again.stderr
    missing = rag_cli.run("feedback", "confirm", up, data_dir=data, check=False)
    assert missing.returncode == 2 and "--golden" in missing.stderr


def test_rag_query_is_traced_by_the_langfuse_variables(rag_cli: RagCli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    rag_cli.run("ingest", str(REPO / "examples" / "docs"), data_dir=data, timeout=300)
    with LangfuseStandIn() as standin:
        env = {
            "LANGFUSE_PUBLIC_KEY": "pk-lf-cli",
            "LANGFUSE_SECRET_KEY": "sk-lf-cli",
            "LANGFUSE_BASE_URL": standin.url,
        }
        result = rag_cli.json(
            "query", "How long are database backups kept?", "--json", data_dir=data, env=env
        )
        trace_id = result["trace_id"]
        assert trace_id and len(trace_id) == 32
        # the process flushed its trace before exiting (bounded)
        assert standin.wait_for(lambda s: any(x.trace_id == trace_id for x in s.spans), 5)
        names = {s.name for s in standin.trace(trace_id)}
        assert {"query", "retrieve", "generate"} <= names
        assert any(a.startswith("Basic ") for a in standin.auth)
    # Langfuse down: the answer is the same and the exit is still prompt
    env["LANGFUSE_BASE_URL"] = refused_url()
    started = time.monotonic()
    down = rag_cli.json(
        "query", "How long are database backups kept?", "--json", data_dir=data, env=env
    )
    assert down["answer"] == result["answer"]
    assert time.monotonic() - started < 120
