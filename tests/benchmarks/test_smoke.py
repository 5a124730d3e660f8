"""Every benchmark in benchmarks/ runs end to end at tiny sizes (``--smoke``) and exits 0.

Tiny inputs cannot meet the real targets, so ``--smoke`` reports those without enforcing
them and enforces the sanity checks instead (no errors, every query answered, nothing
re-embedded...): what this catches is a benchmark that no longer runs, or whose code paths
broke. Nothing here reads ../shared: the dataset benchmarks get a small SQuAD-2.0-shaped
BEIR set written below (answerable and unanswerable questions over a few "articles"), the
others examples/docs or their own synthetic data; query.py uses its in-process
OpenAI-protocol stand-in (no vLLM). Short texts are embedded by PyTorch
(``RAG_EMBEDDING__SHORT_TEXT_BACKEND=torch``): the ONNX export costs each process seconds
and has its own tests (tests/rag/indexing/test_embedding_onnx.py).

The benchmarks are independent processes that each load the embedding model, so the ones
selected are started together, a few at a time (``SMOKE_PARALLEL``, default 3), when the
first test needs them; each test then checks its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
TIMEOUT_S = 480  # per run; a quiet 2-core machine needs well under a minute each

# -- a tiny SQuAD-2.0-shaped dataset ------------------------------------------------------
# (article, paragraphs, [(question, answer or None)]); the paragraph holding the answer is gold.
ARTICLES: list[tuple[str, list[str], list[tuple[str, str | None]]]] = [
    (
        "Backups",
        [
            "Full database backups run nightly at 02:00 UTC. Backups are retained for 35 days "
            "and monthly snapshots are kept for 13 months. They are encrypted with AES-256.",
            "A restore test runs every quarter. The recovery time objective for the customer "
            "database is 4 hours, and results are recorded in the reliability wiki.",
            "Backups are stored in a second region, eu-west-2, separate from the primary "
            "region eu-central-1, so a regional outage does not take both copies.",
        ],
        [
            ("How long are backups retained?", "35 days"),
            ("At what time do full database backups run?", "02:00 UTC"),
            ("Which cipher encrypts the backups?", "AES-256"),
            ("Who designed the backup tape robot in 1962?", None),
            ("What colour is the backup server room carpet?", None),
        ],
    ),
    (
        "Oncall",
        [
            "New engineers join the on-call rotation after six weeks. A rotation lasts seven "
            "days and starts on Monday at 10:00 UTC.",
            "The primary on-call engineer must acknowledge pages within 5 minutes. Unanswered "
            "pages escalate to the secondary engineer and then to the engineering manager.",
            "SEV1 incidents page the incident commander and require a status page update "
            "within 15 minutes. A blameless postmortem follows within five business days.",
        ],
        [
            ("After how long do new engineers join the on-call rotation?", "six weeks"),
            ("On which day does a rotation start?", "Monday"),
            ("How many days does a rotation last?", "seven days"),
            ("Which composer wrote the on-call pager ringtone?", None),
            ("How many moons does the pager planet have?", None),
        ],
    ),
    (
        "Limits",
        [
            "The free tier allows 60 requests per minute. The business tier allows 1,200 "
            "requests per minute with bursts of up to 200 requests per second.",
            "When a limit is exceeded the API answers with HTTP status 429 and a Retry-After "
            "header. Clients should back off exponentially and retry at most five times.",
            "Enterprise customers can request higher limits through their account manager; "
            "requests are reviewed by the platform team within two business days.",
        ],
        [
            ("How many requests per minute does the free tier allow?", "60 requests"),
            ("How large can bursts be on the business tier?", "200 requests per second"),
            ("Which tier allows 1,200 requests per minute?", "business tier"),
            ("What was the rate limit of the telegraph network in 1890?", None),
            ("Which bird inspired the limiter's logo?", None),
        ],
    ),
    (
        "Onboarding",
        [
            "Request a laptop from IT on your first day. Production access is granted only "
            "after the security training, usually on day three.",
            "Every change needs one approving review from a code owner. Reviews should be "
            "answered within one working day, and large changes should be split.",
            "Clone the monorepo and run make bootstrap; it installs Python 3.11, the "
            "pre-commit hooks and a local Postgres 16 container.",
        ],
        [
            ("When is production access usually granted?", "day three"),
            ("Where do new engineers request a laptop?", "IT"),
            ("Which Postgres version does the bootstrap install?", "Postgres 16"),
            ("What is the name of the office cat?", None),
            ("Which mountain did the founders climb in 2003?", None),
        ],
    ),
]


def write_tiny_squad(root: Path) -> Path:
    """A BEIR folder (corpus, queries, qrels/test.tsv, answers.jsonl) shaped like squad2:
    paragraph ids ``<article>-<n>``, unanswerable questions without qrels."""
    (root / "qrels").mkdir(parents=True)
    corpus, queries, answers, qrels = [], [], [], ["query-id\tcorpus-id\tscore"]
    for article, paragraphs, questions in ARTICLES:
        for n, text in enumerate(paragraphs):
            corpus.append({"_id": f"{article}-{n}", "title": article, "text": text})
        for i, (question, answer) in enumerate(questions):
            qid = f"{article.lower()}-q{i}"
            queries.append({"_id": qid, "text": question})
            if answer is None:
                answers.append({"_id": qid, "answerable": False, "answers": []})
            else:
                gold = next(n for n, text in enumerate(paragraphs) if answer in text)
                answers.append({"_id": qid, "answerable": True, "answers": [answer]})
                qrels.append(f"{qid}\t{article}-{gold}\t1")
    for name, rows in (("corpus", corpus), ("queries", queries), ("answers", answers)):
        (root / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


# -- the runs -------------------------------------------------------------------------------
Args = Callable[[Path, Path], list[str]]  # (dataset, scratch) -> arguments

SMOKE: dict[str, tuple[str, Args]] = {
    "injection": ("injection.py", lambda ds, tmp: []),
    # the tiny set, its answerable questions clean, planted and appended (this tree only)
    "injection_answers": (
        "injection_answers.py",
        lambda ds, tmp: ["--dataset", str(ds), "--cache", str(tmp / "cache")],
    ),
    # three conversations over examples/docs, before/after (this tree only)
    "conversations": (
        "conversations.py",
        lambda ds, tmp: ["--cache", str(tmp / "cache")],
    ),
    # examples/docs + the golden set's first questions; its own paraphrase fixtures
    "answer_cache": ("answer_cache.py", lambda ds, tmp: []),
    "query": (
        "query.py",
        lambda ds, tmp: ["--sizes", "300", "--queries", "6", "--ttft-trials", "2"],
    ),
    # wrk, 2 connections, 2 s a phase, over the tiny set's paragraphs
    "load": (
        "load.py",
        lambda ds, tmp: [
            *(str(ds), "--docs", "6", "--connections", "2", "--threads", "1"),
            *("--duration", "2", "--answer-duration", "2", "--warmup", "1", "--raw-requests", "5"),
        ],
    ),
    "ingest": ("ingest.py", lambda ds, tmp: [str(ds / "corpus.jsonl"), "--limit", "6"]),
    "calibrate_extractive": (
        "calibrate_extractive.py",
        lambda ds, tmp: [str(ds), "--cache", str(tmp / "cache")],
    ),
    "answerability": ("answerability.py", lambda ds, tmp: [str(ds), "--cache", str(tmp / "cache")]),
    "calibrate_support": ("calibrate_support.py", lambda ds, tmp: [str(ds)]),
    "fusion_rerank": (
        "fusion_rerank.py",
        lambda ds, tmp: [str(ds), "--cache", str(tmp / "cache"), "--rerank-candidates", "5"],
    ),
    "calibrate_relevance": (
        "calibrate_relevance.py",
        lambda ds, tmp: [str(ds), "--cache", str(tmp / "cache")],
    ),
    # the golden set over examples/docs and the tiny set, six questions each, extractive
    "answer_chains": (
        "answer_chains.py",
        lambda ds, tmp: ["--dataset", str(ds), "--cache", str(tmp / "cache")],
    ),
    # its own Faker sentences (40 in smoke), rag.guards.pii and default Presidio side by side
    "pii_quality": ("pii_quality.py", lambda ds, tmp: ["--sentences", "40"]),
    # examples/docs, pii on vs off per query (8) and at ingest
    "pii_overhead": ("pii_overhead.py", lambda ds, tmp: ["--queries", "4"]),
    # its own multi-locale Faker documents (24, 12 held out): stock Presidio and the policy
    "pii_recall": ("pii_recall.py", lambda ds, tmp: []),
    # 8 of those documents, 6 questions: recording model server and Langfuse stand-in
    "pii_leaks": ("pii_leaks.py", lambda ds, tmp: []),
    # examples/docs, tracing off / on / Langfuse refusing, 503, stalling (stand-in), 6 slots
    "tracing_overhead": ("tracing_overhead.py", lambda ds, tmp: []),
    # every pathological shape at 1 kB and 3 kB: each ok or failed with a reason, in budget
    "parse_scaling": ("parse_scaling.py", lambda ds, tmp: []),
    "verify_cost": ("verify_cost.py", lambda ds, tmp: []),
    # 2,000 synthetic chunks (with / without a reader's filter), 6 golden questions x 3 asks
    "permissions": ("permissions.py", lambda ds, tmp: []),
    # the tiny set's documents behind real servers, wrk at 4 connections, 1 s a phase
    "tracing_load": ("tracing_load.py", lambda ds, tmp: ["--dataset", str(ds)]),
    # 2,000 and 4,000 synthetic chunks from the tiny set's sentences and 40 real vectors
    "scale": ("scale.py", lambda ds, tmp: ["--dataset", str(ds), "--seeds", "6"]),
    # the tiny set's paragraphs and questions, fp32 and int8 encoders (ONNX whatever the env)
    "int8_encoder": ("int8_encoder.py", lambda ds, tmp: [str(ds)]),
}


NEEDS_WRK = frozenset({"load", "tracing_load"})  # a C load generator (apt-get install -y wrk)


def test_every_benchmark_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    missing = scripts - {script for script, _ in SMOKE.values()}
    assert not missing, f"add a --smoke run for {sorted(missing)} to SMOKE in {__file__}"


class Runs:
    """The selected smoke runs, started together (bounded) on first use."""

    def __init__(self, names: list[str], base: Path):
        self.names = names
        self.base = base
        self._lock = threading.Lock()
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, name: str, dataset: Path) -> dict[str, Any]:
        script, make_args = SMOKE[name]
        tmp = self.base / name
        tmp.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
                "RAG_DATA_DIR": str(tmp / "data"),
                "RAG_EMBEDDING__THREADS": "1",
                "RAG_EMBEDDING__SHORT_TEXT_BACKEND": "torch",
                "TMPDIR": str(tmp),
            }
        )
        cmd = [sys.executable, str(BENCH / script), "--smoke", *make_args(dataset, tmp)]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        return {
            "cmd": cmd,
            "rc": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            "seconds": time.perf_counter() - t0,
        }

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            if self._pool is None:
                dataset = write_tiny_squad(self.base / "tiny-squad")
                workers = int(os.environ.get("SMOKE_PARALLEL", "3"))
                self._pool = ThreadPoolExecutor(max_workers=max(1, workers))
                order = sorted(self.names, key=list(SMOKE).index)
                for n in order:
                    self._futures[n] = self._pool.submit(self._run, n, dataset)
            future = self._futures.get(name)
        assert future is not None, f"{name} was not selected"
        return future.result(timeout=TIMEOUT_S * len(self.names))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def smoke_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_benchmark_smoke"
        and hasattr(item, "callspec")
    ]
    runs = Runs(selected, tmp_path_factory.mktemp("bench-smoke"))
    yield runs
    runs.close()


@pytest.mark.parametrize("name", list(SMOKE))
def test_benchmark_smoke(name: str, smoke_runs: Runs) -> None:
    if name in NEEDS_WRK and shutil.which("wrk") is None:
        pytest.skip(f"{name} drives the API with wrk: apt-get install -y wrk")
    run = smoke_runs.get(name)
    tail = f"\n$ {' '.join(run['cmd'])}\n--- stderr ---\n{run['stderr'][-4000:]}"
    assert run["rc"] == 0, f"{name} exited {run['rc']}{tail}"
    start = run["stdout"].find("{")
    assert start >= 0, f"{name} printed no JSON{tail}"
    result = json.loads(run["stdout"][start:])
    assert result["mode"] == "smoke", tail
    assert result["goals_met"] is True, tail
    goals = result["goals"]
    assert goals, f"{name} states no goals{tail}"
    assert any(not g["check"] for g in goals), f"{name} states no real goal{tail}"
    assert all(g["met"] for g in goals if g["check"]), tail
    assert "goal" in result, f"{name} does not state its goal in the output{tail}"


def test_stopwatch_counts_overlapping_calls_once() -> None:
    """query.py's overhead subtracts the union of time in model/store calls across threads."""
    sys.path.insert(0, str(ROOT))
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_query", BENCH / "query.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    watch = module.Stopwatch()
    slow = watch.wrap(lambda s: time.sleep(s))
    t0 = time.perf_counter()
    worker = threading.Thread(target=slow, args=(0.2,))
    worker.start()
    slow(0.2)  # overlaps the worker's call almost entirely
    worker.join()
    t1 = time.perf_counter()
    covered = watch.covered(t0, t1)
    assert 0.19 <= covered <= (t1 - t0) + 1e-6
    assert covered < 0.35  # a sum would give ~0.4
    watch.reset()
    assert watch.covered(t0, t1) == 0.0
