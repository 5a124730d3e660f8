"""`rag query` while `rag watch` holds the store: the running daemon answers it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.ingestion.conftest import DaemonProcess

EXTRACTIVE = {"RAG_GENERATION__CHAIN": '["extractive"]'}


def test_query_is_answered_by_the_running_daemon(
    tmp_path: Path, rag_cli: Any, start_daemon: Callable[..., DaemonProcess]
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "backups.md").write_text(
        "# Backups\n\nDatabase backups are kept for 35 days in a second region.\n"
    )
    (folder / "laptops.md").write_text(
        "# Laptops\n\nEngineers get a new laptop every three years.\n"
    )
    daemon = start_daemon(folder, tmp_path / "data", env=EXTRACTIVE)
    daemon.wait_idle()

    out = rag_cli.json(
        "query",
        "How long are database backups kept?",
        "--json",
        data_dir=daemon.data_dir,
        env=EXTRACTIVE,
    )
    assert "35 days" in out["answer"] and out["generator"] == "extractive"
    assert out["citations"][0]["source"] == "backups.md" and out["citations"][0]["verified"]

    context = rag_cli.json(
        "query",
        "laptop",
        "--json",
        "--context-only",
        "--filter",
        "source=laptops.md",
        data_dir=daemon.data_dir,
        env=EXTRACTIVE,
    )
    assert context["answer"] == "" and {c["source"] for c in context["citations"]} == {"laptops.md"}

    empty = rag_cli.run("query", "   ", data_dir=daemon.data_dir, env=EXTRACTIVE, check=False)
    assert empty.returncode == 1 and "question is empty" in empty.stderr
    assert daemon.running, "a bad question does not hurt the daemon"
