"""A process that scrubs its logs with the PII model exits with its own status while background
threads are still logging (issue 29, session 6).

Found through ``scripts/break_checks.py``: once tracing's test failed, the Langfuse SDK's
score uploader (a daemon thread) kept retrying a refused server and logged an error while the
interpreter exited; the log scrubbing ran spaCy in that thread beside torch's exit hooks and
the process died of SIGSEGV (status 139), so pytest's "1 failed" never reached its exit status.
The child here is real: real Presidio, real threads logging PII-bearing errors in a loop (what
the SDK's uploader does against a dead Langfuse), and a main thread that returns."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

NAME = "John Smith"
EMAIL = "john.smith@example.com"

CHILD = textwrap.dedent(
    f"""
    import logging, sys, threading, time
    from rag.core.config import load_settings
    from rag.guards.pii.logs import install_log_scrubbing

    install_log_scrubbing(load_settings(overrides={{"data_dir": sys.argv[1]}}))
    logging.basicConfig(level=logging.INFO, filename=sys.argv[2], format="%(threadName)s %(message)s")
    log = logging.getLogger("langfuse")
    log.info("main: {NAME} asked at {EMAIL}")  # loads the model; scrubbed like any record

    def uploader():
        while True:
            log.error("API error: failed to send scores for {NAME} <{EMAIL}>: connection refused")

    for i in range(2):
        threading.Thread(target=uploader, name=f"uploader-{{i}}", daemon=True).start()
    time.sleep(1.0)  # the uploaders are mid-scrub when the main thread returns
    """
)


def test_background_threads_logging_at_exit_neither_crash_the_process_nor_leak(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.log"
    for _ in range(2):  # before the fix every run died (SIGSEGV): one would do
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path / "data"), str(out)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    written = out.read_text()
    assert NAME not in written and EMAIL not in written
    lines = written.splitlines()
    assert any(line.startswith("MainThread main:") for line in lines)
    # The uploaders' lines were scrubbed while the process ran (and withheld once it exited).
    assert sum(line.startswith("uploader-") and "connection refused" in line for line in lines)
