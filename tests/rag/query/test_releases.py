"""Prompt releases' decision rule and their state: Wilson/Newcombe bounds against published
values, the rule's outcomes, and one release shared by two stores on one data dir (two API
processes) and read back by a third (a restart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import ReleaseSettings
from rag.query.prompts import subject_point
from rag.query.releases import Arm, ReleaseError, ReleaseStore, judge, newcombe, wilson

Z95_TWO_SIDED = 1.959964


def test_wilson_and_newcombe_match_published_values() -> None:
    # Newcombe (1998): Wilson's interval (Statistics in Medicine 17:857, Table I) for 0/10
    # is 0-0.2775 and for 1/29 0.0061-0.1718; the difference (17:873, Table II, method 10)
    # for 56/70 - 48/80 is 0.0524 to 0.3339 and for 9/10 - 3/10 0.1705 to 0.8090.
    for (k, n), want in {(0, 10): (0.0, 0.2775), (1, 29): (0.0061, 0.1718)}.items():
        lo, hi = wilson(k, n, Z95_TWO_SIDED)
        assert (round(lo, 4), round(hi, 4)) == want
    for (k1, n1, k2, n2), want in {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
    }.items():
        lo, hi = newcombe(k1, n1, k2, n2, Z95_TWO_SIDED)
        assert (round(lo, 4), round(hi, 4)) == want
    # a tie at 0 % is not certain: the bound shrinks with n (a z-test's variance would be 0)
    assert newcombe(0, 20, 0, 20, 1.645)[1] > 0.1 > newcombe(0, 60, 0, 60, 1.645)[1]


def _arm(
    version: str,
    n: int,
    abstained: int = 0,
    unverified: int = 0,
    down: int = 0,
    latency: float = 100.0,
    cost: float = 0.0,
) -> Arm:
    answered = n - abstained
    return Arm(
        version,
        answers=n,
        abstained=abstained,
        thumbs_down=down,
        answered=answered,
        all_verified=answered - unverified,
        latencies=[latency] * n,
        cost=cost * n,
    )


S = ReleaseSettings(min_requests=50, margin=0.05, latency_ratio=0.25, latency_slack_ms=100)


def test_the_rule_waits_advances_and_rolls_back() -> None:
    live = _arm("v3", 60)
    assert judge(live, _arm("v4", 40), S)[0] == "wait"  # under min_requests
    assert judge(live, _arm("v4", 60), S)[0] == "advance"  # a tie, shown within the margin
    verdict, reasons, checks = judge(live, _arm("v4", 60, abstained=20), S)
    assert verdict == "rollback" and "abstention_rate" in reasons[0]
    assert checks["abstention_rate"]["difference_bounds"][0] > 0.05
    assert judge(live, _arm("v4", 60, down=15), S)[0] == "rollback"
    assert judge(live, _arm("v4", 60, unverified=60), S)[0] == "rollback"
    # a little worse, not shown either way: wait, and past max_requests roll back
    unsure = _arm("v4", 60, abstained=3)
    assert judge(live, unsure, S)[0] == "wait"
    capped = ReleaseSettings(min_requests=50, max_requests=60)
    verdict, reasons, _ = judge(live, unsure, capped)
    assert verdict == "rollback" and "releases.max_requests" in reasons[0]
    # p95 latency and cost per answer: ratio bounds
    assert judge(live, _arm("v4", 60, latency=226.0), S)[0] == "rollback"  # > 100*1.25+100
    assert judge(live, _arm("v4", 60, latency=225.0), S)[0] == "advance"
    priced = _arm("v3", 60, cost=0.01)
    assert judge(priced, _arm("v4", 60, cost=0.0115), S)[0] == "rollback"
    assert judge(priced, _arm("v4", 60, cost=0.0105), S)[0] == "advance"


def _record(
    store: ReleaseStore, release: dict[str, Any], role: str, n: int, unverified: bool = False
) -> None:
    version = release["candidate"] if role == "candidate" else release["live"]
    for i in range(n):
        store.record(
            release, release["step"], role, version, f"{role}-{i}", False, not unverified, 50.0, 0.0
        )


def test_one_release_across_processes_and_a_restart(tmp_path: Path) -> None:
    a, b = ReleaseStore(tmp_path), ReleaseStore(tmp_path)  # two API processes, one data dir
    settings = ReleaseSettings(min_requests=5, margin=0.5)
    with pytest.raises(ReleaseError, match="ending at 100"):
        a.start("answer", "v3", "v4", [5, 50])
    release = a.start("answer", "v3", "v4", [5, 50, 100])
    with pytest.raises(ReleaseError, match="is running"):
        b.start("answer", "v3", "v5", [5, 100])
    user = next(u for u in (f"u{i}" for i in range(1000)) if subject_point(f"answer:{u}") < 0.05)
    assert (b.choose("answer", user) or ())[:2] == ("v4", "candidate")
    assert (b.choose("answer", None) or ())[:2] == ("v3", "unsplit")
    _record(a, release, "live", 5)
    _record(b, release, "candidate", 4)
    assert b.decide("answer", settings) is None  # 4 < min_requests
    _record(b, release, "candidate", 1)
    event = b.decide("answer", settings)
    assert event is not None and event["event"] == "advanced" and event["to_share"] == 50
    assert (a.release("answer") or {}).get("step") == 1, "the other process sees the step"
    assert a.decide("answer", settings) is None, "a new window: nothing in it yet"
    assert b.feedback("candidate-0", 0) and not b.feedback("nobody", 0)
    # a restart: a third store reads the files only
    c = ReleaseStore(tmp_path)
    assert c.status()["answer"]["share"] == {"v4": 50, "v3": 50}
    # no temporary file left beside the state, and it parses
    assert (
        sorted(p.name for p in (tmp_path / "releases").iterdir() if p.name.startswith(".prompts"))
        == []
    )
    json.loads((tmp_path / "releases" / "prompts.json").read_text())
    release = c.release("answer") or {}
    _record(c, release, "live", 5)
    _record(a, release, "candidate", 5, unverified=True)
    event = c.decide("answer", settings)
    assert event is not None and event["event"] == "rolled_back"
    assert "unverified_rate" in event["reason"]
    assert a.status()["answer"]["rollbacks"] == 1 and a.choose("answer", user) is None
    with pytest.raises(ReleaseError, match="no release"):
        a.rollback("answer", "by hand")
