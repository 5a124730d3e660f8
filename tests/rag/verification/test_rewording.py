"""A faithful rewording in other words (formal register: nominalised, passive, synonyms) is
kept when its meaning is the passage sentence's; what it adds, changes or flips is not.

Issue 22, session 6: the claims are this session's own probes in the register of LLM-written
documentation, not any evaluation set's. The real embedder judges the meaning
(``SupportScorer.similarity``); the lexical checks judge values, names and polarity."""

from __future__ import annotations

import pytest

from rag.contracts import Passage
from rag.indexing.embedding import Embedder
from rag.verification.answer_types import AnswerType, expected_types
from rag.verification.citations import SupportScorer, split_sentences
from rag.verification.support import check
from tests.passages import passage

ON_CALL = (
    "New engineers join the on-call rotation after six weeks. A rotation lasts seven days, "
    "starting\nMonday at 10:00 UTC. The primary on-call engineer must acknowledge pages within 5 "
    "minutes."
)
SEVERITY = (
    "Severity levels: SEV1 means customers cannot use the product; SEV2 means a major feature "
    "is\ndegraded; SEV3 means a minor issue with a workaround. SEV1 incidents page the incident\n"
    "commander and require a status page update within 15 minutes."
)
LAPTOPS = (
    "All laptops use full-disk encryption. Screens lock automatically after 5 minutes of "
    "inactivity.\nLost or stolen devices must be reported to the IT helpdesk within one hour so "
    "they can be wiped remotely."
)
LIMITS = "The free tier allows 60 requests per minute."
LARGE = "Large changes (over 400 lines) should be split into smaller pull requests."
POSTMORTEM = (
    "After the incident is resolved, the incident commander schedules a blameless postmortem "
    "within\nfive business days."
)
CLAIMS = (
    "Submit expense claims within 30 days through the finance portal, with a receipt for every "
    "item above 25 EUR. Approved claims are paid with the next monthly salary."
)


def _passage(text: str) -> Passage:
    return passage(text, source="doc.md", title="Doc")


@pytest.fixture(scope="module")
def scorer(embedder: Embedder) -> SupportScorer:
    return SupportScorer(embedder.embed)


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("Engineers become eligible for the on-call rotation after six weeks.", ON_CALL),
        ("Each rotation spans seven days, commencing on Monday at 10:00 UTC.", ON_CALL),
    ],
)
def test_a_rewording_in_other_words_passes_when_it_means_the_sentence(
    scorer: SupportScorer, claim: str, passage: str
) -> None:
    assert scorer.check(claim, [_passage(passage)]).score >= 0.75
    # its words alone (no embedder to judge the meaning) are too few of the passage's
    assert check(claim, [passage], split_sentences(passage)).score < 0.75


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        # a phrase added, the passage's words all still said: nothing of it stands for them
        ("All laptops use full-disk encryption and a hardware firewall.", LAPTOPS),
        (
            "The primary on-call engineer must acknowledge pages within 5 minutes or face "
            "escalation.",
            ON_CALL,
        ),
        ("The free tier allows 60 requests per minute per user account.", LIMITS),
        (
            "The incident commander schedules a blameless postmortem within five business days "
            "and invites customers.",
            POSTMORTEM,
        ),
        # in other words that stand for the passage's, but meaning something else
        ("Large changes over 400 lines should be rejected automatically.", LARGE),
        # reworded, but a value changed or the sense negated
        ("Each rotation spans eight days, commencing on Monday at 10:00 UTC.", ON_CALL),
        ("SEV1 incidents never oblige a status page update inside fifteen minutes.", SEVERITY),
        ("Engineers become eligible for the on-call rotation after six months.", ON_CALL),
    ],
)
def test_a_rewording_that_adds_changes_or_flips_is_refused(
    scorer: SupportScorer, claim: str, passage: str
) -> None:
    assert scorer.check(claim, [_passage(passage)]).score == 0.0


def test_formal_synonyms_and_existence_words_read_as_the_passage_words() -> None:
    # "denotes" says "means", "oblige" "require", "inside" "within", "subsequent" "next",
    # "is available" only that it exists
    claim = "SEV1 incidents oblige a status page update inside fifteen minutes."
    verdict = check(claim, [SEVERITY], split_sentences(SEVERITY))
    assert verdict.score == 1.0 and verdict.unmatched == []
    claim = "Approved claims are settled through the subsequent monthly salary."
    assert check(claim, [CLAIMS], split_sentences(CLAIMS)).score >= 0.75
    claim = "A SEV1 classification denotes that customers are unable to use the product."
    assert check(claim, [SEVERITY], split_sentences(SEVERITY)).score >= 0.75
    claim = "SEV3 covers a minor issue for which a workaround is available."
    assert check(claim, [SEVERITY], split_sentences(SEVERITY)).score >= 0.75


def test_intensifiers_and_everyday_synonyms_say_no_more_than_the_passage() -> None:
    # "fully" only intensifies, "covered" is "reimbursed", "by themselves" "automatically"
    verdict = check("Laptops are fully disk-encrypted.", [LAPTOPS], split_sentences(LAPTOPS))
    assert verdict.unmatched == []
    hotels = "Hotel costs are reimbursed up to 180 EUR per night."
    verdict = check("Hotel costs are covered up to 180 EUR a night.", [hotels], [hotels])
    assert verdict.score == 1.0
    claim = "Screens lock by themselves after 5 minutes of inactivity."
    assert check(claim, [LAPTOPS], split_sentences(LAPTOPS)).score == 1.0
    # and the value still decides
    verdict = check("Hotel costs are covered up to 250 EUR a night.", [hotels], [hotels])
    assert verdict.score == 0.0


def test_british_spellings_and_function_words_read_as_the_passage_words() -> None:
    # "whilst" is "while" (a clause break too), "upon" a preposition, "-our" "-or"
    passage = "Monthly snapshots are kept for 13 months. Dashboards use the color of the team."
    claim = (
        "Monthly snapshots are kept for 13 months, whilst dashboards use the colour of the team."
    )
    assert check(claim, [passage], split_sentences(passage)).score == 1.0
    claim = "Production access is conferred upon completion of the security training."
    access = "Production access is granted only after you complete the security training."
    assert check(claim, [access], split_sentences(access)).score >= 0.75
    # and a word the passage does not say is still one
    assert (
        check("Dashboards use the colour of the team.", [passage], split_sentences(passage)).score
        == 1.0
    )
    assert (
        check("Dashboards use the odour of the team.", [passage], split_sentences(passage)).score
        < 0.75
    )


def test_a_kind_of_something_is_no_code_name_asked_for() -> None:
    # "which class of travel" asks for a kind of travel in words, not for a class in code
    assert AnswerType.NAME not in expected_types(
        "Which class of travel is standard for short flights?"
    )
    assert AnswerType.NAME in expected_types("Which class implements the parser?")
    assert AnswerType.NAME in expected_types("Which module of the standard library parses JSON?")
    assert AnswerType.NAME in expected_types("Which option of git tag makes an annotated tag?")


# Issue 22, session 6b: a passage sentence said again whole, plus one word of the claim's own.
# The one word the passage lacks used to pass as a rewording on coverage alone (5 of 6 words
# and more); it passes now only when it stands for a word of the restated clause the claim
# leaves out — the whole clause said again plus a word adds a participant, object or qualifier.
REVIEWS = (
    "Every change needs one approving review from a code owner. Reviews should be answered "
    "within\none working day. Large changes (over 400 lines) should be split into smaller pull "
    "requests."
)
ACTIONS = (
    "After the incident is resolved, the incident commander schedules a blameless postmortem "
    "within\nfive business days. Action items from the postmortem are tracked as tickets with an "
    "owner and\na due date."
)
ACCESS = (
    "Request a laptop from IT on your first day. Production access is granted only after you "
    "complete the security training, usually on day three."
)


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        # a new participant in a true list of who approves
        (
            "Every change needs one approving review from a code owner and a security reviewer.",
            REVIEWS,
        ),
        # a qualifier the passage never gives
        ("New engineers join the on-call rotation after six weeks of shadowing.", ON_CALL),
        # a new item in a list of what a ticket carries
        (
            "Action items from the postmortem are tracked as tickets with an owner, a priority "
            "and a due date.",
            ACTIONS,
        ),
        # a second condition for access
        (
            "Production access is granted only after you complete the security training and an "
            "exam.",
            ACCESS,
        ),
        # how the reviews are answered
        ("Reviews should be answered within one working day by email.", REVIEWS),
    ],
)
def test_a_passage_sentence_said_again_with_one_word_added_is_refused(
    scorer: SupportScorer, claim: str, passage: str
) -> None:
    assert scorer.check(claim, [_passage(passage)]).score == 0.0
    assert check(claim, [passage], split_sentences(passage)).score == 0.0


@pytest.mark.parametrize(
    ("claim", "passage", "context"),
    [
        # a function word around the passage's sentence adds nothing
        ("Reviews should generally be answered within one working day.", REVIEWS, ""),
        ("New engineers are able to join the on-call rotation after six weeks.", ON_CALL, ""),
        # a word inside the clause's own phrase, joined on by nothing, names what it names
        ("Every single change needs one approving review from a code owner.", REVIEWS, ""),
        (
            "In either case, once the incident is resolved, the incident commander schedules "
            "a blameless postmortem within five business days.",
            ACTIONS,
            "SEV2 and SEV3 incidents are less severe.",
        ),
        # one word of its own that stands for one the passage says: a rewording
        ("A rotation lasts seven days, kicking off Monday at 10:00 UTC.", ON_CALL, ""),
        ("Every change needs one approving sign-off from a code owner.", REVIEWS, ""),
    ],
)
def test_a_passage_sentence_said_again_with_a_function_word_is_kept(
    scorer: SupportScorer, claim: str, passage: str, context: str
) -> None:
    assert check(claim, [passage], split_sentences(passage), context=context).score >= 0.75
    assert scorer.check(claim, [_passage(passage)], context=context).score >= 0.75
