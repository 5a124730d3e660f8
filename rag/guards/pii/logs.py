"""Log records of this project's loggers (``rag``, ``api``, ``app``, ``ingestion``, ``evals``)
scrubbed where they are made, whatever handler writes them: message, arguments and the
formatted exception (an error quoting a question included).

A log record factory rather than a logger filter: filters on a logger do not see records of
its children, and handlers belong to the application. :func:`install_log_scrubbing` is
idempotent; the latest configuration wins. Records are only made for enabled levels, so
nothing is analysed for debug lines that are never written.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

from rag.core.pii_settings import PiiSettings
from rag.guards.pii.policy import Scrubber, scrubber_for

__all__ = [
    "SCRUBBED_LOGGERS",
    "install_log_scrubbing",
    "scrub_exception",
    "uninstall_log_scrubbing",
]

SCRUBBED_LOGGERS = ("rag", "api", "app", "ingestion", "evals", "benchmarks")

_lock = threading.Lock()
_state: dict[str, Any] = {"scrubber": None, "previous": None}
_busy = threading.local()  # a record made while scrubbing (the engine loading) is left alone


def _ours(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in SCRUBBED_LOGGERS)


def _scrub_record(record: logging.LogRecord, scrubber: Scrubber) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logged as it is
        message = str(record.msg)
    record.msg, record.args = scrubber.scrub(message), None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrubber.scrub(text)
    if record.stack_info:
        record.stack_info = scrubber.scrub(record.stack_info)


def install_log_scrubbing(settings: Any) -> None:
    """Scrub this project's log records with ``settings.pii`` (a Settings or PiiSettings)."""
    pii = getattr(settings, "pii", settings)
    assert isinstance(pii, PiiSettings)
    with _lock:
        _state["scrubber"] = scrubber_for(pii) if pii.enabled else None
        if _state["previous"] is not None:
            return
        previous = logging.getLogRecordFactory()
        _state["previous"] = previous

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            scrubber = _state["scrubber"]
            if scrubber is not None and _ours(record.name) and not getattr(_busy, "on", False):
                _busy.on = True
                try:
                    _scrub_record(record, scrubber)
                finally:
                    _busy.on = False
            return record

        logging.setLogRecordFactory(factory)


def uninstall_log_scrubbing() -> None:
    with _lock:
        if _state["previous"] is not None:
            logging.setLogRecordFactory(_state["previous"])
        _state["previous"] = _state["scrubber"] = None


def scrub_exception(exc: BaseException, settings: Any) -> str:
    """``str(exc)`` scrubbed: for error messages written to reports, traces or responses."""
    return scrubber_for(getattr(settings, "pii", settings)).scrub(str(exc))
