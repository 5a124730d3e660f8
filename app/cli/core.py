"""The ``rag`` command line's shared parts and its index commands: ``ingest``, ``watch``,
``status``, ``export``, ``reindex``. Global options: ``--config FILE`` (RAG_CONFIG),
``--data-dir DIR`` (RAG_DATA_DIR). The commands are registered in ``app.cli``.

Exit codes: 0 ok (an ingest with some failed files is still ok: they are recorded);
1 the command could not run (message says what to do); 2 bad configuration or usage;
3 a release refused by its evals (``rag reindex``, ``rag prompts release``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rag.core.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from app.runtime import Service

__all__ = [
    "daemon_client",
    "echo_err",
    "export",
    "fail",
    "get_settings",
    "global_options",
    "ingest",
    "open_index",
    "print_json",
    "progress_reporter",
    "reindex",
    "run_runtime",
    "status",
    "stdout_to_a_pipe",
    "watch",
]


class _State:
    config: str | None = None
    data_dir: str | None = None
    settings: Settings | None = None


state = _State()


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def get_settings() -> Settings:
    if state.settings is None:
        try:
            overrides: dict[str, Any] = {}
            if state.data_dir:
                overrides["data_dir"] = state.data_dir
            settings = load_settings(state.config, overrides)
            # Every plug-in name (store.backend, generation.chain, rerank.backend,
            # ingestion.extensions, costs.prices) registered: exit 2 before anything opens.
            from rag.plugins import check_settings

            state.settings = check_settings(settings)
        except ConfigError as exc:
            fail(str(exc), code=2)
    assert state.settings is not None
    return state.settings


def global_options(
    config: Annotated[
        str | None,
        typer.Option(
            "--config", envvar="RAG_CONFIG", help="YAML config file (default: configs/default.yaml)"
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir", envvar="RAG_DATA_DIR", help="Where the index, manifest and reports live"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more")] = False,
) -> None:
    state.config, state.data_dir, state.settings = config, data_dir, None
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "sentence_transformers", "transformers", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- helpers ---------------------------------------------------------------------------
@contextmanager
def progress_reporter(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on a terminal; periodic one-line updates in logs and CI."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(label, total=None)

            def update(phase: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield update
    else:
        last = [0.0]

        def update(phase: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] > 5.0:
                last[0] = now
                typer.echo(f"{label}: {done}/{total} {phase}", err=True)

        yield update


def open_index(create: bool = True) -> Any:
    from rag.indexing.index import EmbeddingMismatchError, Index
    from rag.store import StoreError

    settings = get_settings()
    index = Index(settings)
    try:
        index.open(create=create)
    except (EmbeddingMismatchError, StoreError) as exc:
        index.close()
        fail(str(exc))
    return index


def daemon_client() -> Any:
    from app.control import find_daemon

    return find_daemon(get_settings().resolved_data_dir())


@contextmanager
def stdout_to_a_pipe() -> Iterator[None]:
    """Around output that may go to a reader which stops early (``rag export | head -3``): when
    the reader is gone, the command ends quietly with status 141 (128 + SIGPIPE, what ``cat``
    gets there), no traceback and no "Exception ignored" at exit. Python's recipe (the
    ``signal`` docs, "Note on SIGPIPE"): point stdout at /dev/null so the interpreter's last
    flush cannot fail again."""
    try:
        yield
        sys.stdout.flush()  # a reader gone by the end is caught here too, not at exit
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise typer.Exit(141) from None


def _ask_daemon(client: Any, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``call()`` on the running daemon's control API; its refusal is this command's error."""
    from app.control import DaemonError

    try:
        return call()
    except DaemonError as exc:
        fail(f"the running daemon answered: {exc}")
        raise  # unreachable: fail() exits
    finally:
        client.close()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


def run_runtime(paths: list[Path], reconcile_interval: float, api: Service | None = None) -> None:
    """`rag watch` and `rag serve`: the index, daemon and control API (and ``api``) until a signal."""
    from app.runtime import Runtime
    from rag.indexing.index import EmbeddingMismatchError
    from rag.store import StoreError

    settings = get_settings()
    try:
        runtime = Runtime(settings, paths, reconcile_interval, api=api, echo=echo_err)
        runtime.open()
    except (EmbeddingMismatchError, StoreError) as exc:
        fail(str(exc))
    runtime.run_until_signal()


# -- commands --------------------------------------------------------------------------
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder to sync into the index")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the sync report as JSON")] = False,
) -> None:
    """One-shot sync of PATH: new/changed files ingested, files gone from PATH removed."""
    if not path.is_dir():
        fail(f"{path} is not a folder: give the folder to sync (files are found recursively)")
    client = daemon_client()
    if client is not None:
        fail(
            "a daemon (`rag watch`/`rag serve`) is running on this data dir and already keeps it in sync; stop it first"
        )
    from rag.core.errors import DiskFullError
    from rag.indexing.ingest import Ingestor

    index = open_index()
    try:
        with progress_reporter("ingest") as progress:
            report = Ingestor(index).sync_folder(path, progress=progress)
    except DiskFullError as exc:  # nothing was written; the files are synced by the next run
        fail(str(exc))
    finally:
        index.close()
    if as_json:
        print_json(report.as_dict())
        return
    typer.echo(
        f"{report.ingested} file(s) ingested, {report.unchanged} unchanged, {report.deleted} deleted, "
        f"{report.failed} failed, {report.skipped} skipped; {report.embedded} chunk(s) embedded, "
        f"{report.reused} reused, in {report.seconds:.1f}s"
    )
    for f in report.failures:
        typer.echo(f"  failed: {f['path']}: {f['reason']}", err=True)


def watch(
    paths: Annotated[list[Path], typer.Argument(help="Folder(s) to keep in sync")],
    reconcile_interval: Annotated[
        float, typer.Option(help="Seconds between safety reconciles")
    ] = 300.0,
) -> None:
    """The daemon: an initial sync of PATH, then follow changes until SIGINT/SIGTERM."""
    for p in paths:
        if not p.is_dir():
            fail(f"{p} is not a folder")
    if daemon_client() is not None:
        fail("another daemon is already running on this data dir")
    run_runtime(paths, reconcile_interval)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Documents, chunks, failures, embedding identity, live collection, last sync."""
    client = daemon_client()
    if client is not None:
        data = _ask_daemon(client, client.status)
    else:
        from rag.indexing.status import collect_status

        index = open_index(create=False)
        try:
            data = collect_status(index)
        finally:
            index.close()
    if as_json:
        print_json(data)
        return
    emb = data["embedding"]
    typer.echo(f"index      {data['alias']} -> {data['collection']} ({data['backend']})")
    typer.echo(
        f"documents  {data['documents']}  chunks {data['chunks']}  failed {len(data['failed'])}"
    )
    typer.echo(
        f"embedding  {emb['model']} dim {emb['dimension']} weights {emb['fingerprint'][:12]}"
    )
    if "query_precision" in emb:  # a daemon from before precisions existed leaves them out
        typer.echo(
            f"precision  documents {emb['document_precision']}, queries "
            f"{emb.get('query_precision_resolved') or emb['query_precision']} "
            f"({emb.get('query_precision_reason') or 'setting ' + emb['query_precision']})"
        )
    if data.get("last_run"):
        lr = data["last_run"]
        typer.echo(
            f"last sync  {lr['embedded']} embedded, {lr['unchanged']} unchanged, {lr['deleted']} deleted, "
            f"{lr['failed']} failed in {lr['seconds']}s"
        )
    if (sv := data.get("sentence_vectors")) is not None:
        typer.echo(
            f"sentences  vectors stored for {sv['chunks']} of {sv['of']} chunks"
            + (f": {sv['note']}" if sv.get("note") else "")
        )
    if data.get("last_eval"):
        ev = data["last_eval"]
        regs = ev.get("regressions") or []
        verdict = (
            f"{len(regs)} regression(s): " + ", ".join(r["metric"] for r in regs[:3])
            if regs
            else "no regressions"
        )
        typer.echo(
            f"last eval  {ev.get('id')} ({ev.get('trigger')}): {verdict}"
            + (f"; failed since: {ev['error']}" if ev.get("error") else "")
        )
    if (inj := data.get("injection")) and inj.get("flagged_chunks"):
        typer.echo(
            f"injection  {inj['flagged_chunks']} chunk(s) in {inj['flagged_documents']} "
            "document(s) flagged as prompt injection (injection.flagged: exclude or fence):"
        )
        for f in inj["flagged"]:
            typer.echo(f"  {f['path']} (chunk {f['chunk']}): {'; '.join(f['reasons'])}")
    if data.get("daemon"):
        d = data["daemon"]
        state_word = "idle" if d["idle"] else ("syncing" if d["ready"] else "initial sync")
        typer.echo(
            f"daemon     pid {d['pid']}, {state_word}, {d['pending_paths']} change(s) pending"
        )
    for f in data["failed"]:
        typer.echo(f"  failed: {f['path']}: {f['reason']}")


def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
) -> None:
    """One JSON line per chunk, read from the vector store itself."""
    out = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        with stdout_to_a_pipe():  # `rag export | head -3` ends quietly
            client = daemon_client()
            if client is not None:
                from app.control import DaemonError

                try:
                    for line in client.export_lines():
                        if line:
                            out.write(line + "\n")
                except DaemonError as exc:
                    fail(f"the running daemon's export failed: {exc}")
                finally:
                    client.close()  # the daemon stops its export with this connection
            else:
                from rag.indexing.status import export_chunks

                index = open_index(create=False)
                try:
                    for row in export_chunks(index):
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                finally:
                    index.close()
    finally:
        if output:
            out.close()


def reindex(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Switch to the new collection even when the evals find it worse"
        ),
    ] = False,
) -> None:
    """Rebuild into a new versioned collection; switch the alias to it (blue/green) only when
    the retrieval and answer evals find it no worse than the live one (exit 3 when refused)."""
    client = daemon_client()
    if client is not None:
        result = _ask_daemon(client, lambda: client.reindex(force=force))
    else:
        from evals.releases import index_gate
        from evals.runner import eval_after_reindex
        from rag.indexing.index import Index
        from rag.indexing.reindex import reindex as rebuild
        from rag.store import StoreError

        index = Index(get_settings())
        try:
            with progress_reporter("reindex") as progress:
                result = rebuild(
                    index, progress=progress, gate=index_gate(echo=echo_err), force=force
                )
            if result["promoted"]:
                result["eval"] = eval_after_reindex(index, echo=echo_err)
        except StoreError as exc:
            fail(str(exc))
        finally:
            index.close()
    if as_json:
        print_json(result)
    elif result.get("promoted", True):
        forced = " (forced past the evals)" if result.get("forced") else ""
        typer.echo(
            f"reindexed into {result['collection']} (was {result['previous']}){forced}; "
            f"{result.get('embedded', 0)} chunk(s) embedded in {result['seconds']}s"
        )
    else:
        typer.echo(
            f"reindex refused: still serving {result['collection']}; the new collection "
            f"{result['candidate']} was dropped: {result.get('reason')}",
            err=True,
        )
        for r in result.get("regressions") or []:
            typer.echo(
                f"  {r['metric']}: {r['previous']:.3f} -> {r['current']:.3f} ({r['delta']:+.3f})",
                err=True,
            )
        typer.echo("  (`rag reindex --force` switches anyway)", err=True)
    if not result.get("promoted", True):
        raise typer.Exit(3)
