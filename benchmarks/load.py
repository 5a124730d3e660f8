"""API load benchmark: N concurrent clients against ``POST /v1/query`` on loopback, all figures from one run.

    .venv/bin/python benchmarks/load.py [--clients 32] [--requests 2000] [--answer-requests 16]
        [--answer-clients 4] [--skip-answers] [--inprocess-requests 400] [--port P] [--json-out FILE]

The script builds its own deployment: ``rag ingest examples/docs`` into a temp data dir, a key
from ``rag keys create``, then ``rag serve --watch examples/docs`` as a subprocess on a free
loopback port (so the load generator does not share the server's GIL), and waits for
``GET /readyz``. Rate limits are raised out of the way (``RAG_API__REQUESTS_PER_MINUTE``,
``RAG_API__BURST``), ``api.queue`` is raised to at least the number of clients, evals after
sync are off, and ``generation.chain`` is ``[local]`` (SmolLM2 via llama.cpp, no fallback, so a
failing generator shows up as errors). Concurrency gates keep their defaults.

Each phase: a fixed number of asyncio workers sharing one ``httpx.AsyncClient`` (a keep-alive
connection per worker) send requests back to back after a few uncounted warm-up requests;
reported are requests/s, p50/p95/p99/max latency of the successful requests, the server's own
pipeline time (``timings_ms.total``) and the errors (non-200s, transport errors, a query with no
passages retrieved, an answer that is empty, degraded or not from ``local``; an answer that
verification turns into an abstention is valid and counted under ``abstained``). Questions
cycle through 20 distinct ones about examples/docs: a query-embedding cache would inflate the
figures.

1. baseline: the same clients against ``GET /healthz`` (pure HTTP + framework + load
   generator cost on this machine), and the in-process ``QueryPipeline.run(q, generate=False)``
   throughput (one caller, and as many threads as ``api.concurrency.retrieval``) measured in a
   subprocess before the server starts (the embedded store admits one process at a time).
2. retrieval only: ``{"question": ..., "generate": false}`` (goal: >= 100 req/s with 0 errors
   on a 2-core machine), quoted as a ratio of both baselines.
3. full answers with the local generator (``generate`` true), fewer requests and clients by
   default since it is slow on CPU; ``--skip-answers`` leaves it out.

The load generator runs on the same machine as the server: on few cores it competes with the
server for CPU, which the /healthz baseline shows. Human-readable lines go to stderr as it
goes; the figures are printed as JSON on stdout at the end (and to ``--json-out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "examples" / "docs"
GOAL_RPS = 100.0

QUESTIONS = [
    "How long are production backups kept?",
    "When do full database backups run?",
    "Where are backups stored and how are they encrypted?",
    "How often is a restore test run?",
    "What is the recovery time objective for the customer database?",
    "When does a new engineer join the on-call rotation?",
    "How quickly must the primary on-call engineer acknowledge a page?",
    "What do I need to do on my first day?",
    "When is production access granted to new engineers?",
    "How many approving reviews does a change need?",
    "What does SEV1 mean?",
    "How should an incident channel be named?",
    "When is the postmortem scheduled after an incident?",
    "How many requests per minute does the free tier allow?",
    "What happens when the API rate limit is exceeded?",
    "How can an enterprise customer get a higher rate limit?",
    "What is the limit for business travel expenses?",
    "How are expenses reimbursed?",
    "What does the security handbook say about passwords?",
    "How should a lost laptop be reported?",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    from evals.metrics import percentile  # the one `rag eval` reports latencies with

    return percentile(values, q)


def _latency(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "p50": round(_pct(ms, 50), 2),
        "p95": round(_pct(ms, 95), 2),
        "p99": round(_pct(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# -- the deployment ---------------------------------------------------------------------
def _rag_command() -> list[str]:
    script = Path(sys.executable).with_name("rag")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "app.cli"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(clients: int) -> dict[str, str]:
    from rag.config import ApiSettings

    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
            "RAG_EVALS__AFTER_SYNC": "false",
            "RAG_API__REQUESTS_PER_MINUTE": "100000000",
            "RAG_API__BURST": "1000000",
            "RAG_API__QUEUE": str(max(ApiSettings().queue, clients)),
            "RAG_API__SHUTDOWN_GRACE_SECONDS": "5",
            "RAG_GENERATION__CHAIN": json.dumps(["local"]),
        }
    )
    env.pop("RAG_CONFIG", None)
    env.pop("RAG_DATA_DIR", None)
    return env


def _run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        [*_rag_command(), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`rag {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


class Server:
    """``rag serve`` as a subprocess; ``stop`` sends SIGTERM, then SIGKILL past the timeout."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str], log_path: Path):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *_rag_command(),
                "--data-dir",
                str(data_dir),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--watch",
                str(DOCS),
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 300.0) -> float:
        import httpx

        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the server exited ({self.proc.returncode}) before it was ready:\n{self.log_tail()}"
                    )
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return time.perf_counter() - t0
                    last = f"{r.status_code} {r.text[:300]}"
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
        raise RuntimeError(
            f"the server was not ready within {timeout:.0f}s (last /readyz: {last}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        t0 = time.perf_counter()
        outcome = "already exited"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                outcome = "stopped on SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                outcome = f"killed after {timeout:.0f}s"
        self._log.close()
        return {
            "outcome": outcome,
            "returncode": self.proc.returncode,
            "seconds": round(time.perf_counter() - t0, 2),
        }


# -- the load generator -----------------------------------------------------------------
Check = Callable[[Any], str | None]


def _check_query(answers: bool) -> Check:
    def check(body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("citations"), list):
            return "not a query result"
        if not answers:
            return None if body["citations"] else "no passages retrieved"
        # A full answer: verification may abstain (no citations then), which is a valid answer.
        if not body.get("answer"):
            return "empty answer"
        if body.get("generator") != "local":
            return f"answered by {body.get('generator')!r}, not local"
        if body.get("degraded"):
            return "degraded answer"
        return None

    return check


def _check_health(body: Any) -> str | None:
    return None if isinstance(body, dict) and body.get("status") == "ok" else "not {status: ok}"


async def _load(
    base_url: str,
    method: str,
    path: str,
    *,
    total: int,
    clients: int,
    warmup: int,
    key: str | None,
    bodies: Callable[[int], dict[str, Any]] | None,
    check: Check,
    timeout: float,
) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    extra: dict[str, list[float]] = {
        "server_total_ms": [],
        "completion_tokens": [],
        "abstained": [],
    }
    next_i = 0

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=timeout
    ) as client:

        async def one(i: int) -> tuple[float, str | None]:
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, json=bodies(i) if bodies else None)
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    return ms, f"HTTP {r.status_code}: {r.text[:160]}"
                body = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                return (time.perf_counter() - t0) * 1000, f"{type(exc).__name__}: {str(exc)[:160]}"
            problem = check(body)
            if (
                problem is None
                and isinstance(body, dict)
                and isinstance(body.get("timings_ms"), dict)
            ):
                extra["server_total_ms"].append(float(body["timings_ms"].get("total") or 0.0))
                extra["completion_tokens"].append(
                    float((body.get("usage") or {}).get("completion_tokens") or 0)
                )
                extra["abstained"].append(1.0 if body.get("abstained") else 0.0)
            return ms, problem

        # Warm-up: opens the connections and touches every code path once; not counted.
        warm = await asyncio.gather(*(one(-1 - i) for i in range(warmup)))
        for _, problem in warm:
            if problem:
                errors[f"warm-up: {problem}"] += 1
        for values in extra.values():
            values.clear()

        async def worker() -> None:
            nonlocal next_i
            while next_i < total:
                i = next_i
                next_i += 1
                ms, problem = await one(i)
                if problem is None:
                    latencies.append(ms)
                else:
                    errors[problem] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0

    warm_errors = sum(n for k, n in errors.items() if k.startswith("warm-up: "))
    n_errors = sum(errors.values()) - warm_errors
    out: dict[str, Any] = {
        "requests": total,
        "clients": clients,
        "ok": len(latencies),
        "errors": n_errors,
        "seconds": round(wall, 3),
        "rps": round(total / wall, 1) if wall else 0.0,
        "latency_ms": _latency(latencies),
    }
    if errors:
        out["error_kinds"] = dict(errors.most_common(5))
    if extra["server_total_ms"]:
        out["server_pipeline_ms"] = _latency(extra["server_total_ms"])
    if any(extra["completion_tokens"]):
        out["completion_tokens_mean"] = round(statistics.fmean(extra["completion_tokens"]), 1)
        out["completion_tokens_per_s"] = (
            round(sum(extra["completion_tokens"]) / wall, 1) if wall else 0.0
        )
        out["abstained"] = int(sum(extra["abstained"]))
    return out


def _question_body(generate: bool, seed: int) -> Callable[[int], dict[str, Any]]:
    order = random.Random(seed).sample(range(len(QUESTIONS)), len(QUESTIONS))

    def body(i: int) -> dict[str, Any]:
        return {"question": QUESTIONS[order[i % len(order)]], "generate": generate}

    return body


def _describe(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"{name}: {r['rps']:.1f} req/s, p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"{r['errors']} errors ({r['requests']} requests, {r['clients']} clients, {r['seconds']:.1f} s)"
    )


# -- in-process baseline (a subprocess: the embedded store admits one process at a time) --
def inprocess_baseline(data_dir: Path, total: int, threads: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from rag.config import load_settings
    from rag.index import Index
    from rag.pipeline import QueryPipeline

    settings = load_settings(overrides={"data_dir": str(data_dir)})
    index = Index(settings)
    index.warm_up()
    index.open(create=False)
    try:
        pipeline = QueryPipeline(index, settings)
        filters = {"tenant": settings.tenant}  # what the API adds for a key of the default tenant
        for q in QUESTIONS:
            pipeline.run(q, filters=filters, generate=False)

        def one(i: int) -> float:
            t0 = time.perf_counter()
            result = pipeline.run(QUESTIONS[i % len(QUESTIONS)], filters=filters, generate=False)
            if not result["citations"]:
                raise RuntimeError(f"no citations for {QUESTIONS[i % len(QUESTIONS)]!r}")
            return (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        seq = [one(i) for i in range(total)]
        seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            par = list(pool.map(one, range(total)))
        par_s = time.perf_counter() - t0
    finally:
        index.close()
    return {
        "requests": total,
        "sequential": {"rps": round(total / seq_s, 1), "latency_ms": _latency(seq)},
        "threads": threads,
        "threaded": {"rps": round(total / par_s, 1), "latency_ms": _latency(par)},
    }


def _run_inprocess(data_dir: Path, total: int, threads: int, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--inprocess-baseline",
            str(data_dir),
            "--requests",
            str(total),
            "--clients",
            str(threads),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"the in-process baseline failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the run ------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--clients", type=int, default=32, help="concurrent clients, retrieval and /healthz phases"
    )
    ap.add_argument(
        "--requests", type=int, default=2000, help="requests in the retrieval (and /healthz) phase"
    )
    ap.add_argument(
        "--answer-requests", type=int, default=16, help="requests in the full-answer phase"
    )
    ap.add_argument(
        "--answer-clients", type=int, default=4, help="concurrent clients in the full-answer phase"
    )
    ap.add_argument("--skip-answers", action="store_true", help="leave out the full-answer phase")
    ap.add_argument(
        "--inprocess-requests",
        type=int,
        default=400,
        help="pipeline calls per in-process mode (0: skip)",
    )
    ap.add_argument("--warmup", type=int, default=8, help="uncounted requests before each phase")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON figures here")
    ap.add_argument("--inprocess-baseline", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.inprocess_baseline is not None:  # the child of _run_inprocess
        print(json.dumps(inprocess_baseline(args.inprocess_baseline, args.requests, args.clients)))
        return

    import httpx

    from rag.config import ApiSettings

    env = _server_env(max(args.clients, args.answer_clients))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {
            "clients": args.clients,
            "requests": args.requests,
            "answer_clients": args.answer_clients,
            "answer_requests": 0 if args.skip_answers else args.answer_requests,
            "generation_chain": ["local"],
            "api_concurrency": ApiSettings().concurrency,
            "api_queue": int(env["RAG_API__QUEUE"]),
        },
    }
    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        report = json.loads(
            _run_cli(["--data-dir", str(data_dir), "ingest", str(DOCS), "--json"], env)
        )
        results["index"] = {
            "files": report.get("ingested"),
            "chunks": report.get("embedded"),
            "failed": report.get("failed"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(
            f"index: {report.get('ingested')} files, {report.get('embedded')} chunks from {DOCS} into {data_dir}"
        )

        if args.inprocess_requests > 0:
            threads = ApiSettings().concurrency.get("retrieval", 4)
            log(
                f"in-process baseline: QueryPipeline.run(generate=False) x {args.inprocess_requests}, 1 and {threads} threads"
            )
            inproc = _run_inprocess(data_dir, args.inprocess_requests, threads, env)
            results["inprocess_pipeline"] = inproc
            log(
                f"in-process pipeline: {inproc['sequential']['rps']:.1f} calls/s sequential "
                f"(p50 {inproc['sequential']['latency_ms']['p50']:.1f} ms), "
                f"{inproc['threaded']['rps']:.1f} calls/s with {threads} threads"
            )

        key = _run_cli(
            [
                "--data-dir",
                str(data_dir),
                "keys",
                "create",
                "--tenant",
                "default",
                "--name",
                "load",
            ],
            env,
        )
        key = key.strip().splitlines()[0]
        port = args.port or _free_port()
        server = Server(data_dir, port, env, Path(tmp) / "server.log")
        try:
            ready_s = server.wait_ready()
            results["server"] = {"url": server.base_url, "ready_seconds": round(ready_s, 1)}
            log(f"server ready on {server.base_url} in {ready_s:.1f} s (pid {server.proc.pid})")
            # The watch daemon's initial sync of examples/docs (all unchanged) must not overlap the load.
            time.sleep(1.0)

            health = asyncio.run(
                _load(
                    server.base_url,
                    "GET",
                    "/healthz",
                    total=args.requests,
                    clients=args.clients,
                    warmup=args.warmup,
                    key=None,
                    bodies=None,
                    check=_check_health,
                    timeout=30.0,
                )
            )
            results["healthz"] = health
            log(_describe("baseline GET /healthz", health))

            retrieval = asyncio.run(
                _load(
                    server.base_url,
                    "POST",
                    "/v1/query",
                    total=args.requests,
                    clients=args.clients,
                    warmup=args.warmup,
                    key=key,
                    bodies=_question_body(False, 1),
                    check=_check_query(False),
                    timeout=60.0,
                )
            )
            retrieval["goal"] = f">= {GOAL_RPS:.0f} req/s with 0 errors"
            retrieval["meets_goal"] = retrieval["rps"] >= GOAL_RPS and retrieval["errors"] == 0
            retrieval["ratio_to_healthz"] = _ratio(retrieval["rps"], health["rps"])
            if "inprocess_pipeline" in results:
                inproc = results["inprocess_pipeline"]
                retrieval["ratio_to_inprocess_sequential"] = _ratio(
                    retrieval["rps"], inproc["sequential"]["rps"]
                )
                retrieval["ratio_to_inprocess_threaded"] = _ratio(
                    retrieval["rps"], inproc["threaded"]["rps"]
                )
            results["retrieval"] = retrieval
            log(_describe("POST /v1/query generate=false", retrieval))
            log(
                f"  goal {retrieval['goal']}: {'met' if retrieval['meets_goal'] else 'NOT met'}; "
                f"{retrieval['ratio_to_healthz']}x /healthz"
                + (
                    f", {retrieval['ratio_to_inprocess_sequential']}x in-process sequential, "
                    f"{retrieval['ratio_to_inprocess_threaded']}x in-process threaded"
                    if "ratio_to_inprocess_sequential" in retrieval
                    else ""
                )
            )

            if not args.skip_answers and args.answer_requests > 0:
                log(
                    f"full answers with the local generator: {args.answer_requests} requests, {args.answer_clients} clients"
                )
                answers = asyncio.run(
                    _load(
                        server.base_url,
                        "POST",
                        "/v1/query",
                        total=args.answer_requests,
                        clients=args.answer_clients,
                        warmup=min(args.warmup, 1),
                        key=key,
                        bodies=_question_body(True, 2),
                        check=_check_query(True),
                        timeout=900.0,
                    )
                )
                results["answers"] = answers
                log(_describe("POST /v1/query generate=true (local)", answers))

            with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
                metrics = client.get("/metrics").text
            results["server"]["metrics"] = {
                **_metric(metrics, "rag_rate_limited"),
                **_metric(metrics, "rag_backend_rejected"),
            }
        finally:
            stopped = server.stop()
            results.setdefault("server", {})["stop"] = stopped
            log(f"server {stopped['outcome']} in {stopped['seconds']:.1f} s")
            if stopped["outcome"] != "stopped on SIGTERM" or "Traceback" in server.log_tail(20000):
                log(f"server log (tail):\n{server.log_tail()}")

    text = json.dumps(results, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")


def _metric(text: str, needle: str) -> dict[str, float]:
    """Samples of the Prometheus metrics whose name contains ``needle`` (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or needle not in line.split(" ")[0]:
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


if __name__ == "__main__":
    main()
