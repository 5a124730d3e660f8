"""Values in a claim must be in the cited passage (normalised), and negations must not flip."""

from __future__ import annotations

import pytest

from rag.verification.grounding import flipped, negated, ungrounded, values

BACKUPS = (
    "Full database backups run nightly at 02:00 UTC. Incremental backups run continuously with "
    "a recovery point objective (RPO) of 5 minutes. Backups are retained for 35 days; monthly "
    "snapshots are kept for 13 months. Backups are encrypted with AES-256 and stored in a "
    "second region, eu-west-2."
)
LIMITS = (
    "The free tier allows 60 requests per minute. The business tier allows 1,200 requests per "
    "minute with bursts of up to 200 requests per second. Hotel costs are reimbursed up to 180 "
    "EUR per night. Report a leaked key to security@northwind.example within one hour."
)
ONBOARDING = (
    "Production access is granted only after you complete the security training, usually on "
    "day three. The bootstrap script installs Python 3.11 and a local Postgres 16 container. "
    "Run `make bootstrap` first. The tower was built between 1887 and 1889."
)


def _missing(claim: str, passage: str) -> list[str]:
    return [v.text for v in ungrounded(claim, [passage])]


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("Backups are kept for thirty-five days.", BACKUPS),  # "35" = "thirty-five"
        ("Backups are kept for five weeks.", BACKUPS),  # a duration converts
        ("Full backups run every night at 2 am UTC.", BACKUPS),  # "02:00" = "2 am"
        ("The RPO is five minutes.", BACKUPS),
        ("The business tier allows 1200 requests a minute.", LIMITS),  # "1,200" = 1200
        ("Hotel stays are reimbursed up to €180 a night.", LIMITS),  # "€" = "EUR"
        ("A leaked key goes to security@northwind.example within an hour.", LIMITS),
        ("This usually happens on the third day.", ONBOARDING),  # "day three" = "third day"
        ("It installs Python 3.11 and Postgres 16.", ONBOARDING),
        ("Start with make bootstrap.", ONBOARDING),  # a code name without its backticks
        ("It was built in 1888.", ONBOARDING),  # a range holds the numbers inside it
        ("Copies go to eu-west-2 and are encrypted with AES-256.", BACKUPS),
    ],
)
def test_values_the_passage_states_are_grounded_however_written(claim: str, passage: str) -> None:
    assert _missing(claim, passage) == []


@pytest.mark.parametrize(
    ("claim", "passage", "missing"),
    [
        ("Backups are retained for 90 days.", BACKUPS, "90 days"),
        ("Backups are retained for 35 hours.", BACKUPS, "35 hours"),  # the unit differs
        ("Full backups run nightly at 03:00 UTC.", BACKUPS, "03:00"),
        ("The business tier allows 1,200 requests per hour.", LIMITS, "1,200 requests"),
        ("Hotel costs are reimbursed up to 180 USD per night.", LIMITS, "180 USD"),
        ("Report a leaked key to security@northwind.com.", LIMITS, "security@northwind.com"),
        ("Backups are stored in eu-west-1.", BACKUPS, "eu-west-1"),
        ("The bootstrap script installs Python 3.12.", ONBOARDING, "3.12"),
        ("Results are recorded in Confluence.", BACKUPS, "Confluence"),
        ("Production access is usually granted on day two.", ONBOARDING, "day two"),
        ("Backups are kept for 35 days and archived for seven years.", BACKUPS, "seven years"),
    ],
)
def test_a_value_the_passage_lacks_or_contradicts_is_not_grounded(
    claim: str, passage: str, missing: str
) -> None:
    assert _missing(claim, passage) == [missing]


def test_values_kinds_and_normal_forms() -> None:
    found = {(v.kind, v.number, v.unit, v.key) for v in values("It costs EUR 1,200 at 2:30 pm.")}
    assert ("number", 1200.0, "eur", "") in found
    assert ("clock", 14 * 60 + 30.0, None, "") in found
    # pronouns and counts that are no values: "one of", "the one"
    assert values("One of them is the one that matters.") == []


def test_question_names_need_no_passage_but_question_numbers_need_one() -> None:
    # "Northwind" comes from the question; the number must still be in a passage.
    assert ungrounded("Northwind keeps backups for 35 days.", [BACKUPS], ["Does Northwind?"]) == []
    missing = ungrounded(
        "Northwind keeps backups for 40 days.", [BACKUPS], ["40 days at Northwind?"]
    )
    assert [v.text for v in missing] == ["40 days"]


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        (
            "A green build is not required before merging.",
            "A green build is required before merging.",
        ),
        ("MFA is optional.", "Multi-factor authentication is mandatory."),
        ("Economy is no longer the default.", "Economy is the default."),
        ("Backups are encrypted.", "Backups are never encrypted."),
        ("Retry at most five times.", "Retry at least five times."),
    ],
)
def test_a_flipped_negation_or_pole_is_caught(claim: str, source: str) -> None:
    assert flipped(claim, source)


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("Never share your password.", "Passwords must not be shared with anyone."),
        ("Retry no more than five times.", "Retry at most five times."),
        ("Backups are kept for 35 days.", "Backups are retained for 35 days."),
        ("It is mandatory to use a hardware key.", "A hardware key is required."),
    ],
)
def test_the_same_polarity_in_other_words_is_not_a_flip(claim: str, source: str) -> None:
    assert not flipped(claim, source)
    assert negated("Passwords must not be shared.") and not negated("No more than five.")


def test_a_single_is_one_and_counts_as_a_value() -> None:
    # "a single approving review" restates "one approving review" and differs from "two"
    assert _missing("It needs a single approving review.", "It needs one approving review.") == []
    assert _missing("It needs a single approving review.", "It needs two approving reviews.") == [
        "single approving"
    ]


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        # an aside the rewording leaves out, and an editor's note, negate nothing it says
        (
            "It is a single-step engine that consumes approx. 4 kg of steam per kWh.",
            "It is a single-step engine (no compound) that consumes approx. 4 kg of steam per kWh.",
        ),
        ("These engines are used in toys.", "These engines are used in toys.[citation needed]"),
    ],
)
def test_a_negation_inside_an_aside_is_not_a_flip(claim: str, source: str) -> None:
    assert not flipped(claim, source)


def test_a_negation_outside_the_aside_still_flips() -> None:
    assert flipped("The engine is not compound (single-step).", "The engine is compound.")


def test_an_answer_word_before_the_sentence_is_no_negation() -> None:
    # "No, ..." answers a yes/no question; the sentence after it says what the passage says
    assert not flipped(
        "No, a pull request can only be merged once its CI build is green.",
        "A green build is required before a pull request can be merged.",
    )
    assert flipped("No, a pull request cannot be merged.", "A pull request can be merged.")


@pytest.mark.parametrize(
    ("claim", "passage", "missing"),
    [
        # a team named by the word before "team" is a name: swapping it is a wrong value
        (
            "Requests for higher limits are reviewed by the security team.",
            "Requests for higher limits are reviewed by the platform team.",
            "security team",
        ),
        # a product named with a leading digit is a name too
        (
            "The company password manager is 1Password.",
            "Passwords are stored in the company password manager.",
            "1Password",
        ),
    ],
)
def test_named_teams_and_digit_led_names_must_be_in_the_passage(
    claim: str, passage: str, missing: str
) -> None:
    assert _missing(claim, passage) == [missing]
    assert _missing(claim, passage.replace("platform team", "security team") + " 1Password.") == []


def test_one_unit_of_time_is_a_duration_value() -> None:
    # "for a full week" is seven days; "for a month" is not
    assert _missing("Each rotation runs for a full week.", "A rotation lasts seven days.") == []
    assert _missing("Each rotation runs for a month.", "A rotation lasts seven days.") == [
        "a month"
    ]
    # how often is a value too, whichever way it is said ("once a week", "weekly")
    assert _missing("Backups run once a week.", "Backups run weekly.") == []
    assert _missing("Backups run once a week.", "Backups run every month.") == ["1 weeks"]


# -- issue 22, session 4: free rewording read by class ---------------------------------------
@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("The status page is updated within a quarter of an hour.", "within 15 minutes"),
        ("Replies come within three quarters of an hour.", "within 45 minutes"),
        ("It is done within half a day.", "within 12 hours"),
        ("It takes an hour and a half.", "It takes 90 minutes."),
        ("It takes two and a half days.", "It takes 60 hours."),
        ("It is kept for a couple of days.", "It is kept for 2 days."),
        ("The lot has one hundred and twenty spaces.", "The lot has 120 spaces."),
        ("Use a fourteen-character password.", "Passwords are at least 14 characters long."),
        ("Keys rotate every other week.", "Keys rotate every two weeks."),
        ("It allows 200 req/s.", "It allows bursts of 200 requests per second."),
        ("The business tier allows 1,200 rpm.", "It allows 1,200 requests per minute."),
        ("A restore test runs quarterly.", "A restore test runs every quarter."),
        ("A restore test runs every three months.", "A restore test runs every quarter."),
        ("Full backups are taken every night.", "Full database backups run nightly."),
    ],
)
def test_a_quantity_said_in_words_is_the_number_it_means(claim: str, passage: str) -> None:
    assert _missing(claim, passage) == []


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("The status page is updated within a quarter of an hour.", "within 30 minutes"),
        ("Screens lock after a ten-minute idle period.", "after 5 minutes of inactivity"),
        ("The lot has one hundred and twenty spaces.", "The lot has 100 spaces."),
        ("A restore test runs every month.", "A restore test runs every quarter."),
        ("It allows 200 req/s.", "It allows 200 requests per minute."),
    ],
)
def test_a_quantity_said_in_words_that_differs_is_not_grounded(claim: str, passage: str) -> None:
    assert _missing(claim, passage) != []


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        (
            "SEV1 means customers are unable to use the product.",
            "SEV1 means customers cannot use it.",
        ),
        ("Sharing a password is not allowed.", "Sharing a password is prohibited."),
        ("Hardware keys are not optional.", "Hardware keys are mandatory."),
        ("A green build is not required.", "A green build is optional."),
        ("Avoid sharing your password.", "Passwords must never be shared."),
        ("You can't merge until the build is green.", "A green build is required before merging."),
        ("Do not retry more than five times.", "Retry at most five times."),
    ],
)
def test_every_way_of_saying_no_is_one_polarity(claim: str, source: str) -> None:
    assert not flipped(claim, source)


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        (
            "SEV1 means customers are able to use the product.",
            "SEV1 means customers cannot use it.",
        ),
        ("Sharing a password is allowed.", "Sharing a password is prohibited."),
        ("A green build is required.", "A green build is optional."),
        ("You should share your password.", "Passwords must never be shared."),
    ],
)
def test_saying_no_one_way_against_yes_still_flips(claim: str, source: str) -> None:
    assert flipped(claim, source)


def test_a_contraction_opening_a_sentence_is_no_name() -> None:
    assert [v.text for v in values("It's better not to, and that's the rule.")] == []


def test_an_acronym_the_passage_spells_out_is_grounded() -> None:
    passage = "Multi-factor authentication is mandatory and must use a hardware key."
    assert _missing("MFA must use a hardware key.", passage) == []
    assert _missing("SSO must use a hardware key.", passage) == ["SSO"]


def test_an_abbreviation_and_single_in_a_name_are_no_values() -> None:
    # "e.g." is no dotted code name; "single sign-on" counts nothing ("a single review" does)
    claim = "Name it after the date, e.g. inc-2026-03-14-billing, in your single sign-on tool."
    assert [v.text for v in values(claim)] == ["2026-03-14", "inc-2026-03-14-billing"]
    assert [v.text for v in values("It needs a single review.")] == ["single review"]


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("Our recovery point objective is an hour.", "a recovery point objective of 5 minutes"),
        ("The rotation is a month long.", "A rotation lasts seven days."),
    ],
)
def test_one_unit_of_time_after_is_is_a_value_too(claim: str, passage: str) -> None:
    assert _missing(claim, passage) != []
    assert (
        _missing(claim, passage.replace("5 minutes", "one hour").replace("seven days", "30 days"))
        == []
    )


def test_not_with_a_verb_between_it_and_more_than_is_at_most() -> None:
    source = "Clients should retry at most five times."
    assert not flipped("Don't retry more than five times.", source)
    assert not flipped("Clients should not retry more than five times.", source)
    assert flipped("Clients should retry at least five times.", source)


def test_an_iso_date_inside_a_name_grounds_the_date_written_in_words() -> None:
    # issue 22, session 5: "a billing incident on March 14, 2026 would be inc-2026-03-14-billing"
    passage = "Channels are named after the date and service, for example inc-2026-03-14-billing."
    assert ungrounded("On March 14, 2026 it would be inc-2026-03-14-billing.", [passage]) == []
    missing = ungrounded("On April 14, 2026 it would be inc-2026-03-14-billing.", [passage])
    assert "April 14" in [v.text for v in missing]
