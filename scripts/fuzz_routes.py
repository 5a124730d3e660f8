"""A long fuzz run of every route: the HTTP API (in its OpenAPI schema or not) and the daemon's
loopback control API, against a live server started like ``rag serve --watch examples/docs``.

    .venv/bin/python scripts/fuzz_routes.py [--examples 30] [--steps 12] [--seed N]
                                            [--only schema,hostile,control,stateful]
                                            [--json report.json] [--no-tracing]

The server is the real thing in this process: ``app.runtime.Runtime`` (index, watch daemon,
control API, query pipeline) with ``app.api_server.ApiServer`` (uvicorn), over a temporary data
dir and a copy of ``examples/docs`` (the default config: extractive answers, answer cache, PII
scrubbing; rate limits raised so the fuzz is not answered 429). Tracing goes to a loopback
Langfuse stand-in (``tests/langfuse_standin.py``), so ``POST /v1/feedback`` runs for real.

What runs (``tests/api/fuzzing.py``; ``--examples`` per fuzzer and operation and mode):
- ``schema``: schemathesis over ``/openapi.json``, positive and negative data per operation;
- ``hostile``: every route with other methods, hostile paths, headers, bodies, multipart
  filename tricks, raw requests (routes outside the schema included);
- ``control``: the control API with its bearer token, raw requests (``POST /reindex``, a
  blue/green rebuild, at most 3 times);
- ``stateful``: the documents state machine (``--steps`` steps per run): uploads under hostile
  names, then reads, queries, ratings and deletes in any order.

Printed: per route the requests sent, the 5xx (and no-answer) count and the status histogram;
each distinct failure with a minimal reproducing request (a curl line, or a python one-liner
for raw requests); errors the server logged. Exit status 1 on any 5xx, failed check (schema
violation, error shape, invariant) or logged server error. ``--seed`` replays a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PHASES = ("schema", "hostile", "control", "stateful")


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any thread of the server."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summary(self) -> list[str]:
        seen: dict[str, int] = {}
        for r in self.records:
            exc = r.exc_info[1] if r.exc_info else None
            line = f"{r.name}: {r.getMessage()}" + (
                f" ({type(exc).__name__}: {exc})" if exc else ""
            )
            seen[line[:300]] = seen.get(line[:300], 0) + 1
        return [f"{n}× {line}" for line, n in seen.items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=10)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready after {timeout:.0f}s: {last}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=30, help="per fuzzer, operation and mode")
    parser.add_argument("--steps", type=int, default=12, help="steps per state machine run")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument(
        "--only", default=",".join(PHASES), help="comma-separated: " + ",".join(PHASES)
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    parser.add_argument("--no-tracing", action="store_true", help="no Langfuse stand-in")
    args = parser.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {unknown}: choose from {', '.join(PHASES)}")
    seed = args.seed if args.seed is not None else random.randrange(2**31)

    from hypothesis.errors import HypothesisWarning

    # Hostile examples are large on purpose: hypothesis warns about printing them.
    warnings.filterwarnings("ignore", category=HypothesisWarning)

    from api.auth import KeyStore
    from app.api_server import ApiServer
    from app.runtime import Runtime
    from rag.core.config import DEFAULT_CONFIG, load_settings
    from rag.indexing.ingest import TENANTS_DIR
    from tests.api import fuzzing

    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    tally = fuzzing.Tally()
    started = time.monotonic()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-fuzz-")))
        docs = tmp / "docs"
        shutil.copytree(ROOT / "examples" / "docs", docs)
        overrides: dict[str, Any] = {
            "data_dir": str(tmp / "data"),
            "evals": {"after_sync": False},
            "embedding": {"threads": 1},
            "api": {"requests_per_minute": 1_000_000, "burst": 100_000, "queue": 256},
        }
        if not args.no_tracing:
            from tests.langfuse_standin import LangfuseStandIn

            standin = stack.enter_context(LangfuseStandIn())
            overrides["tracing"] = {
                "public_key": "pk-lf-fuzz",
                "secret_key": "sk-lf-fuzz",
                "base_url": standin.url,
                "flush_interval_seconds": 0.5,
                "export_timeout_seconds": 1.0,
            }
        settings = load_settings(DEFAULT_CONFIG, overrides)
        tenants = settings.resolved_data_dir() / TENANTS_DIR
        tenants.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        runtime = Runtime(
            settings,
            [docs, tenants],
            reconcile_interval=3600,
            api=ApiServer(settings, "127.0.0.1", port, echo=lambda line: None),
            echo=lambda line: None,
        )
        runtime.start()
        stack.callback(runtime.stop)
        # uvicorn warns about each malformed request the raw fuzz sends: the tally counts them.
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        url = f"http://127.0.0.1:{port}"
        store = KeyStore(settings.resolved_data_dir())
        keys = {t: store.create(t, "fuzz")[1] for t in ("fuzz", "fuzz-hostile", "fuzz-docs")}
        _wait_ready(url)
        assert runtime.control is not None
        print(
            f"fuzzing {url} and the control API on port {runtime.control.port}: "
            f"--examples {args.examples} --steps {args.steps} --seed {seed} --only {','.join(phases)}",
            flush=True,
        )
        import httpx

        schema_paths = list(httpx.get(url + "/openapi.json", timeout=30).json()["paths"])
        app = runtime.api.app if isinstance(runtime.api, ApiServer) else None
        missing = fuzzing.unfuzzed_app_routes(app, dict.fromkeys(schema_paths)) if app else []
        if missing:
            print(f"routes no fuzzer covers (list them in tests/api/fuzzing.py): {missing}")
        for phase in phases:
            t0 = time.monotonic()
            if phase == "schema":
                fuzzing.fuzz_schema(url, keys["fuzz"], tally, args.examples, seed=seed)
            elif phase == "hostile":
                fuzzing.fuzz_hostile(
                    url, keys["fuzz-hostile"], schema_paths, tally, args.examples, seed=seed
                )
            elif phase == "control":
                fuzzing.fuzz_control(
                    runtime.control.port, runtime.control.token, tally, args.examples, seed=seed
                )
            else:
                fuzzing.fuzz_documents(
                    url,
                    keys["fuzz-docs"],
                    "fuzz-docs",
                    tally,
                    args.examples,
                    steps=args.steps,
                    seed=seed,
                )
            print(f"  {phase}: {time.monotonic() - t0:.0f} s", flush=True)
        # Still standing: ready, and the daemon ingested the uploads without a failing sync.
        after = httpx.get(url + "/readyz", timeout=30)
        daemon = runtime.daemon.stats() if runtime.daemon is not None else {}
    print()
    print(tally.report())
    problems = list(tally.failures)
    if after.status_code != 200:
        print(f"\n/readyz after the fuzz: {after.status_code} {after.text}")
        problems.append(("/readyz", "not ready after the fuzz"))
    if daemon.get("sync_error"):
        print(f"\nthe daemon's sync failed: {daemon['sync_error']}")
        problems.append(("daemon", "sync failed"))
    logged = errors.summary()
    if logged:
        print("\nerrors the server logged:\n  " + "\n  ".join(logged))
    if missing:
        problems.append(("routes", f"not fuzzed: {missing}"))
    elapsed = time.monotonic() - started
    print(
        f"\n{tally.requests()} requests in {elapsed:.0f} s, {tally.server_errors()} × 5xx or no "
        f"answer, {len(tally.failures)} distinct failure(s), {len(logged)} distinct logged "
        f"error(s); seed {seed}"
    )
    if args.json is not None:
        report = tally.as_json() | {
            "seed": seed,
            "examples": args.examples,
            "steps": args.steps,
            "phases": phases,
            "seconds": round(elapsed, 1),
            "logged_errors": logged,
            "unfuzzed_routes": missing,
        }
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if problems or logged or tally.server_errors() else 0


if __name__ == "__main__":
    sys.exit(main())
