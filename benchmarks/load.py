"""API load benchmark: N concurrent clients against ``POST /v1/query`` on loopback, all figures from one run.

    .venv/bin/python benchmarks/load.py [--clients 32] [--requests 2000] [--answer-requests 16]
        [--answer-clients 4] [--skip-answers] [--inprocess-requests 400] [--port P]
        [--json-out FILE] [--smoke] [--report-only]

Goal: retrieval only (``generate: false``) sustains >= 100 successful req/s with 0 errors on
a 2-core machine. Checks (enforced in ``--smoke`` runs too): no phase has an error, and the
questions almost never repeat (repeat rate <= 1%). Exit status 1 when a goal or check is
missed; ``--report-only`` reports without failing, ``--smoke`` (tiny sizes, the test suite)
enforces only the checks.

The script builds its own deployment: ``rag ingest examples/docs`` into a temp data dir, a key
from ``rag keys create``, then ``rag serve --watch examples/docs`` as a subprocess on a free
loopback port (so the load generator does not share the server's GIL), and waits for
``GET /readyz``. Rate limits are raised out of the way (``RAG_API__REQUESTS_PER_MINUTE``,
``RAG_API__BURST``), ``api.queue`` is raised to at least the number of clients, evals after
sync are off, and ``generation.chain`` is ``[local]`` (SmolLM2 via llama.cpp, no fallback, so a
failing generator shows up as errors). Concurrency gates keep their defaults.

Each phase: a fixed number of asyncio workers sharing one ``httpx.AsyncClient`` (a keep-alive
connection per worker) send requests back to back after a few uncounted warm-up requests;
reported are the successful requests per second (``rps``: requests that failed are not
throughput; ``attempted_rps`` counts every request), p50/p95/p99/max latency of the successful
requests, the server's own pipeline time (``timings_ms.total``) and, separately, the errors
(non-200s, transport errors, a query with no passages retrieved, an answer that is empty,
degraded or not from ``local``; an answer that verification turns into an abstention is valid
and counted under ``abstained``), with their rate. Every request asks a different question:
20 hand-written ones about examples/docs in reworded variants, and questions templated from
the phrases of examples/docs (its parsed text), drawn without replacement, so a cache keyed
by the question (query embedding, tokens, sentences) would rarely hit; the repeat rate of
each phase is in the output (``questions.repeat_rate``).

1. baseline: the same clients against ``GET /healthz`` (pure HTTP + framework + load
   generator cost on this machine), and the in-process ``QueryPipeline.run(q, generate=False)``
   throughput (one caller, and as many threads as ``api.concurrency.retrieval``) measured in a
   subprocess before the server starts (the embedded store admits one process at a time).
2. retrieval only: ``{"question": ..., "generate": false}`` (goal: >= 100 successful req/s
   with 0 errors on a 2-core machine), quoted as a ratio of both baselines.
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

from benchmarks._common import Goal, add_goal_arguments, finish  # noqa: E402

DOCS = ROOT / "examples" / "docs"
GOAL_RPS = 100.0
MAX_REPEAT_RATE = 0.01

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


# Rewordings of the hand-written questions (the first letter is lowered after a prefix).
PREFIXES = [
    "",
    "Quick question: ",
    "According to the docs, ",
    "Remind me, ",
    "In our documentation, ",
    "For the platform team: ",
    "I'm new here. ",
    "Sorry to ask again, ",
    "Can you check: ",
    "From the handbook, ",
]
SUFFIXES = [
    "",
    " Thanks.",
    " Please cite the source.",
    " (asking for a colleague)",
    " I couldn't find it.",
    " Short answer please.",
    " Is that still current?",
    " Any exceptions?",
]
# Templates over phrases of examples/docs: one phrase, or two.
ONE_PHRASE = [
    "What does the documentation say about {a}?",
    "How is {a} handled?",
    "Who is responsible for {a}?",
    "When does {a} apply?",
    "Where can I find details on {a}?",
    "What are the rules for {a}?",
    "Is there a policy on {a}?",
    "Explain {a} briefly.",
    "What should I know about {a}?",
    "Which team owns {a}?",
]
TWO_PHRASES = [
    "How does {a} relate to {b}?",
    "What are the rules for {a} and {b}?",
    "Is {a} required for {b}?",
    "Explain {a} in the context of {b}.",
    "Does {a} change anything about {b}?",
    "What is the difference between {a} and {b}?",
]
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "by",
        "with",
        "from",
        "at",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "each",
        "every",
        "any",
        "all",
        "no",
        "not",
        "can",
        "must",
        "should",
        "will",
        "may",
        "might",
        "after",
        "before",
        "within",
        "over",
        "under",
        "into",
        "than",
        "then",
        "when",
        "where",
        "what",
        "which",
        "who",
        "how",
        "our",
        "your",
        "their",
        "we",
        "you",
        "they",
        "i",
        "my",
        "me",
        "more",
        "most",
        "only",
        "also",
        "per",
        "up",
        "out",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "first",
        "day",
        "days",
        "have",
        "has",
        "had",
        "do",
        "does",
        "done",
        "use",
        "used",
        "using",
        "such",
        "other",
        "new",
        "see",
        "get",
        "gets",
        "there",
        "here",
        "so",
        "if",
    ]
)


def doc_phrases(folder: Path = DOCS) -> list[str]:
    """Content words and two-word phrases of the documents' parsed text, sorted."""
    import re

    from rag.indexing.parsing import parse_bytes

    phrases: set[str] = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = parse_bytes(path.read_bytes(), path.suffix, path.name).text
        except Exception:  # noqa: BLE001 - a file the parser refuses only adds no phrases
            continue
        for sentence in re.split(r"[.!?;:\n]+", text):
            words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]*[A-Za-z]", sentence)]
            for i, w in enumerate(words):
                if len(w) < 4 or w in _STOP:
                    continue
                phrases.add(w)
                nxt = words[i + 1] if i + 1 < len(words) else ""
                if len(nxt) >= 3 and nxt not in _STOP:
                    phrases.add(f"{w} {nxt}")
    return sorted(phrases)


def make_questions(n: int, seed: int, phrases: list[str] | None = None) -> list[str]:
    """``n`` questions, distinct while the space lasts (then cycled: see ``repeat_rate``).

    A quarter are the hand-written questions reworded (prefix x suffix: 1,600 variants), the
    rest templated from ``phrases`` (one or two of them: tens of thousands of combinations).
    """
    phrases = phrases if phrases is not None else doc_phrases()
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < 50 * n + 1000:
        attempts += 1
        r = rng.random()
        if r < 0.25 or len(phrases) < 2:
            prefix, base = rng.choice(PREFIXES), rng.choice(QUESTIONS)
            q = prefix + (base[0].lower() + base[1:] if prefix else base) + rng.choice(SUFFIXES)
        elif r < 0.6:
            q = rng.choice(ONE_PHRASE).format(a=rng.choice(phrases))
        else:
            a, b = rng.sample(phrases, 2)
            q = rng.choice(TWO_PHRASES).format(a=a, b=b)
        if q not in seen:
            seen.add(q)
            out.append(q)
    for i in range(n - len(out)):  # the space ran out: repeats, counted by repeat_rate
        out.append(out[i % len(out)])
    return out


def repeat_rate(questions: list[str]) -> float:
    """Share of the requests whose question an earlier request of the phase already asked."""
    return round(1 - len(set(questions)) / len(questions), 4) if questions else 0.0


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
    from rag.core.config import ApiSettings

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
        "error_rate": round(n_errors / total, 4) if total else 0.0,
        "seconds": round(wall, 3),
        # Throughput counts the successful requests only; a fast failure is not served load.
        "rps": round(len(latencies) / wall, 1) if wall else 0.0,
        "attempted_rps": round(total / wall, 1) if wall else 0.0,
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


def _question_body(
    generate: bool, total: int, warmup: int, seed: int
) -> tuple[Callable[[int], dict[str, Any]], dict[str, Any]]:
    """Request bodies (warm-up requests ``-1..-warmup`` get their own questions) and the
    phase's question statistics."""
    questions = make_questions(warmup + total, seed)
    measured = questions[warmup:]

    def body(i: int) -> dict[str, Any]:
        q = questions[-1 - i] if i < 0 else questions[warmup + i]
        return {"question": q, "generate": generate}

    stats = {
        "requests": len(measured),
        "distinct": len(set(measured)),
        "repeat_rate": repeat_rate(measured),
        "source": "hand-written questions reworded + templates over examples/docs phrases",
    }
    return body, stats


def _describe(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    repeats = r.get("questions", {}).get("repeat_rate")
    return (
        f"{name}: {r['rps']:.1f} successful req/s, p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"{r['errors']} errors ({r['requests']} requests, {r['clients']} clients, {r['seconds']:.1f} s"
        + (f", question repeat rate {repeats:.2%})" if repeats is not None else ")")
    )


# -- in-process baseline (a subprocess: the embedded store admits one process at a time) --
def inprocess_baseline(data_dir: Path, total: int, threads: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from rag.core.config import load_settings
    from rag.core.types import Query
    from rag.indexing.index import Index
    from rag.query.pipeline import QueryPipeline

    settings = load_settings(overrides={"data_dir": str(data_dir)})
    index = Index(settings)
    index.warm_up()
    index.open(create=False)
    # Distinct questions: warm-up, then the sequential calls, then the threaded ones.
    warm = len(QUESTIONS)
    questions = make_questions(warm + 2 * total, seed=3)
    try:
        pipeline = QueryPipeline(index, settings)
        # No filters: the retriever scopes every search to the deployment's tenant itself, as
        # the API does for a key of the default tenant.
        for q in questions[:warm]:
            pipeline.run(Query(q, generate=False))

        def one(i: int) -> float:
            q = questions[warm + i]
            t0 = time.perf_counter()
            answer = pipeline.run(Query(q, generate=False))
            if not answer.citations:
                raise RuntimeError(f"no citations for {q!r}")
            return (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        seq = [one(i) for i in range(total)]
        seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            par = list(pool.map(one, range(total, 2 * total)))
        par_s = time.perf_counter() - t0
    finally:
        index.close()
    return {
        "requests": total,
        "questions": {
            "distinct": len(set(questions[warm:])),
            "repeat_rate": repeat_rate(questions[warm:]),
        },
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
def main() -> int:
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
    add_goal_arguments(ap)
    args = ap.parse_args()

    if args.inprocess_baseline is not None:  # the child of _run_inprocess
        print(json.dumps(inprocess_baseline(args.inprocess_baseline, args.requests, args.clients)))
        return 0

    import httpx

    from rag.core.config import ApiSettings

    env = _server_env(max(args.clients, args.answer_clients))
    results: dict[str, Any] = {
        "goal": f"retrieval only >= {GOAL_RPS:.0f} successful req/s with 0 errors; no errors "
        f"in any phase; question repeat rate <= {MAX_REPEAT_RATE:.0%}",
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

            bodies, questions = _question_body(False, args.requests, args.warmup, seed=1)
            retrieval = asyncio.run(
                _load(
                    server.base_url,
                    "POST",
                    "/v1/query",
                    total=args.requests,
                    clients=args.clients,
                    warmup=args.warmup,
                    key=key,
                    bodies=bodies,
                    check=_check_query(False),
                    timeout=60.0,
                )
            )
            retrieval["questions"] = questions
            retrieval["goal"] = f">= {GOAL_RPS:.0f} successful req/s with 0 errors"
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
                warm = min(args.warmup, 1)
                bodies, questions = _question_body(True, args.answer_requests, warm, seed=2)
                answers = asyncio.run(
                    _load(
                        server.base_url,
                        "POST",
                        "/v1/query",
                        total=args.answer_requests,
                        clients=args.answer_clients,
                        warmup=warm,
                        key=key,
                        bodies=bodies,
                        check=_check_query(True),
                        timeout=900.0,
                    )
                )
                answers["questions"] = questions
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

    return finish(results, _goals(results), args, args.json_out)


def _goals(results: dict[str, Any]) -> list[Goal]:
    retrieval = results["retrieval"]
    goals = [
        Goal(
            "retrieval-only throughput",
            f">= {GOAL_RPS:.0f} successful req/s with 0 errors",
            retrieval["rps"],
            bool(retrieval["meets_goal"]),
        ),
        Goal(
            "index built",
            "every file ingested, none failed",
            {"files": results["index"]["files"], "failed": results["index"]["failed"]},
            bool(results["index"]["files"]) and not results["index"]["failed"],
            check=True,
        ),
    ]
    phases = ["healthz", "retrieval", "answers"]
    for phase in (p for p in phases if p in results):
        r = results[phase]
        goals.append(
            Goal(
                f"{phase} phase without errors",
                "0 errors, every request answered",
                {"ok": r["ok"], "errors": r["errors"], "kinds": r.get("error_kinds", {})},
                r["errors"] == 0 and r["ok"] == r["requests"],
                check=True,
            )
        )
        if "questions" in r:
            rate = r["questions"]["repeat_rate"]
            goals.append(
                Goal(
                    f"{phase} questions distinct",
                    f"repeat rate <= {MAX_REPEAT_RATE:.0%}",
                    rate,
                    rate <= MAX_REPEAT_RATE,
                    check=True,
                )
            )
    return goals


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
    raise SystemExit(main())
