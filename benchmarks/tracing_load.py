"""What tracing and the PII policy cost the API under load: wrk against a real server, p50 ratios.

    .venv/bin/python benchmarks/tracing_load.py [--docs 150] [--duration 8] [--rounds 3]
        [--connections 4,32] [--kinds retrieval,answer] [--groups tracing,pii]
        [--tracing-worker thread|process] [--json-out FILE] [--smoke] [--report-only]

One deployment (``rag ingest`` of ``--docs`` SciFact documents, one API key) copied into one
data dir per server, each served by ``rag serve`` as a subprocess on loopback (rate limits,
the answer cache and evals after sync out of the way), loaded by ``wrk`` (a C load generator,
``apt-get install -y wrk``) with a Lua script that sends every request a different SciFact
claim as the question:

- group ``tracing`` (the default chain): a server without ``LANGFUSE_*`` keys (``off``) and one
  exporting to the Langfuse stand-in on loopback (tests/langfuse_standin.py, which decodes
  every OTLP batch), measured with the stand-in answering (``on``), gone (``down``:
  connections refused on its port) and accepting requests but never answering (``stalled``);
  ``--tracing-worker process`` sets ``tracing.worker: process`` on the traced server (its
  exporter process's CPU is counted with the server's);
- group ``pii`` (``generation.chain: [openai, extractive]``, the OpenAI-protocol stand-in of
  evals/chat_server.py answering faithfully, PII spans stored at ingest): ``pii.enabled``
  false (``pii_off``) and true (``pii_on``); every other question carries a name, an e-mail
  address or a phone number, so the policy has something to pseudonymise and restore.

Per kind (``retrieval``: ``generate: false``; ``answer``: full answers) and connection count,
each round runs every mode of a group once, in an order that alternates between rounds
(ABBA...), so load from other processes affects all modes alike; after each phase the
servers are left to go idle (a traced server's backlog of spans is that phase's CPU, and
must not slow the next phase); reported are
the median over rounds of each mode's p50, p99, req/s and the server's CPU per request (all
its threads, from /proc: steadier than latency on a shared machine, and what tracing adds),
and the ratios to the group's baseline (``off``, ``pii_off``) of the same kind and connections.

Goals (exit 1 when one is missed; ``--smoke`` enforces only the checks):
- p50(on) / p50(off) <= 1.05 and p50(down or stalled) / p50(off) <= 1.10, each kind and
  connection count;
- p50(pii_on) / p50(pii_off) <= 1.05, each kind and connection count.
Checks: no request failed (non-2xx, socket errors, timeouts) in any phase; the stand-in
decoded traces in every ``on`` phase; every server stopped on SIGTERM.

Timings on a shared machine are noisy; the per-round p50s are in the JSON (``rounds``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402
from benchmarks._server import RagServer, free_port, run_cli, serve_env  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"  # --dataset: another BEIR set
GOAL_ON = 1.05
GOAL_FAILING = 1.10
GOAL_PII = 1.05
GROUPS = {
    "tracing": ("off", "on", "down", "stalled"),
    "pii": ("pii_off", "pii_on"),
}
BASELINE = {"tracing": "off", "pii": "pii_off"}
PII_SUFFIXES = [
    " I am john.miller@gmail.com.",
    " My name is David Chen.",
    " Call me at (415) 555-0134.",
    " Employee Maria Garcia asks.",
]

# wrk: each request a new question (a JSON body per line of the questions file); the summary
# as one JSON line at the end (latency in microseconds).
WRK_LUA = r"""
local bodies = {}
local headers = {}
local n = 0
local offset = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. args[2]
  offset = tonumber(args[3]) or 0
end
function request()
  n = n + 1
  local body = bodies[((n * 7919 + offset) % #bodies) + 1]
  return wrk.format("POST", "/v1/query", headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LangfusePort:
    """The Langfuse stand-in on one fixed loopback port, switchable between answering
    (``on``), gone (``down``: nothing listens, connections refused) and ``stalled``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.current: Any = None
        self.decoded: list[int] = []  # query traces decoded per `on` phase

    def switch(self, mode: str) -> None:
        from tests.langfuse_standin import LangfuseStandIn

        if self.current is not None:
            self.current.stop()
            self.current = None
        if mode in ("on", "stalled"):
            self.current = LangfuseStandIn("ok" if mode == "on" else "stall", port=self.port)
            self.current.__enter__()

    def query_traces(self) -> int:
        if self.current is None:
            return 0
        with self.current._lock:
            return len({s.trace_id for s in self.current.spans if s.name == "query"})

    def close(self) -> None:
        self.switch("down")


def write_docs(dataset: Path, out: Path, limit: int) -> int:
    out.mkdir(parents=True)
    n = 0
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if n >= limit:
                break
            doc = json.loads(line)
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(doc["_id"]))
            (out / f"{safe}.txt").write_text(
                f"{doc.get('title', '')}\n\n{doc['text']}\n", encoding="utf-8"
            )
            n += 1
    return n


def write_bodies(dataset: Path, path: Path, generate: bool, pii: bool, seed: int) -> int:
    """One JSON request body per line: every query of the dataset once, shuffled."""
    claims = [
        json.loads(line)["text"] for line in (dataset / "queries.jsonl").open(encoding="utf-8")
    ]
    random.Random(seed).shuffle(claims)
    with path.open("w", encoding="utf-8") as fh:
        for i, claim in enumerate(claims):
            question = claim + (PII_SUFFIXES[(i // 2) % len(PII_SUFFIXES)] if pii and i % 2 else "")
            fh.write(json.dumps({"question": question, "generate": generate}) + "\n")
    return len(claims)


def wrk(
    url: str, script: Path, bodies: Path, key: str, connections: int, seconds: float, offset: int
) -> dict[str, Any]:
    threads = min(2, connections)
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        key,
        str(offset),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk printed no summary ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    raw = json.loads(line[len("WRK_JSON ") :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    ok = raw["requests"] - raw["status"]
    return {
        "p50_ms": raw["p50_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "rps": ok / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "errors": errors,
        "error_detail": {
            k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]
        },
    }


def wait_idle(servers: list[RagServer], timeout: float = 60.0) -> float:
    """Until every server uses under 5 % of a core over half a second; the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = [s.cpu_seconds() for s in servers]
        time.sleep(0.5)
        if all(s.cpu_seconds() - b < 0.025 for s, b in zip(servers, before, strict=True)):
            break
    return round(time.monotonic() - t0, 1)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=150, help="SciFact documents indexed")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of load per phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (each runs every mode once)")
    ap.add_argument("--connections", default="4,32", help="comma-separated wrk connection counts")
    ap.add_argument("--kinds", default="retrieval,answer", help="retrieval and/or answer")
    ap.add_argument("--groups", default="tracing,pii", help="tracing and/or pii")
    ap.add_argument(
        "--warmup", type=float, default=3.0, help="uncounted seconds per server and kind"
    )
    ap.add_argument(
        "--tracing-worker",
        choices=("thread", "process"),
        default="thread",
        help="tracing.worker of the traced server (process: spans built and sent by a child)",
    )
    ap.add_argument("--settle", type=float, default=1.0, help="pause between phases (s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--dataset", type=Path, default=SCIFACT, help="a BEIR folder (corpus, queries)")
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.docs, args.duration, args.rounds, args.warmup, args.settle = 12, 1.0, 1, 1.0, 0.2
        args.connections = "4"
    connections = [int(c) for c in args.connections.split(",") if c.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    sys.path.insert(0, str(ROOT / "evals"))
    from chat_server import ChatServer, faithful

    tmp = Path(tempfile.mkdtemp(prefix="tracing-load-"))
    chat = ChatServer()
    chat.respond = faithful()
    langfuse = LangfusePort()
    servers: dict[str, RagServer] = {}
    results: dict[str, Any] = {
        "goal": f"p50 ratio to off: on <= {GOAL_ON}, down/stalled <= {GOAL_FAILING}; "
        f"pii_on/pii_off <= {GOAL_PII} (openai chain); each kind and connection count; no errors",
        "config": {
            "docs": args.docs,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": connections,
            "kinds": kinds,
            "groups": groups,
            "tracing_worker": args.tracing_worker,
            "cpus": os.cpu_count(),
        },
    }
    stops: dict[str, str] = {}  # the outcome of each server's stop
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        env = serve_env(ROOT, queue=256)
        openai_chain = {
            "RAG_GENERATION__CHAIN": json.dumps(["openai", "extractive"]),
            "RAG_GENERATION__OPENAI__BASE_URL": chat.base_url,
        }
        docs = tmp / "docs"
        n_docs = write_docs(args.dataset, docs, args.docs)
        base_dir = tmp / "base"
        t0 = time.perf_counter()
        # openai in the chain at ingest: each chunk's PII spans stored (the pii group reads them)
        report = json.loads(
            run_cli(
                ROOT,
                ["--data-dir", str(base_dir), "ingest", str(docs), "--json"],
                {**env, **openai_chain},
            )
        )
        key = (
            run_cli(
                ROOT,
                [
                    "--data-dir",
                    str(base_dir),
                    "keys",
                    "create",
                    "--tenant",
                    "default",
                    "--name",
                    "load",
                ],
                env,
            )
            .strip()
            .splitlines()[0]
        )
        results["index"] = {
            "docs": n_docs,
            "chunks": report.get("embedded"),
            "failed": report.get("failed"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(
            f"index: {n_docs} SciFact docs, {report.get('embedded')} chunks in {time.perf_counter() - t0:.0f} s"
        )

        script = tmp / "bodies.lua"
        script.write_text(WRK_LUA, encoding="utf-8")
        bodies: dict[tuple[str, str], Path] = {}
        for group in groups:
            for kind in kinds:
                path = tmp / f"bodies-{group}-{kind}.jsonl"
                write_bodies(args.dataset, path, kind == "answer", group == "pii", args.seed)
                bodies[(group, kind)] = path

        traced = {
            "LANGFUSE_PUBLIC_KEY": "pk-lf-tracing-load",
            "LANGFUSE_SECRET_KEY": "sk-lf-tracing-load",
            "LANGFUSE_BASE_URL": langfuse.url,
            "RAG_TRACING__WORKER": args.tracing_worker,
        }
        server_env = {
            "off": env,
            "traced": {**env, **traced},
            "pii_off": {**env, **openai_chain, "RAG_PII__ENABLED": "false"},
            "pii_on": {**env, **openai_chain},
        }
        server_of = {
            "off": "off",
            "on": "traced",
            "down": "traced",
            "stalled": "traced",
            "pii_off": "pii_off",
            "pii_on": "pii_on",
        }
        offset = 0
        for group in groups:
            names = sorted({server_of[m] for m in GROUPS[group]})
            for name in names:
                data = tmp / f"data-{name}"
                shutil.copytree(base_dir, data)
                servers[name] = RagServer(
                    ROOT, data, server_env[name], tmp / f"server-{name}.log", name=name
                )
            for name in names:
                servers[name].wait_ready()
            log(f"{group}: servers {', '.join(f'{n} {servers[n].url}' for n in names)} ready")
            langfuse.switch("on")
            for kind in kinds:  # warm-up: models, caches, the PII engine, the exporter
                for name in names:
                    wrk(
                        servers[name].url,
                        script,
                        bodies[(group, kind)],
                        key,
                        4,
                        args.warmup,
                        offset,
                    )
                    offset += 1000
            for kind in kinds:
                for conns in connections:
                    cell = f"{group}/{kind}/c{conns}"
                    rounds[cell] = []
                    for r in range(args.rounds):
                        order = list(GROUPS[group]) if r % 2 == 0 else list(reversed(GROUPS[group]))
                        row: dict[str, Any] = {}
                        for mode in order:
                            if group == "tracing":
                                langfuse.switch("down" if mode == "off" else mode)
                                time.sleep(args.settle)
                            before = langfuse.query_traces()
                            server = servers[server_of[mode]]
                            cpu_before = server.cpu_seconds()
                            res = wrk(
                                server.url,
                                script,
                                bodies[(group, kind)],
                                key,
                                conns,
                                args.duration,
                                offset,
                            )
                            offset += 1000
                            # Until every server is idle: a traced server's backlog (spans
                            # still to build, mask and send) is this phase's CPU, and must
                            # not slow the next phase (on another server or this one).
                            res["drain_s"] = wait_idle(list(servers.values()))
                            # the server's CPU (every thread) per request: steadier than
                            # latency on a shared machine, and what tracing adds to it
                            res["cpu_ms_per_request"] = round(
                                (server.cpu_seconds() - cpu_before)
                                * 1000
                                / max(1, res["requests"]),
                                3,
                            )
                            if (
                                mode == "on"
                            ):  # the exporter's next batch (after a stall: its timeout)
                                deadline = time.monotonic() + 12.0
                                while (
                                    langfuse.query_traces() <= before
                                    and time.monotonic() < deadline
                                ):
                                    time.sleep(0.2)
                                res["traces_decoded"] = langfuse.query_traces() - before
                            row[mode] = res
                            log(
                                f"{cell} round {r + 1} {mode:8s} p50 {res['p50_ms']:8.1f} ms  p99 {res['p99_ms']:8.1f} ms  "
                                f"{res['rps']:7.1f} req/s  errors {res['errors']}"
                            )
                        rounds[cell].append(row)
            langfuse.switch("down")
            for name in names:
                stops[name] = servers.pop(name).stop()["outcome"]
    finally:
        for name, server in servers.items():
            stops[name] = server.stop()["outcome"]
        langfuse.close()
        chat.close()
        shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[str, Any] = {}
    goals: list[Goal] = []
    errors: dict[str, int] = {}
    on_without_traces: list[str] = []
    for cell, rows in rounds.items():
        group = cell.split("/")[0]
        base = BASELINE[group]
        modes = GROUPS[group]
        p50 = {m: _median([row[m]["p50_ms"] for row in rows]) for m in modes}
        entry: dict[str, Any] = {
            "p50_ms": p50,
            "p99_ms": {m: _median([row[m]["p99_ms"] for row in rows]) for m in modes},
            "rps": {m: _median([row[m]["rps"] for row in rows]) for m in modes},
            "cpu_ms_per_request": {
                m: _median([row[m]["cpu_ms_per_request"] for row in rows]) for m in modes
            },
            "ratio_p50": {m: round(p50[m] / p50[base], 3) for m in modes if m != base},
            "ratio_per_round": [
                {m: round(row[m]["p50_ms"] / row[base]["p50_ms"], 3) for m in modes if m != base}
                for row in rows
            ],
        }
        cpu = entry["cpu_ms_per_request"]
        entry["ratio_cpu_per_request"] = {
            m: round(cpu[m] / cpu[base], 3) for m in modes if m != base and cpu[base]
        }
        summary[cell] = entry
        for m in modes:
            errors[f"{cell}/{m}"] = sum(row[m]["errors"] for row in rows)
            if m == "on" and any(row[m].get("traces_decoded", 0) <= 0 for row in rows):
                on_without_traces.append(cell)
        for m, ratio in entry["ratio_p50"].items():
            limit = GOAL_ON if m in ("on", "pii_on") else GOAL_FAILING
            goals.append(
                Goal(f"{cell}/{m}", f"p50({m})/p50({base}) <= {limit}", ratio, ratio <= limit)
            )
        log(
            f"{cell}: "
            + "  ".join(
                f"{m} p50 {p50[m]:.1f} ms p99 {entry['p99_ms'][m]:.1f} ms "
                f"{entry['rps'][m]:.1f} req/s"
                for m in modes
            )
            + "  cpu ms/request "
            + ", ".join(f"{m} {entry['cpu_ms_per_request'][m]:.1f}" for m in modes)
            + "  p50 ratios "
            + ", ".join(f"{m} {r:.3f}" for m, r in entry["ratio_p50"].items())
        )
    results["cells"] = summary
    results["rounds"] = rounds
    results["errors"] = errors
    results["server_stop"] = stops
    goals += [
        Goal(
            "no_errors",
            "no failed request in any phase",
            {k: v for k, v in errors.items() if v} or 0,
            bool(errors) and not any(errors.values()),
            check=True,
        ),
        Goal(
            "traces_exported",
            "the stand-in decoded traces in every `on` phase",
            on_without_traces or "all",
            not on_without_traces,
            check=True,
        ),
        Goal(
            "servers_stopped",
            "every server stopped on SIGTERM",
            stops,
            all(v == "stopped on SIGTERM" for v in stops.values()),
            check=True,
        ),
        Goal(
            "measured",
            "every p50 measured",
            len(summary),
            bool(summary) and all(finite(*c["p50_ms"].values()) for c in summary.values()),
            check=True,
        ),
    ]
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
