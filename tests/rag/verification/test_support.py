"""rag.verification.support.check: a claim's words covered by its passage, read generally."""

from __future__ import annotations

from rag.verification.citations import split_sentences
from rag.verification.support import check

RUNBOOK = (
    "When an alert fires, the on-call engineer opens an incident channel named after the date "
    "and the affected service, for example inc-2026-03-14-billing."
)
KEYS = (
    "API keys are rotated every 90 days. A leaked key must be revoked immediately and reported "
    "to security@northwind.example."
)


def _check(claim: str, passage: str, context: str = "") -> float:
    return check(claim, [passage], split_sentences(passage), context=context).score


def test_a_phrase_that_says_what_one_word_says_is_a_rewording() -> None:
    # "right away" is "immediately": a faithful paraphrase, not two words the passage lacks
    assert _check("A leaked API key has to be revoked right away.", KEYS) >= 0.75
    # ... and it is still the words that decide: a phrase the passage never says fails
    assert _check("A leaked API key has to be archived right away by legal.", KEYS) == 0.0


def test_a_code_name_holding_a_date_leaves_no_words_behind() -> None:
    # the date inside "inc-2026-03-14-billing" is masked after the whole name, so "inc" and
    # "billing" are not words the passage must hold a second time
    context = "The on-call engineer opens an incident channel named after the date and service."
    claim = "A billing incident's channel would be named like inc-2026-03-14-billing."
    assert check(claim, [RUNBOOK], split_sentences(RUNBOOK), context=context).unmatched == []
    assert _check(claim.replace("2026-03-14", "2026-04-01"), RUNBOOK, context) == 0.0


def test_a_negation_in_a_clause_the_claim_does_not_restate_is_no_flip() -> None:
    levels = (
        "Severity levels: SEV1 means customers cannot use the product; SEV2 means a major "
        "feature is degraded; SEV3 means a minor issue with a workaround."
    )
    assert _check("SEV2 means a major feature is degraded.", levels) == 1.0
    # the clause it does restate still decides
    assert _check("SEV1 means customers can use the product.", levels) == 0.0


def test_a_word_may_reword_in_more_than_one_sense() -> None:
    # "runs for a full week" is "lasts seven days": "run" is a synonym of "execute" and, as
    # a duration, of "last"; "a full week" is a week
    rotation = "A rotation lasts seven days, starting Monday at 10:00 UTC."
    assert _check("Each rotation runs for a full week, starting on Monday.", rotation) == 1.0
    assert _check("Each rotation runs for a full month, starting on Monday.", rotation) == 0.0


# -- issue 22, session 4: free rewording read by class ---------------------------------------
LARGE = "Large changes (over 400 lines) should be split into smaller pull requests."
LIMITS = (
    "The business tier allows 1,200 requests per minute with bursts of up to 200 requests per "
    "second. Clients should back off exponentially and retry at most five times."
)
SETUP = "Clone the monorepo and run `make bootstrap`."
BACKUPS = "Backups are encrypted with AES-256 and stored in a second region, eu-west-2."


def test_an_opening_clause_that_only_answers_negates_nothing() -> None:
    # "It's better not to" answers "Is that okay?"; what follows the comma is the claim
    claim = (
        "It's better not to, because any change over 400 lines is supposed to be broken up "
        "into smaller pull requests."
    )
    assert _check(claim, LARGE) >= 0.75
    # a negation in the clause that states the fact still flips it
    assert _check("Changes over 400 lines should not be split into smaller ones.", LARGE) == 0.0


def test_discourse_markers_hedges_and_modal_phrases_say_nothing() -> None:
    claim = "On top of that, it permits short bursts of as many as 200 requests per second."
    assert _check(claim, LIMITS) >= 0.75
    assert _check("In addition, clients are expected to retry at most five times.", LIMITS) >= 0.75
    # the words that state something are still required
    assert _check("On top of that, it permits nightly batch jobs of 200 requests.", LIMITS) == 0.0


def test_word_forms_a_rewording_uses_meet_the_passage_word() -> None:
    # a silent final e, two words written as one, a comparative: no word left unmatched
    for claim, passage in (
        ("After cloning the monorepo, you run make bootstrap.", SETUP),
        ("Clients should use exponential backoff, at most five retries.", LIMITS),
        ("Bigger changes (over 400 lines) should be split up.", LARGE),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score >= 0.75 and verdict.unmatched == [], (claim, verdict)


def test_a_noun_after_similar_refers_to_the_sentence_before() -> None:
    before = "All laptops use full-disk encryption."
    claim = "Backups get similar protection, since they are encrypted with AES-256."
    assert _check(claim, BACKUPS, context=before) >= 0.75
    # without a sentence before, "protection" is a word the passage does not say
    assert _check(claim, BACKUPS) < 0.75
