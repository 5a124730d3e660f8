"""``rag prompts release|status|rollback`` as a user runs them: the installed command, a data dir
holding the example documents, the default (extractive) chain. The gate answers the golden set
with both versions first; the release is then a file in the data dir every process reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"


def test_release_status_and_rollback(
    tmp_settings: Callable[..., Settings], embedder: Embedder, rag_cli: Any
) -> None:
    settings = tmp_settings(evals={"verify": False})
    index = Index(settings, embedder=embedder)
    index.open()
    try:
        Ingestor(index).sync_folder(EXAMPLES)
    finally:
        index.close()
    data = settings.resolved_data_dir()
    bad = rag_cli.run(
        "prompts", "release", "answer@v2", "--steps", "5,50", data_dir=data, check=False
    )
    assert bad.returncode == 1 and "ending at 100" in bad.stderr
    out = rag_cli.json(
        "prompts", "release", "answer@v2", "--steps", "10,100", "--json", data_dir=data
    )
    assert out["released"] and out["live"] == "answer@v3", out
    assert set(out["gate"]["variants"]) == {"prompt:answer@v3", "prompt:answer@v2"}
    status = rag_cli.json("prompts", "status", "--json", data_dir=data)
    assert status["answer"]["status"] == "running"
    assert status["answer"]["share"] == {"v2": 10, "v3": 90}
    again = rag_cli.run("prompts", "release", "answer@v1", data_dir=data, check=False)
    assert again.returncode == 1 and "is running" in again.stderr
    step = rag_cli.json("prompts", "step", "--json", data_dir=data)
    assert (
        step["answer"]["event"] == "waiting"
        and "releases.min_requests" in step["answer"]["reasons"][0]
    )
    rag_cli.run("prompts", "rollback", "--reason", "changed my mind", data_dir=data)
    status = rag_cli.json("prompts", "status", "--json", data_dir=data)
    assert status["answer"]["status"] == "rolled_back" and status["answer"]["rollbacks"] == 1
    assert status["answer"]["reason"] == "changed my mind"
    assert status["answer"]["share"] == {"v3": 100}
