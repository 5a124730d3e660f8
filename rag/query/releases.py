"""Prompt releases that prove themselves: a candidate version serves a growing share of users,
step by step, and moves on only when its live figures are no worse than the live version's.

``rag prompts release answer@v4 --steps 5,50,100`` (after the golden-set gate,
``evals.releases.prompt_gate``) records a release here; from then on the ``prompt`` stage
asks :meth:`ReleaseStore.choose` which version answers: the candidate for the users (or
sessions) whose A/B hash point (``rag.query.prompts.subject_point``, the existing split) falls
under the step's share, the live version for the others and for requests with neither. Each
answer of the split is recorded (version, abstained, all claims verified, latency, cost, and
later a thumbs down by its trace id) and :meth:`ReleaseStore.decide` judges the step's window:

- nothing before ``releases.min_requests`` answers of each version in this step;
- rates — abstention, thumbs down, answers not all verified (of those that answered): with
  Newcombe's interval for candidate − live (the hybrid score interval, from each side's
  Wilson bounds, one-sided at ``releases.confidence``), **worse** when its lower bound is over
  ``releases.margin``, **no worse** when its upper bound is under it. Wilson bounds behave at
  0 % and 100 % (a z-test's variance vanishes there, and a tie at 0/n looks certain), and a
  non-inferiority margin is what "not worse beyond a stated margin" means; with the defaults
  (margin 0.05, 95 %) a tie at 0 % needs 52 answers a side to be shown;
- p95 latency and cost per answer: ratio bounds — worse when the candidate's p95 is over
  live × (1 + ``latency_ratio``) + ``latency_slack_ms``, or its cost per answer over live ×
  (1 + ``cost_ratio``). A confidence bound on a p95 needs hundreds of answers a side (it is an
  order statistic), and latency here moves with the machine's load; the slack keeps a few
  slow answers on a small window from deciding;
- anything worse: **rolled back** (the reason logged, counted in ``/metrics``, and marked on the
  trace of the answer that decided it); everything no worse: the next step (the last, 100 %,
  makes the candidate the live version: **promoted**); otherwise the step goes on, and past
  ``releases.max_requests`` candidate answers still undecided it is rolled back.

The state is ``<data_dir>/releases/prompts.json`` (written whole to a temporary file and
renamed, under a file lock) and the answers ``<data_dir>/releases/answers.sqlite``: a restart
keeps the step, and several API processes on one data dir share one release.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

from rag.contracts import QueryState
from rag.core.config import ReleaseSettings
from rag.core.datadir import folder_lock
from rag.core.errors import RagError
from rag.query.prompts import subject_point

__all__ = [
    "RELEASES_DIR",
    "Arm",
    "ReleaseError",
    "ReleaseStore",
    "judge",
    "newcombe",
    "release_store",
    "wilson",
]

log = logging.getLogger("rag.releases")

RELEASES_DIR = "releases"
_STATE_FILE = "prompts.json"
_ANSWERS_DB = "answers.sqlite"
_FINISHED_KEPT = 50


class ReleaseError(RagError):
    """A release cannot start or change; the message says what to do."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- statistics ---------------------------------------------------------------------------
def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score bounds of a proportion k/n at normal quantile ``z``."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float) -> tuple[float, float]:
    """Bounds of p1 − p2 (Newcombe 1998, method 10: from each side's Wilson bounds)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank


@dataclass
class Arm:
    """One version's answers over a step's window."""

    version: str
    answers: int = 0
    abstained: int = 0
    thumbs_down: int = 0
    answered: int = 0  # not abstained: the answers with claims to verify
    all_verified: int = 0
    latencies: list[float] = field(default_factory=list)
    cost: float = 0.0

    def rates(self) -> dict[str, tuple[int, int]]:
        """Lower is better, each (count, out of)."""
        return {
            "abstention_rate": (self.abstained, self.answers),
            "thumbs_down_rate": (self.thumbs_down, self.answers),
            "unverified_rate": (self.answered - self.all_verified, self.answered),
        }

    def as_dict(self) -> dict[str, Any]:
        def rate(k: int, n: int) -> float | None:
            return round(k / n, 4) if n else None

        return {
            "version": self.version,
            "answers": self.answers,
            "abstention_rate": rate(self.abstained, self.answers),
            "thumbs_down_rate": rate(self.thumbs_down, self.answers),
            "all_verified_rate": rate(self.all_verified, self.answered),
            "latency_p95_ms": round(_p95(self.latencies), 1) if self.latencies else None,
            "cost_per_answer": round(self.cost / self.answers, 8) if self.answers else None,
        }


def judge(live: Arm, candidate: Arm, s: ReleaseSettings) -> tuple[str, list[str], dict[str, Any]]:
    """``("advance" | "rollback" | "wait", reasons, checks)`` for one step's window."""
    if live.answers < s.min_requests or candidate.answers < s.min_requests:
        return (
            "wait",
            [
                f"{candidate.answers} candidate and {live.answers} live answers in this step; "
                f"{s.min_requests} of each needed (releases.min_requests)"
            ],
            {},
        )
    z = NormalDist().inv_cdf(s.confidence)
    checks: dict[str, Any] = {}
    worse: list[str] = []
    unsure: list[str] = []
    live_rates = live.rates()
    for figure, (kc, nc) in candidate.rates().items():
        kl, nl = live_rates[figure]
        if nc == 0 or nl == 0:
            continue  # no answer to judge on one side (the abstention rate speaks for it)
        lo, hi = newcombe(kc, nc, kl, nl, z)
        checks[figure] = {
            "candidate": round(kc / nc, 4),
            "live": round(kl / nl, 4),
            "difference_bounds": [round(lo, 4), round(hi, 4)],
            "margin": s.margin,
        }
        if lo > s.margin:
            worse.append(
                f"{figure} {kc}/{nc} against live {kl}/{nl}: worse by more than "
                f"{s.margin} (lower bound of the difference {lo:.3f} at {s.confidence:.0%})"
            )
        elif hi >= s.margin:
            unsure.append(figure)
    p95_c, p95_l = _p95(candidate.latencies), _p95(live.latencies)
    bound = p95_l * (1 + s.latency_ratio) + s.latency_slack_ms
    checks["latency_p95_ms"] = {
        "candidate": round(p95_c, 1),
        "live": round(p95_l, 1),
        "bound": round(bound, 1),
    }
    if p95_c > bound:
        worse.append(
            f"p95 latency {p95_c:.0f} ms against live {p95_l:.0f} ms: over the bound "
            f"{bound:.0f} ms (live x {1 + s.latency_ratio} + {s.latency_slack_ms} ms)"
        )
    cost_c = candidate.cost / candidate.answers
    cost_l = live.cost / live.answers
    cost_bound = cost_l * (1 + s.cost_ratio)
    checks["cost_per_answer"] = {"candidate": cost_c, "live": cost_l, "bound": cost_bound}
    if cost_c > cost_bound + 1e-12:
        worse.append(
            f"cost per answer {cost_c:.6f} against live {cost_l:.6f}: over live x {1 + s.cost_ratio}"
        )
    if worse:
        return "rollback", worse, checks
    if not unsure:
        return "advance", [], checks
    if candidate.answers >= s.max_requests:
        return (
            "rollback",
            [
                f"after {candidate.answers} candidate answers (releases.max_requests) still not "
                f"shown to be no worse at: {', '.join(unsure)}"
            ],
            checks,
        )
    return "wait", [f"not yet shown to be no worse at: {', '.join(unsure)}"], checks


# -- the store ----------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    release TEXT NOT NULL, step INTEGER NOT NULL, role TEXT NOT NULL, version TEXT NOT NULL,
    trace_id TEXT, abstained INTEGER NOT NULL, all_verified INTEGER,
    latency_ms REAL NOT NULL, cost REAL NOT NULL, thumbs_down INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_window ON answers (release, step, role);
CREATE INDEX IF NOT EXISTS answers_trace ON answers (trace_id);
"""


class ReleaseStore:
    """The releases of one data dir: state file + answers database, safe across processes."""

    def __init__(self, data_dir: Path):
        self.folder = data_dir / RELEASES_DIR
        self.state_path = self.folder / _STATE_FILE
        self._lock = threading.RLock()
        self._cached: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._db: sqlite3.Connection | None = None
        # Told of every change a decision makes (the API counts rollbacks, say).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    # -- files ---------------------------------------------------------------------------
    def _locked(self) -> AbstractContextManager[None]:
        return folder_lock(self.folder, self._lock)

    def read(self) -> dict[str, Any]:
        """The state as on disk now (re-read only when the file changed)."""
        try:
            st = self.state_path.stat()
        except FileNotFoundError:
            return {"prompts": {}, "finished": [], "rollbacks": {}}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
            state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            self._cached = (stamp, state)
            return state

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.folder / f".{_STATE_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        self._cached = None

    def _conn(self) -> sqlite3.Connection:
        with self._lock:
            if self._db is None:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.folder / _ANSWERS_DB, timeout=30.0, check_same_thread=False
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._db = db
            return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- releases --------------------------------------------------------------------------
    def release(self, name: str) -> dict[str, Any] | None:
        found = self.read()["prompts"].get(name)
        return dict(found) if found else None

    def start(
        self,
        name: str,
        live: str,
        candidate: str,
        steps: list[int],
        gate: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record a release of ``name@candidate`` against ``live`` (the gate already passed)."""
        if not steps or steps[-1] != 100 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ReleaseError(
                "--steps are rising percentages of users ending at 100, e.g. 5,50,100"
            )
        if any(not 0 < s <= 100 for s in steps):
            raise ReleaseError("--steps are percentages between 1 and 100, e.g. 5,50,100")
        if candidate == live:
            raise ReleaseError(f"{name}@{candidate} is already the live version")
        with self._locked():
            state = self.read()
            current = state["prompts"].get(name)
            if current and current["status"] == "running":
                raise ReleaseError(
                    f"a release of {name}@{current['candidate']} is running (step "
                    f"{current['steps'][current['step']]} %): let it finish, or "
                    f"`rag prompts rollback {name}` first"
                )
            if current:
                state["finished"] = [*state.get("finished", []), current][-_FINISHED_KEPT:]
                db = self._conn()
                with db:  # its answers: the finished release keeps its history, not its rows
                    db.execute("DELETE FROM answers WHERE release = ?", (current["id"],))
            now = _now()
            release: dict[str, Any] = {
                "id": f"rel_{datetime.now(UTC):%Y%m%dT%H%M%S}_{secrets.token_hex(3)}",
                "name": name,
                "live": live,
                "candidate": candidate,
                "steps": list(steps),
                "step": 0,
                "status": "running",
                "reason": None,
                "started_at": now,
                "step_started_at": now,
                "gate": {k: (gate or {}).get(k) for k in ("regressions", "report", "note")},
                "history": [{"at": now, "event": "started", "share": steps[0]}],
            }
            if steps[0] == 100:
                release.update(status="promoted", finished_at=now)
                release["history"].append({"at": now, "event": "promoted", "share": 100})
            state["prompts"][name] = release
            self._write(state)
        log.info(
            "prompt release %s: %s@%s against %s, steps %s",
            release["id"],
            name,
            candidate,
            live,
            steps,
        )
        return release

    def choose(self, name: str, subject: str | None) -> tuple[str, str, dict[str, Any]] | None:
        """(version, role, release) for a request of prompt ``name``; None: no release speaks.
        Role: ``candidate`` / ``live`` (in the split), ``unsplit`` (no user nor session: the
        live version, not counted), ``promoted`` (a finished release's version)."""
        release = self.read()["prompts"].get(name)
        if not release:
            return None
        if release["status"] == "promoted":
            return release["candidate"], "promoted", release
        if release["status"] != "running":
            return None
        if not subject:
            return release["live"], "unsplit", release
        share = release["steps"][release["step"]]
        if subject_point(f"{name}:{subject}") < share / 100.0:
            return release["candidate"], "candidate", release
        return release["live"], "live", release

    # -- answers ---------------------------------------------------------------------------
    def record(
        self,
        release: dict[str, Any],
        step: int,
        role: str,
        version: str,
        trace_id: str | None,
        abstained: bool,
        all_verified: bool | None,
        latency_ms: float,
        cost: float,
    ) -> None:
        db = self._conn()
        with self._lock, db:
            db.execute(
                "INSERT INTO answers (release, step, role, version, trace_id, abstained, "
                "all_verified, latency_ms, cost, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release["id"],
                    step,
                    role,
                    version,
                    trace_id,
                    int(abstained),
                    None if all_verified is None else int(all_verified),
                    float(latency_ms),
                    float(cost),
                    time.time(),
                ),
            )

    def feedback(self, trace_id: str, value: int) -> bool:
        """A thumbs up (1) or down (0) on an answer a release served; False: not one of them."""
        db = self._conn()
        with self._lock, db:
            cur = db.execute(
                "UPDATE answers SET thumbs_down = ? WHERE trace_id = ?",
                (int(value == 0), trace_id),
            )
            return cur.rowcount > 0

    def arms(self, release: dict[str, Any], step: int | None = None) -> dict[str, Arm]:
        """The live and candidate figures of ``release`` over one step (default: the current)."""
        step = release["step"] if step is None else step
        arms = {
            "live": Arm(release["live"]),
            "candidate": Arm(release["candidate"]),
        }
        db = self._conn()
        with self._lock:
            rows = db.execute(
                "SELECT role, abstained, all_verified, latency_ms, cost, thumbs_down FROM answers "
                "WHERE release = ? AND step = ? AND role IN ('live', 'candidate')",
                (release["id"], step),
            ).fetchall()
        for role, abstained, verified, latency, cost, down in rows:
            arm = arms[role]
            arm.answers += 1
            arm.abstained += abstained
            arm.thumbs_down += down
            if not abstained and verified is not None:
                arm.answered += 1
                arm.all_verified += verified
            arm.latencies.append(latency)
            arm.cost += cost
        return arms

    def _counts(self, release: dict[str, Any]) -> dict[str, int]:
        db = self._conn()
        with self._lock:
            rows = db.execute(
                "SELECT role, COUNT(*) FROM answers WHERE release = ? AND step = ? GROUP BY role",
                (release["id"], release["step"]),
            ).fetchall()
        found = dict(rows)
        return {role: int(found.get(role, 0)) for role in ("live", "candidate")}

    # -- decisions -------------------------------------------------------------------------
    def decide(self, name: str, settings: ReleaseSettings) -> dict[str, Any] | None:
        """Judge the running release of ``name`` on its step's window and act on the verdict:
        the next step, promoted, or rolled back. Returns the event, or None (nothing changed)."""
        current = self.read()["prompts"].get(name)
        if not current or current["status"] != "running":
            return None
        if min(self._counts(current).values()) < settings.min_requests:
            return None  # cheap, unlocked: most requests of a young window end here
        with self._locked():
            state = self.read()
            release = state["prompts"].get(name)
            if not release or release["status"] != "running":
                return None  # another process decided meanwhile
            arms = self.arms(release)
            verdict, reasons, checks = judge(arms["live"], arms["candidate"], settings)
            if verdict == "wait":
                return None
            state = json.loads(json.dumps(state))  # the cached copy stays as it was read
            release = state["prompts"][name]
            now = _now()
            share = release["steps"][release["step"]]
            figures = {role: arm.as_dict() for role, arm in arms.items()}
            event: dict[str, Any] = {
                "at": now,
                "release": release["id"],
                "prompt": f"{name}@{release['candidate']}",
                "share": share,
                "figures": figures,
                "checks": checks,
            }
            if verdict == "rollback":
                reason = "; ".join(reasons)
                release.update(status="rolled_back", reason=reason, finished_at=now)
                event.update(event="rolled_back", reason=reason)
                rollbacks = state.setdefault("rollbacks", {})
                rollbacks[name] = int(rollbacks.get(name, 0)) + 1
            elif (
                release["step"] + 1 < len(release["steps"])
                and release["steps"][release["step"] + 1] < 100
            ):
                release["step"] += 1
                release["step_started_at"] = now
                event.update(event="advanced", to_share=release["steps"][release["step"]])
            else:
                release["step"] = len(release["steps"]) - 1
                release.update(status="promoted", finished_at=now)
                event.update(event="promoted", to_share=100)
            release["history"].append(
                {k: v for k, v in event.items() if k not in ("release", "prompt")}
            )
            self._write(state)
        if event["event"] == "rolled_back":
            log.warning(
                "prompt release %s (%s) rolled back at %s %%: %s",
                event["release"],
                event["prompt"],
                share,
                event["reason"],
            )
        else:
            log.info(
                "prompt release %s (%s): %s", event["release"], event["prompt"], event["event"]
            )
        for listener in self.listeners:
            listener(event)
        return event

    def rollback(self, name: str, reason: str) -> dict[str, Any]:
        """Stop a running release by hand; the live version serves everyone again."""
        with self._locked():
            state = json.loads(json.dumps(self.read()))
            release = state["prompts"].get(name)
            if not release or release["status"] != "running":
                raise ReleaseError(f"no release of {name!r} is running (`rag prompts status`)")
            now = _now()
            release.update(status="rolled_back", reason=reason, finished_at=now)
            release["history"].append(
                {
                    "at": now,
                    "event": "rolled_back",
                    "share": release["steps"][release["step"]],
                    "reason": reason,
                }
            )
            rollbacks = state.setdefault("rollbacks", {})
            rollbacks[name] = int(rollbacks.get(name, 0)) + 1
            self._write(state)
        log.warning("prompt release %s rolled back by hand: %s", release["id"], reason)
        return dict(release)

    def status(self) -> dict[str, Any]:
        """Every prompt's release: the versions' shares and their figures side by side."""
        state = self.read()
        out: dict[str, Any] = {}
        for name, release in state["prompts"].items():
            share = release["steps"][release["step"]] if release["status"] == "running" else None
            shares = (
                {release["candidate"]: share, release["live"]: 100 - share}
                if share is not None
                else {
                    release["candidate"]
                    if release["status"] == "promoted"
                    else release["live"]: 100
                }
            )
            arms = self.arms(release)
            out[name] = {
                **{k: release[k] for k in ("id", "live", "candidate", "steps", "status", "reason")},
                "share": shares,
                "step_started_at": release.get("step_started_at"),
                "figures": {role: arm.as_dict() for role, arm in arms.items()},
                "history": release["history"],
                "rollbacks": int(state.get("rollbacks", {}).get(name, 0)),
            }
        for name, n in state.get("rollbacks", {}).items():
            out.setdefault(name, {"status": None, "rollbacks": int(n)})
        return out


_stores: dict[Path, ReleaseStore] = {}
_stores_lock = threading.Lock()


def release_store(data_dir: Path) -> ReleaseStore:
    """The process's one store for ``data_dir`` (the prompt stage, feedback and /metrics share it)."""
    key = data_dir.resolve()
    with _stores_lock:
        if key not in _stores:
            _stores[key] = ReleaseStore(key)
        return _stores[key]


# -- the prompt stage's part ----------------------------------------------------------------
def record_answer(
    store: ReleaseStore,
    settings: ReleaseSettings,
    release: dict[str, Any],
    role: str,
    version: str,
    started: float,
) -> Callable[[QueryState], None]:
    """The ``on_answer`` hook of a request the release split: its answer recorded, the step
    judged; a decision it caused is put on the trace (``state.extras["release"]``)."""
    step = int(release["step"])

    def hook(state: QueryState) -> None:
        answer = state.answer
        if answer is None or not state.query.generate or answer.cached:
            return  # no generation, or a cached one: nothing about the prompt's answers now
        verified = None if answer.abstained else (answer.withheld == 0 and not answer.unsupported)
        try:
            store.record(
                release,
                step,
                role,
                version,
                state.trace_id,
                answer.abstained,
                verified,
                (time.perf_counter() - started) * 1000.0,
                float(answer.usage.cost or 0.0),
            )
            event = store.decide(release["name"], settings)
        except (OSError, sqlite3.Error, ValueError) as exc:  # a release never fails a request
            log.warning("prompt release %s: could not record an answer (%s)", release["id"], exc)
            return
        if event is not None:
            mark = state.extras.setdefault("release", {})
            mark["decision"] = event["event"]
            if event.get("reason"):
                mark["rolled_back"] = event["reason"]

    return hook
