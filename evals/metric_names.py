"""What a flat report metric key says about itself: ``<suite>.<metric>``, e.g. ``golden.ndcg@10``.

Shared by the report (regressions, deltas) and its HTML page (which way is better), so neither
has to import the other for it.
"""

from __future__ import annotations

__all__ = ["higher_is_better", "is_quality_metric", "metric_name"]

_LOWER_IS_BETTER = (
    "false_abstention_rate_answerable",
    # the injection suite (evals/injection.py)
    "attack_success_planted",
    "attack_success_direct",
    "false_positive_rate_clean_chunks",
    "false_positive_rate_questions",
    # the verify suite (evals/verify.py): fabricated claims the user was shown
    "fabricated_shown",
)


_PARTS = ("first_turn.", "follow_up.")  # a conversation suite's turns (evals/conversations.py)


def metric_name(flat_key: str) -> str:
    """``golden.ndcg@10`` → ``ndcg@10``, ``chat.follow_up.gold_cited`` → ``gold_cited`` (a key
    without a suite is returned as it is)."""
    name = flat_key.split(".", 1)[1] if "." in flat_key else flat_key
    for part in _PARTS:
        name = name.removeprefix(part)
    return name


def is_quality_metric(flat_key: str) -> bool:
    """Latency and token counts move with the machine's load: they are not quality."""
    name = metric_name(flat_key)
    return not (name.startswith(("latency_ms", "tokens")))


def higher_is_better(flat_key: str) -> bool:
    name = metric_name(flat_key)
    # the injection suites' per-family and per-condition measures (evals/injection_attacks.py)
    lower = "attack_success" in name or name.endswith(("abstained", "false_positive_rate"))
    return not (name.startswith(("latency_ms", "tokens")) or name in _LOWER_IS_BETTER or lower)
