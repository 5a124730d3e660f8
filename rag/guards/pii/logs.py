"""Every log record of the process scrubbed where it is made, whatever logger makes it and
whatever handler writes it: message, arguments and the formatted exception (an error quoting
a question included).

Every logger, not only this project's (``rag``, ``api``, ``app``, ``ingestion``, ``evals``):
uvicorn's own "Exception in ASGI application" traceback printed a tenant's file path, with
the name and e-mail address in its file name, and uvicorn writes through handlers of its own
(``propagate: False``), so a filter on the root handler would not see it.

Two passes: absolute server paths always (the data dir becomes ``<data_dir>``, a watched
folder ``<watched>``, the Python installation and this project's code ``<code>``, any other
path ``<path>``: a quoted path up to its closing quote); then, while ``pii.enabled``, the PII
scrubber and an e-mail regular expression (Presidio misses an address glued into a file name
by underscores).

A log record factory rather than a logger filter: filters on a logger do not see records of
its children, and handlers belong to the application. :func:`install_log_scrubbing` is
idempotent; the latest configuration wins. Records are only made for enabled levels, so
nothing is analysed for debug lines that are never written.

At exit, daemon threads outlive the interpreter's teardown: an SDK's uploader retrying a dead
Langfuse logged an error there, and the PII model (spaCy/thinc, beside torch's exit hooks)
crashed the process with SIGSEGV, exit status 139 instead of the command's. From the moment
the interpreter starts exiting (before the non-daemon threads are joined and the atexit hooks
run), a record made in a daemon thread is withheld, not scrubbed, and the exit waits for the
scrubs already running (at most ``EXIT_WAIT_SECONDS``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import sysconfig
import threading
import traceback
from pathlib import Path
from typing import Any

from rag.core.pii_settings import PiiSettings
from rag.guards.pii.policy import Scrubber, scrubber_for

__all__ = [
    "install_log_scrubbing",
    "register_log_path",
    "scrub_exception",
    "scrub_log_text",
    "scrub_server_paths",
    "uninstall_log_scrubbing",
]

_lock = threading.Lock()
_state: dict[str, Any] = {"scrubber": None, "previous": None}
_busy = threading.local()  # a record made while scrubbing (the engine loading) is left alone


# The exit (module docstring): set once the interpreter starts exiting; scrubs in daemon threads.
class _ExitState:
    exiting = False  # the interpreter started exiting
    in_flight = 0  # scrubs running in daemon threads
    hooked = False


_exit = threading.Condition()
_exit_state = _ExitState()
EXIT_WAIT_SECONDS = 5.0
WITHHELD = "<withheld: logged by a background thread while the process exits, unscrubbed>"

# -- absolute server paths -----------------------------------------------------------
_PART = r"""[^\s'"/:;,()\[\]<>|]"""
# An absolute path: unquoted up to the first space; quoted ('…' or "…") up to its quote.
_QUOTED_PATH = re.compile(r"""(?P<q>['"])(?P<path>/[^'"\n]*)(?P=q)""")
_BARE_PATH = re.compile(rf"(?<![\w.~:/<>-])/{_PART}+(?:/{_PART}*)*")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# (prefix, label), longest prefix first. Registered: the data dir, watched folders; the Python
# installation and this project's code are known from the start. Replaced whole on each
# registration, so a thread scrubbing meanwhile reads a consistent tuple.
_roots: tuple[tuple[str, str], ...] = ()
_roots_lock = threading.Lock()
_top_level: frozenset[str] | None = None  # names in "/": a path must start with one of them
_CODE = "<code>"


def register_log_path(path: str | Path, label: str) -> None:
    """Log lines name ``path`` (and what is under it) as ``label`` + the part below it."""
    global _roots
    with _roots_lock:
        roots = dict(_roots)
        if roots.get(str(path)) == label:
            return
        for variant in {os.path.abspath(path), os.path.realpath(path)}:
            variant = variant.rstrip("/")
            if not variant or (label == _CODE and variant in roots):
                continue  # a data dir or watched folder inside the code keeps its own label
            roots[variant] = label
        _roots = tuple(sorted(roots.items(), key=lambda item: len(item[0]), reverse=True))


def _code_roots() -> None:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= {p for k, p in sysconfig.get_paths().items() if k in ("stdlib", "purelib", "platlib")}
    # This project's packages (a source checkout or site-packages alike).
    paths.add(str(Path(__file__).resolve().parents[3]))
    for p in paths:
        if p:
            register_log_path(p, _CODE)


def _is_server_path(path: str) -> bool:
    """``/v1/sources/x`` (a URL path) is no server path; ``/tmp/x`` is: the first name must be in ``/``."""
    global _top_level
    if _top_level is None:
        try:
            _top_level = frozenset(os.listdir("/"))
        except OSError:
            _top_level = frozenset()
    first = path.lstrip("/").split("/", 1)[0]
    return first in _top_level


def _replace_path(path: str) -> str:
    for prefix, label in _roots:
        if path == prefix or path.startswith(prefix + "/"):
            return label + path[len(prefix) :]
    return "<path>" if _is_server_path(path) else path


def scrub_server_paths(text: str) -> str:
    """``text`` naming no absolute server path: each becomes its root's label and the part
    below it (``<data_dir>/tenants/acme/x.md``), or ``<path>``."""
    if "/" not in text:
        return text
    text = _QUOTED_PATH.sub(lambda m: m["q"] + _replace_path(m["path"]) + m["q"], text)
    return _BARE_PATH.sub(lambda m: _replace_path(m.group(0)), text)


def scrub_log_text(text: str, scrubber: Scrubber | None) -> str:
    """Server paths out, then (with a scrubber) PII and any e-mail address left."""
    text = scrub_server_paths(text)
    if scrubber is not None and text:
        text = _EMAIL.sub("<EMAIL_ADDRESS>", scrubber.scrub(text))
    return text


def _scrub_record(record: logging.LogRecord, scrubber: Scrubber | None) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logged as it is
        message = str(record.msg)
    record.msg, record.args = scrub_log_text(message, scrubber), None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub_log_text(text, scrubber)
    if record.stack_info:
        record.stack_info = scrub_log_text(record.stack_info, scrubber)


def _begin_exit() -> None:
    """The interpreter is exiting: daemon threads' records are withheld from now on, and the
    scrubs they are running finish before the teardown goes on."""
    with _exit:
        _exit_state.exiting = True
        _exit.wait_for(lambda: _exit_state.in_flight == 0, timeout=EXIT_WAIT_SECONDS)


def _hook_exit() -> None:
    """:func:`_begin_exit` at the start of the exit, once. ``threading._register_atexit`` (what
    ``concurrent.futures`` uses) runs before non-daemon threads are joined and before the
    atexit hooks that tear libraries down; ``atexit`` where it is missing."""
    if _exit_state.hooked:
        return
    _exit_state.hooked = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(_begin_exit)
        else:  # pragma: no cover - every CPython this project supports has it
            import atexit

            atexit.register(_begin_exit)
    except RuntimeError:  # installed while the interpreter is exiting already
        _exit_state.exiting = True


def _withhold(record: logging.LogRecord) -> None:
    record.msg, record.args = WITHHELD, None
    record.exc_info, record.exc_text, record.stack_info = None, None, None


def install_log_scrubbing(settings: Any) -> None:
    """Scrub every log record: server paths always, PII with ``settings.pii`` (a Settings or
    PiiSettings) while it is enabled. A ``Settings`` also names its data dir ``<data_dir>``."""
    pii = getattr(settings, "pii", settings)
    assert isinstance(pii, PiiSettings)
    with _lock:
        _state["scrubber"] = scrubber_for(pii) if pii.enabled else None
        _code_roots()
        resolved = getattr(settings, "resolved_data_dir", None)
        if callable(resolved):
            register_log_path(Path(resolved()).absolute(), "<data_dir>")
        if _state["previous"] is not None:
            return
        _hook_exit()
        previous = logging.getLogRecordFactory()
        _state["previous"] = previous

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if getattr(_busy, "on", False):
                return record
            daemon = threading.current_thread().daemon
            if daemon:
                with _exit:
                    if _exit_state.exiting:
                        _withhold(record)
                        return record
                    _exit_state.in_flight += 1
            scrubber = _state["scrubber"]
            _busy.on = True
            try:
                _scrub_record(record, scrubber)
            finally:
                _busy.on = False
                if daemon:
                    with _exit:
                        _exit_state.in_flight -= 1
                        _exit.notify_all()
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
