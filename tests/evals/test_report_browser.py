"""report.html as a person sees it: opened in headless Chromium, numbers read back from the DOM."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from bs4 import BeautifulSoup

from evals.suite import run_default_suite
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from tests import browsers


def _chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_report_numbers_are_on_the_rendered_page(
    tmp_path: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    chromium = browsers.chromium()  # first: a missing browser fails before the slow part
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "backup.md").write_text("# Backups\n\nBackups are kept for 35 days in eu-west-2.\n")
    (kb / "oncall.md").write_text("# On-call\n\nPages must be acknowledged within five minutes.\n")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        json.dumps({"question": "How long are backups kept?", "sources": ["backup.md"]})
        + "\n"
        + json.dumps({"question": "How fast must pages be acknowledged?", "sources": ["oncall.md"]})
        + "\n"
    )
    index = Index(
        tmp_settings(evals={"suite": str(golden), "canary_samples": 5}), embedder=embedder
    )
    try:
        Ingestor(index).sync_folder(kb)
        run_default_suite(index, trigger="sync")
        (kb / "oncall.md").unlink()  # the second report then shows a regression and deltas
        Ingestor(index).sync_folder(kb)
        folder, report = run_default_suite(index, trigger="reindex")
    finally:
        index.close()

    proc = _chromium(chromium, tmp_path, "--dump-dom", (folder / "report.html").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = BeautifulSoup(proc.stdout, "html.parser")
    # Every headline metric of report.json is on the page, in its own cell, as a person reads it.
    cells = {td["data-metric"]: td.get_text(strip=True) for td in dom.select("td[data-metric]")}
    assert set(cells) == set(report["metrics"])
    for key, value in report["metrics"].items():
        shown = f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        assert cells[key] == shown, key
    recall = report["metrics"]["golden.recall@10"]
    assert recall == 0.5 and report["deltas"]["golden.recall@10"] == -0.5
    assert "▼ -0.500" in dom.get_text()
    banner = dom.select_one("#regressions")
    assert banner is not None and "golden.recall@10" in banner.get_text()
    assert len(dom.select("svg.chart")) >= 4  # recall@k, two latency histograms, score history
    assert "oncall.md" in dom.select_one("table.worst").get_text()  # the missed document is named

    shot = tmp_path / "report.png"
    proc = _chromium(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1200,1800",
        (folder / "report.html").as_uri(),
    )
    assert proc.returncode == 0 and shot.stat().st_size > 20_000  # a rendered page, not a blank one
