"""Our metric code against ranx, per query and on average, to 1e-6 on a random graded fixture."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest

from evals.metrics import average, mrr_at, ndcg_at, percentile, precision_at, recall_at

KS = (1, 3, 5, 10, 20, 100)


def _fixture() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    rng = random.Random(1234)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(60):
        docs = [f"d{i}" for i in range(150)]
        judged = rng.sample(docs, rng.randint(1, 12))
        grades = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        grades[judged[0]] = max(grades[judged[0]], 1)  # every query has a relevant document
        # Some relevant documents are never retrieved (recall below 1 at any depth).
        retrieved = rng.sample(docs, rng.randint(5, 120))
        scores = rng.sample(
            range(1, 100_000), len(retrieved)
        )  # distinct: no tie-breaking ambiguity
        qrels[f"q{q}"] = grades
        run[f"q{q}"] = {d: s / 1000.0 for d, s in zip(retrieved, scores, strict=False)}
    return qrels, run


_RANX = """
import json, sys
from ranx import Qrels, Run, evaluate
data = json.load(sys.stdin)
metrics = [f"{m}@{k}" for m in ("ndcg", "recall", "precision") for k in data["ks"]] + ["mrr@10", "mrr@100"]
qrels = Qrels(data["qrels"])
out = evaluate(qrels, Run(data["run"]), metrics, return_mean=False)
ids = list(qrels.keys())  # the order of ranx's per-query arrays
print(json.dumps({m: dict(zip(ids, (float(x) for x in v))) for m, v in out.items()}))
"""


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    qrels, run = _fixture()
    # ranx JIT-compiles every metric with numba on first use (minutes on a busy CPU); the same
    # Python code interpreted is instant on a fixture this size, and is still ranx's code.
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _RANX],
        input=json.dumps({"qrels": qrels, "run": run, "ks": list(KS)}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {"qrels": qrels, "run": run, "ranx": json.loads(proc.stdout.strip().splitlines()[-1])}


def _ranked(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda d: -scores[d])


@pytest.mark.parametrize("k", KS)
def test_ndcg_recall_precision_match_ranx(reference: dict[str, Any], k: int) -> None:
    qids = list(reference["qrels"])
    for name, fn in (("ndcg", ndcg_at), ("recall", recall_at), ("precision", precision_at)):
        ours = [fn(_ranked(reference["run"][q]), reference["qrels"][q], k) for q in qids]
        theirs = [reference["ranx"][f"{name}@{k}"][q] for q in qids]
        assert ours == pytest.approx(theirs, abs=1e-6), f"{name}@{k}"
        assert average(ours) == pytest.approx(average(theirs), abs=1e-6)


@pytest.mark.parametrize("k", (10, 100))
def test_mrr_matches_ranx(reference: dict[str, Any], k: int) -> None:
    qids = list(reference["qrels"])
    ours = [mrr_at(_ranked(reference["run"][q]), reference["qrels"][q], k) for q in qids]
    assert ours == pytest.approx([reference["ranx"][f"mrr@{k}"][q] for q in qids], abs=1e-6)


def test_fixture_is_not_degenerate(reference: dict[str, Any]) -> None:
    # The comparison above means something only if scores spread between 0 and 1.
    values = list(reference["ranx"]["ndcg@10"].values())
    assert len(values) == 60
    assert 0 < average(values) < 1 and len(set(values)) > 10
    assert any(0 < v < 1 for v in reference["ranx"]["recall@100"].values())


def test_grade_zero_is_not_relevant() -> None:
    judged = {"a": 0, "b": 2}
    assert recall_at(["a", "b"], judged, 1) == 0.0
    assert mrr_at(["a", "b"], judged, 10) == 0.5
    assert ndcg_at(["b", "a"], judged, 10) == 1.0


def test_percentile_matches_numpy() -> None:
    import numpy as np

    values = [random.Random(7).uniform(0, 100) for _ in range(37)]
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)
    assert percentile([], 50) == 0.0
