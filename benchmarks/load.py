"""API throughput under load: wrk against a real ``rag serve`` over SciFact documents, beside
the raw in-process calls (embed + search, no API), all in one run.

    .venv/bin/python benchmarks/load.py [CORPUS_DIR] [--docs 300] [--connections 32]
        [--threads 2] [--duration 20] [--answer-duration 20] [--warmup 3] [--rounds 1]
        [--raw-requests 400] [--skip-answers] [--processes N] [--compare-tree DIR] [--env K=V]
        [--compare-env K=V] [--compare-own-index] [--flamegraphs DIR
        --py-spy PATH] [--json-out FILE] [--smoke] [--report-only]

``CORPUS_DIR``: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/); default
``../shared/datasets/scifact``. Needs ``wrk`` on the PATH (``apt-get install wrk``).

Goals (32 connections, 300 documents, answer cache and rate limits off, the default
generation chain): retrieval only (``generate: false``) >= 300 successful req/s with p99 <=
250 ms; full answers >= 150 successful req/s with p99 <= 500 ms; 0 errors in every phase.
Checks (enforced in ``--smoke`` runs too): every document ingested, no errors, the questions
do not repeat (repeat rate <= 1 %). Exit 1 when a goal or check is missed; ``--report-only``
reports without failing; ``--smoke`` (tiny sizes, the test suite) enforces only the checks.

What it does:

1. The first ``--docs`` documents of the corpus, those the queries' qrels name first, are
   written as Markdown files (``# title`` + abstract) and ``rag ingest``-ed into a temp data
   dir; a key from ``rag keys create``.
2. Raw baseline, in a subprocess before any server starts (the embedded store admits one
   process at a time): ``Retriever.run`` (the query embedding + the dense and BM25 searches +
   fusion) one caller at a time and from ``--connections`` threads, then the pipeline
   (``QueryPipeline.run``) retrieval-only and full answers from threads as wide as the API's
   gates (``api.concurrency``).
3. ``rag serve --watch DOCS`` as a subprocess (answer cache off, rate limits out of the way,
   ``api.queue`` >= connections, evals after sync off, ``generation.chain`` left at its
   default), ready on ``/readyz``. Phases, each after an uncounted ``--warmup``-second wrk run
   of its own questions: ``GET /healthz`` (HTTP + framework + load generator), retrieval only,
   full answers. wrk (``benchmarks/load.lua``) sends every request a different question
   (SciFact's claims reworded with prefixes and suffixes: 57,600 variants), checks each
   response (200, passages retrieved; an answer non-empty and not degraded) and reports
   latency percentiles; errors are the checked failures plus socket errors and timeouts.
4. ``--processes N`` also serves from N processes of this tree at once, each over its own
   copy of the index (an edge shard opens in one process only), wrk's connections split
   between them; req/s summed, latency percentiles the worst process's. ``--compare-tree DIR`` runs a second server from another checkout (``git worktree add
   /tmp/base main``) over a copy of the same data dir, and interleaves the phases (this tree,
   that tree, per phase and round), so load from elsewhere on the machine falls on both:
   ``ratio_to_compare`` is this tree's req/s over that one's. ``--env KEY=VALUE`` and
   ``--compare-env`` set a server's environment (a setting on one side only: the same
   checkout as both trees compares a setting); ``--compare-own-index`` has the other side
   ingest its own index with its environment (a setting the index's identity locks, such as
   ``RAG_EMBEDDING__DOCUMENT_PRECISION=int8``).
5. ``--flamegraphs DIR --py-spy PATH``: after the measured phases, py-spy records this
   tree's server for one more run of each phase (not counted) into
   ``DIR/flame-retrieval.svg`` and ``DIR/flame-answers.svg``.

Load generator and server share the machine: on 2 cores wrk takes CPU the server would
have had (the /healthz phase shows the ceiling). Human-readable lines go to stderr; the
figures are printed as JSON on stdout at the end (and to ``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish  # noqa: E402
from benchmarks._server import RagServer, run_cli, serve_env  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "datasets" / "scifact"
LUA = Path(__file__).with_name("load.lua")
GOAL_RETRIEVAL_RPS, GOAL_RETRIEVAL_P99_MS = 300.0, 250.0
GOAL_ANSWER_RPS, GOAL_ANSWER_P99_MS = 150.0, 500.0
MAX_REPEAT_RATE = 0.01

# Rewordings of each claim: 16 x 12 = 192 variants of each (SciFact: 300 claims).
PREFIXES = [
    "",
    "Quick question: ",
    "According to the literature, ",
    "Remind me, ",
    "In the papers, ",
    "For a review: ",
    "I'm new to this field. ",
    "Sorry to ask again, ",
    "Can you check: ",
    "From the abstracts, ",
    "Is it true that ",
    "Some say ",
    "My colleague claims ",
    "Please verify: ",
    "What do the studies say? ",
    "Fact check: ",
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
    " Is there evidence?",
    " Which study shows it?",
    " True or false?",
    " Explain briefly.",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# -- the corpus and the questions ---------------------------------------------------------
def pick_documents(corpus_dir: Path, n: int) -> list[dict[str, Any]]:
    """``n`` documents: those the qrels name (in qrels order) first, then corpus order."""
    corpus = _read_jsonl(corpus_dir / "corpus.jsonl")
    by_id = {str(d["_id"]): d for d in corpus}
    wanted: list[str] = []
    for qrels in sorted((corpus_dir / "qrels").glob("*.tsv")):
        for line in qrels.read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in by_id and parts[1] not in wanted:
                wanted.append(parts[1])
    wanted += [str(d["_id"]) for d in corpus if str(d["_id"]) not in wanted]
    return [by_id[i] for i in wanted[:n]]


def write_documents(docs: list[dict[str, Any]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        title = " ".join(str(d.get("title") or d["_id"]).split())
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(d["_id"]))
        (folder / f"{name}.md").write_text(f"# {title}\n\n{d['text']}\n", encoding="utf-8")


def make_questions(corpus_dir: Path, seed: int = 7) -> list[str]:
    """Every claim of queries.jsonl in every rewording, shuffled: distinct questions."""
    claims = [" ".join(str(q["text"]).split()) for q in _read_jsonl(corpus_dir / "queries.jsonl")]
    out: list[str] = []
    for prefix in PREFIXES:
        for suffix in SUFFIXES:
            for claim in claims:
                if not claim:
                    continue
                text = prefix + (claim[0].lower() + claim[1:] if prefix else claim)
                out.append(text + suffix)
    out = list(dict.fromkeys(out))
    random.Random(seed).shuffle(out)
    return out


class Questions:
    """Hands out disjoint slices of the question list; each slice is written as wrk bodies."""

    def __init__(self, questions: list[str], folder: Path):
        self.questions = questions
        self.folder = folder
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> list[str]:
        n = max(1, n)
        with self._lock:
            out = [self.questions[(self.used + i) % len(self.questions)] for i in range(n)]
            self.used += n
        return out

    def bodies(self, name: str, questions: list[str], generate: bool) -> Path:
        path = self.folder / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"question": q, "generate": generate}) + "\n" for q in questions),
            encoding="utf-8",
        )
        return path


# -- the deployment ---------------------------------------------------------------------
# -- wrk ----------------------------------------------------------------------------------
def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    check: str,
    bodies: Path | None,
    key: str | None,
    scratch: Path,
) -> dict[str, Any]:
    """One wrk run; its figures (``load.lua``'s ``done``) with successful req/s and errors."""
    out = scratch / f"wrk-{time.monotonic_ns()}.json"
    env = dict(os.environ)
    env.update(
        {
            "LOAD_BODIES": str(bodies or ""),
            "LOAD_THREADS": str(threads),
            "LOAD_CHECK": check,
            "LOAD_OUT": str(out),
            "LOAD_KEY": key or "",
        }
    )
    cmd = [
        *("wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s"),
        *("--timeout", "30s", "-s", str(LUA), url),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}{proc.stdout}")
    raw: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    wall = raw["duration_us"] / 1e6
    socket_errors = sum(raw["socket_errors"].values())
    errors = raw["checked_errors"] + socket_errors
    ok = max(0, raw["requests"] - raw["checked_errors"])
    kinds = dict(raw["error_kinds"])
    for name, n in raw["socket_errors"].items():
        if n:
            kinds[f"socket {name}"] = n
    lat = {k: round(v / 1000.0, 2) for k, v in raw["latency_us"].items()}
    return {
        "requests": raw["requests"],
        "connections": connections,
        "ok": ok,
        "errors": errors,
        "error_rate": round(errors / raw["requests"], 4) if raw["requests"] else 0.0,
        "error_kinds": kinds,
        "seconds": round(wall, 2),
        # Throughput counts the successful requests; a fast failure is not served load.
        "rps": round(ok / wall, 1) if wall else 0.0,
        "latency_ms": lat,
        "sent": raw["sent"],
    }


def _describe(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"{name}: {r['rps']:.1f} req/s, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"{r['errors']} errors ({r['requests']} requests, {r['connections']} connections, "
        f"{r['seconds']:.0f} s, question repeat rate {r.get('repeat_rate', 0):.2%})"
    )


# -- the raw baseline (a subprocess: the embedded store admits one process at a time) -------
def _timed(fn: Any, items: list[str], threads: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    lat: list[float] = []
    lock = threading.Lock()

    def one(q: str) -> None:
        t0 = time.perf_counter()
        fn(q)
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            lat.append(ms)

    t0 = time.perf_counter()
    if threads <= 1:
        for q in items:
            one(q)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, items))
    wall = time.perf_counter() - t0
    from evals.metrics import percentile

    return {
        "calls": len(items),
        "threads": threads,
        "rps": round(len(items) / wall, 1),
        "latency_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p99": round(percentile(lat, 99), 2),
        },
    }


def raw_baseline(
    data_dir: Path, questions: list[str], threads: int, answers: bool
) -> dict[str, Any]:
    from rag.core.config import ApiSettings, load_settings
    from rag.core.types import Query
    from rag.indexing.index import Index
    from rag.query.pipeline import QueryPipeline
    from rag.query.retrieve import Retriever

    settings = load_settings(overrides={"data_dir": str(data_dir)})
    index = Index(settings)
    index.warm_up()
    index.open(create=False)
    gates = ApiSettings().concurrency
    chain = settings.generation.chain
    n = len(questions) // 5
    parts = [questions[i * n : (i + 1) * n] for i in range(5)]
    out: dict[str, Any] = {}
    try:
        retriever = Retriever(index, settings.retrieval)
        pipeline = QueryPipeline(index, settings)
        pipeline.warm_up()
        for q in questions[-8:]:  # warm: every code path once
            retriever.run(q)
            pipeline.run(Query(q, generate=True))

        def search(q: str) -> None:
            if not retriever.run(q, top_k=settings.retrieval.top_k):
                raise RuntimeError(f"nothing retrieved for {q!r}")

        out["embed_search_sequential"] = _timed(search, parts[0], 1)
        out["embed_search_threaded"] = _timed(search, parts[1], threads)
        out["pipeline_retrieval_threaded"] = _timed(
            lambda q: pipeline.run(Query(q, generate=False)),
            parts[2],
            gates.get("retrieval", threads),
        )
        if answers:
            out["pipeline_answers_threaded"] = _timed(
                lambda q: pipeline.run(Query(q, generate=True)),
                parts[3],
                gates.get(chain[0] if chain else "retrieval", 4),
            )
    finally:
        pipeline.close()
        index.close()
    return out


def _run_raw(
    data_dir: Path, questions: list[str], threads: int, answers: bool, env: dict[str, str]
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(questions, f)
    cmd = [sys.executable, __file__, "--raw-baseline", str(data_dir), "--raw-questions", f.name]
    cmd += ["--connections", str(threads)] + ([] if answers else ["--skip-answers"])
    proc = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    Path(f.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the raw baseline failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the run ------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _phase(
    name: str,
    server: RagServer,
    questions: Questions,
    args: argparse.Namespace,
    key: str,
    scratch: Path,
    expected_rps: float,
    fixed: list[str] | None = None,
    connections: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Warm-up, then the measured wrk run of ``name`` (healthz | retrieval | answers)."""
    connections = connections or args.connections
    generate = name == "answers"
    seconds = args.answer_duration if generate else args.duration
    if name == "healthz":  # the framework's ceiling: a few seconds tell it
        seconds = min(seconds, 5.0)
    check = {"healthz": "health", "retrieval": "retrieval", "answers": "answer"}[name]
    path = "/healthz" if name == "healthz" else "/v1/query"
    url = server.url + path

    def bodies(tag: str, n: int, given: list[str] | None = None) -> tuple[Path | None, list[str]]:
        if name == "healthz":
            return None, []
        qs = given if given is not None else questions.take(n)
        return questions.bodies(tag, qs, generate), qs

    # Enough distinct questions for twice the expected rate (wrk wraps around past the end).
    want = int(max(expected_rps, 50.0) * 2 * seconds) + 100
    warm_path, _ = bodies(f"{name}-warm-{server.port}", int(want * args.warmup / seconds) + 50)
    if args.warmup > 0:
        wrk(
            url,
            seconds=args.warmup,
            connections=connections,
            threads=args.threads,
            check=check,
            bodies=warm_path,
            key=key,
            scratch=scratch,
        )
    path_bodies, qs = bodies(f"{name}-{server.port}-{time.monotonic_ns()}", want, fixed)
    result = wrk(
        url,
        seconds=seconds,
        connections=connections,
        threads=args.threads,
        check=check,
        bodies=path_bodies,
        key=key if name != "healthz" else None,
        scratch=scratch,
    )
    if qs:
        result["distinct_questions"] = len(qs)
        result["repeat_rate"] = round(max(0, result["sent"] - len(qs)) / max(1, result["sent"]), 4)
    return result, qs


MULTI = "processes"


def _at_once(
    name: str,
    group: list[RagServer],
    questions: Questions,
    args: argparse.Namespace,
    key: str,
    scratch: Path,
    expected_rps: float,
) -> dict[str, Any]:
    """``name`` against every server of ``group`` at once (connections split between them):
    req/s and errors summed, latency percentiles the worst process's (an upper bound)."""
    from concurrent.futures import ThreadPoolExecutor

    share = max(1, args.connections // len(group))
    with ThreadPoolExecutor(len(group)) as pool:
        runs = list(
            pool.map(
                lambda server: _phase(
                    name,
                    server,
                    questions,
                    args,
                    key,
                    scratch,
                    expected_rps / len(group),
                    connections=share,
                )[0],
                group,
            )
        )
    merged: dict[str, Any] = {
        "requests": sum(r["requests"] for r in runs),
        "connections": share * len(group),
        "ok": sum(r["ok"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": {k: v for r in runs for k, v in r["error_kinds"].items()},
        "seconds": max(r["seconds"] for r in runs),
        "rps": round(sum(r["rps"] for r in runs), 1),
        "latency_ms": {k: max(r["latency_ms"][k] for r in runs) for k in runs[0]["latency_ms"]},
        "processes": len(group),
        "per_process_rps": [r["rps"] for r in runs],
    }
    if any("repeat_rate" in r for r in runs):
        merged["repeat_rate"] = max(r.get("repeat_rate", 0.0) for r in runs)
    return merged


def _flamegraph(
    name: str,
    server: RagServer,
    questions: Questions,
    args: argparse.Namespace,
    key: str,
    scratch: Path,
) -> str:
    """py-spy records the server while one more (uncounted) wrk run of ``name`` goes on."""
    args.flamegraphs.mkdir(parents=True, exist_ok=True)
    svg = args.flamegraphs / f"flame-{name}.svg"
    seconds = args.answer_duration if name == "answers" else args.duration
    spy = subprocess.Popen(
        [
            *(str(args.py_spy), "record", "-p", str(server.proc.pid), "-o", str(svg)),
            *("-d", str(max(2, round(seconds))), "-r", "50", "--nonblocking", "-f", "flamegraph"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)  # py-spy attached
    _phase(name, server, questions, args, key, scratch, 200.0)
    out, _ = spy.communicate(timeout=120)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {out[-2000:]}")
    return str(svg)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=300, help="documents of the corpus to index")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per retrieval phase")
    ap.add_argument("--answer-duration", type=float, default=20.0, help="seconds per answer phase")
    ap.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds before each phase")
    ap.add_argument("--rounds", type=int, default=1, help="measured runs of each phase")
    ap.add_argument("--raw-requests", type=int, default=400, help="calls per raw mode (0: skip)")
    ap.add_argument("--skip-answers", action="store_true", help="leave out full answers")
    ap.add_argument(
        "--processes",
        type=int,
        default=1,
        help="also serve from N processes of this tree at once, each over its own index copy",
    )
    ap.add_argument(
        "--compare-tree", type=Path, default=None, help="another checkout served beside this one"
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment setting for this tree's servers (RAG_SECTION__KEY=...), repeatable",
    )
    ap.add_argument(
        "--compare-own-index",
        action="store_true",
        help="the compare side ingests its own index (with --compare-env) instead of a copy: "
        "for settings the index's identity locks, e.g. RAG_EMBEDDING__DOCUMENT_PRECISION",
    )
    ap.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the same for the compare tree's server",
    )
    ap.add_argument("--flamegraphs", type=Path, default=None, help="folder for py-spy SVGs")
    ap.add_argument("--py-spy", type=Path, default=Path("py-spy"), help="the py-spy executable")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--raw-baseline", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--raw-questions", type=Path, default=None, help=argparse.SUPPRESS)
    add_goal_arguments(ap)
    args = ap.parse_args()

    if args.raw_baseline is not None:  # the child of _run_raw
        qs = json.loads(args.raw_questions.read_text(encoding="utf-8"))
        res = raw_baseline(args.raw_baseline, qs, args.connections, not args.skip_answers)
        print(json.dumps(res))
        return 0

    if shutil.which("wrk") is None:
        log("wrk is not installed: `apt-get install wrk` (or build it from github.com/wg/wrk)")
        return 2
    corpus = args.corpus.resolve()
    if not (corpus / "corpus.jsonl").is_file():
        log(f"{corpus} has no corpus.jsonl: give a BEIR folder (e.g. ../shared/datasets/scifact)")
        return 2
    trees = {"this": ROOT}
    if args.compare_tree is not None:
        trees["compare"] = args.compare_tree.resolve()
    from rag.core.config import ApiSettings

    queue = max(ApiSettings().queue, 2 * args.connections)
    env = {name: serve_env(tree, queue=queue) for name, tree in trees.items()}
    for name, pairs in (("this", args.env), ("compare", args.compare_env)):
        for pair in pairs if name in env else []:
            k, sep, v = pair.partition("=")
            if not sep:
                log(f"--env {pair}: give KEY=VALUE")
                return 2
            env[name][k] = v
    from rag.core.config import Settings

    results: dict[str, Any] = {
        "goal": f"retrieval only >= {GOAL_RETRIEVAL_RPS:.0f} req/s, p99 <= "
        f"{GOAL_RETRIEVAL_P99_MS:.0f} ms; full answers >= {GOAL_ANSWER_RPS:.0f} req/s, p99 <= "
        f"{GOAL_ANSWER_P99_MS:.0f} ms; 0 errors; question repeat rate <= {MAX_REPEAT_RATE:.0%}",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {
            "corpus": str(corpus),
            "docs": args.docs,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "duration_s": args.duration,
            "answer_duration_s": args.answer_duration,
            "rounds": args.rounds,
            "generation_chain": Settings().generation.chain,
            "answer_cache": False,
            "api_queue": int(env["this"]["RAG_API__QUEUE"]),
            "trees": {k: str(v) for k, v in trees.items()},
            "env": {"this": args.env, "compare": args.compare_env},
        },
    }
    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp_name:
        tmp = Path(tmp_name)
        docs_dir, data = tmp / "docs", tmp / "data-this"
        docs = pick_documents(corpus, args.docs)
        write_documents(docs, docs_dir)
        questions = Questions(make_questions(corpus), tmp)
        t0 = time.perf_counter()
        report = json.loads(
            run_cli(ROOT, ["--data-dir", str(data), "ingest", str(docs_dir), "--json"], env["this"])
        )
        results["index"] = {
            "documents": len(docs),
            "files": report.get("ingested"),
            "chunks": report.get("embedded"),
            "failed": report.get("failed"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"index: {report.get('ingested')} files, {report.get('embedded')} chunks in {data}")
        key_args = ["--data-dir", str(data), "keys", "create", "--tenant", "default"]
        key = run_cli(ROOT, [*key_args, "--name", "load"], env["this"]).strip().splitlines()[0]

        if args.raw_requests > 0:
            log(f"raw baseline: {args.raw_requests} calls per mode, in-process")
            raw = _run_raw(
                data,
                questions.take(5 * args.raw_requests),
                args.connections,
                not args.skip_answers,
                env["this"],
            )
            results["raw"] = raw
            for mode, r in raw.items():
                log(
                    f"  {mode}: {r['rps']:.1f} calls/s ({r['threads']} threads), p50 {r['latency_ms']['p50']:.1f} ms"
                )

        data_dirs = {"this": data}
        if "compare" in trees and args.compare_own_index:
            # A setting the index's identity locks (embedding.document_precision): the other
            # side builds its own index from the same files, with its own environment.
            data_dirs["compare"] = tmp / "data-compare"
            run_cli(
                trees["compare"],
                ["--data-dir", str(data_dirs["compare"]), "ingest", str(docs_dir), "--json"],
                env["compare"],
            )
            shutil.copy2(data / "keys.json", data_dirs["compare"] / "keys.json")
        elif "compare" in trees:  # the same index, key and models, before any server opens it
            data_dirs["compare"] = tmp / "data-compare"
            shutil.copytree(data, data_dirs["compare"], symlinks=True)
        # More processes of this tree: each its own copy of the index (an edge shard opens in
        # one process only), wrk's connections split between them, run at once.
        extra = [f"process-{i + 2}" for i in range(max(0, args.processes - 1))]
        for name in extra:
            data_dirs[name] = tmp / f"data-{name}"
            shutil.copytree(data, data_dirs[name], symlinks=True)
            trees[name], env[name] = ROOT, env["this"]
        servers: dict[str, RagServer] = {}
        phases = ["healthz", "retrieval"] + ([] if args.skip_answers else ["answers"])
        kinds = [t for t in trees if t not in extra] + ([MULTI] if extra else [])
        measured: dict[str, dict[str, list[dict[str, Any]]]] = {
            t: {p: [] for p in phases} for t in kinds
        }
        expected = {"healthz": 1000.0, "retrieval": 400.0, "answers": 200.0}
        try:
            for t, tree in trees.items():
                servers[t] = RagServer(
                    tree,
                    data_dirs[t],
                    env[t],
                    tmp / f"server-{t}.log",
                    name=f"server {t}",
                    serve_args=("--watch", str(docs_dir)),
                )
            for t, server in servers.items():
                ready = server.wait_ready()
                log(f"server {t} ({trees[t]}) ready on {server.url} in {ready:.1f} s")
            time.sleep(2.0)  # the watch daemons' first sync (nothing changed) done
            for r in range(args.rounds):
                for phase in phases:
                    shared: list[str] | None = None
                    for t, server in servers.items():  # one slice of questions for every tree
                        if t in extra:
                            continue
                        res, qs = _phase(
                            phase, server, questions, args, key, tmp, expected[phase], shared
                        )
                        shared = qs or None
                        measured[t][phase].append(res)
                        log(_describe(f"[{t} round {r + 1}] {phase}", res))
                    if extra:
                        group = [servers["this"], *(servers[n] for n in extra)]
                        res = _at_once(phase, group, questions, args, key, tmp, expected[phase])
                        measured[MULTI][phase].append(res)
                        log(_describe(f"[{MULTI} round {r + 1}] {phase}", res))
            if args.flamegraphs is not None:
                for phase in phases[1:]:
                    svg = _flamegraph(phase, servers["this"], questions, args, key, tmp)
                    results.setdefault("flamegraphs", {})[phase] = svg
                    log(f"flame graph of {phase}: {svg}")
        finally:
            for t, server in servers.items():
                stopped = server.stop()
                results.setdefault("servers", {})[t] = stopped
                if stopped["outcome"] != "stopped on SIGTERM" or "Traceback" in server.log_tail(
                    20000
                ):
                    log(f"server {t} {stopped['outcome']}; log (tail):\n{server.log_tail()}")

    for t in measured:
        results[t if t != "this" else "api"] = {p: _summary(measured[t][p]) for p in phases}
    _ratios(results, phases)
    _report(results, phases)
    return finish(results, _goals(results, phases), args, args.json_out)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A phase over its rounds: the median round by req/s, and every round's figures."""
    best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return {
        **{k: best[k] for k in ("rps", "latency_ms", "requests", "connections", "seconds")},
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": {k: v for r in runs for k, v in r["error_kinds"].items()},
        "repeat_rate": max(r.get("repeat_rate", 0.0) for r in runs),
        "rounds": [{"rps": r["rps"], "p99_ms": r["latency_ms"]["p99"]} for r in runs],
    }


def _ratios(results: dict[str, Any], phases: list[str]) -> None:
    api, raw = results["api"], results.get("raw", {})
    ratios: dict[str, Any] = {}
    for p in phases[1:]:
        ratios[f"{p}_to_healthz"] = _ratio(api[p]["rps"], api["healthz"]["rps"])
    if raw:
        ratios["retrieval_to_raw_embed_search_threaded"] = _ratio(
            api["retrieval"]["rps"], raw["embed_search_threaded"]["rps"]
        )
        ratios["retrieval_to_pipeline_threaded"] = _ratio(
            api["retrieval"]["rps"], raw["pipeline_retrieval_threaded"]["rps"]
        )
        if "answers" in api and "pipeline_answers_threaded" in raw:
            ratios["answers_to_pipeline_threaded"] = _ratio(
                api["answers"]["rps"], raw["pipeline_answers_threaded"]["rps"]
            )
            ratios["answers_to_raw_embed_search_threaded"] = _ratio(
                api["answers"]["rps"], raw["embed_search_threaded"]["rps"]
            )
    if "compare" in results:
        for p in phases:
            ratios[f"{p}_to_compare_tree"] = _ratio(api[p]["rps"], results["compare"][p]["rps"])
    if MULTI in results:
        for p in phases:
            ratios[f"{p}_{MULTI}_to_one"] = _ratio(results[MULTI][p]["rps"], api[p]["rps"])
    results["ratios"] = ratios


GROUPS = {"api": "this tree", "compare": "compare tree", MULTI: "this tree, processes at once"}


def _report(results: dict[str, Any], phases: list[str]) -> None:
    log("--- summary (median round) ---")
    for t, label in GROUPS.items():
        for p in phases if t in results else []:
            log(_describe(f"{label} {p}", results[t][p]))
    for name, value in results["ratios"].items():
        log(f"ratio {name}: {value}")


def _goals(results: dict[str, Any], phases: list[str]) -> list[Goal]:
    api = results["api"]
    goals = [
        Goal(
            "retrieval-only throughput",
            f">= {GOAL_RETRIEVAL_RPS:.0f} req/s, p99 <= {GOAL_RETRIEVAL_P99_MS:.0f} ms",
            {"rps": api["retrieval"]["rps"], "p99_ms": api["retrieval"]["latency_ms"]["p99"]},
            api["retrieval"]["rps"] >= GOAL_RETRIEVAL_RPS
            and api["retrieval"]["latency_ms"]["p99"] <= GOAL_RETRIEVAL_P99_MS,
        ),
        Goal(
            "index built",
            "every document ingested, none failed",
            {k: results["index"][k] for k in ("documents", "files", "failed")},
            results["index"]["files"] == results["index"]["documents"]
            and not results["index"]["failed"],
            check=True,
        ),
    ]
    if "answers" in api:
        goals.append(
            Goal(
                "full-answer throughput",
                f">= {GOAL_ANSWER_RPS:.0f} req/s, p99 <= {GOAL_ANSWER_P99_MS:.0f} ms",
                {"rps": api["answers"]["rps"], "p99_ms": api["answers"]["latency_ms"]["p99"]},
                api["answers"]["rps"] >= GOAL_ANSWER_RPS
                and api["answers"]["latency_ms"]["p99"] <= GOAL_ANSWER_P99_MS,
            )
        )
    for t, label in GROUPS.items():
        for p in phases if t in results else []:
            r = results[t][p]
            goals.append(
                Goal(
                    f"{p} phase without errors ({label})",
                    "0 errors",
                    {"requests": r["requests"], "errors": r["errors"], "kinds": r["error_kinds"]},
                    r["errors"] == 0 and r["requests"] > 0,
                    check=True,
                )
            )
            if p != "healthz":
                goals.append(
                    Goal(
                        f"{p} questions distinct ({label})",
                        f"repeat rate <= {MAX_REPEAT_RATE:.0%}",
                        r["repeat_rate"],
                        r["repeat_rate"] <= MAX_REPEAT_RATE,
                        check=True,
                    )
                )
    return goals


if __name__ == "__main__":
    raise SystemExit(main())
