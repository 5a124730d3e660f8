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


ACCESS = "Production access is granted only after you complete the security training."
ACCOUNTS = (
    "Your SSO account is created by the People team before you start; multi-factor "
    "authentication is mandatory and must use a hardware key."
)
CLAIMS = "Submit expense claims within 30 days, with a receipt for every item above 25 EUR."
RETENTION = "Backups are retained for 35 days; monthly snapshots are kept for 13 months."
POSTMORTEM = (
    "After the incident is resolved, the incident commander schedules a blameless postmortem "
    "within five business days."
)


def test_an_opening_clause_echoing_the_question_is_the_answer_not_the_claim() -> None:
    claim = "Not straight away: production access is only granted once you've completed the security training."
    asked = "Do I get prod access straight away?"
    assert check(claim, [ACCESS], [ACCESS], question=asked).score >= 0.75
    # without the question, "not straight away" is a negation and a phrase the passage lacks
    assert check(claim, [ACCESS], [ACCESS]).score == 0.0


def test_more_word_forms_meet_the_passage_word() -> None:
    free = "The free tier allows 60 requests per minute under Default limits."
    paging = "SEV1 incidents page the incident commander."
    for claim, passage in (
        ("The free-tier limit is 60 requests per minute.", free),  # a hyphenated word's parts
        ("With a SEV1, the incident commander is paged.", paging),  # "paged" / "page"
        (
            "The incident commander is responsible for scheduling a blameless postmortem.",
            POSTMORTEM,
        ),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.unmatched == [], (claim, verdict)


def test_frames_and_requirement_words_around_a_fact_say_nothing() -> None:
    assert _check("Backups are retained for a period of 35 days.", RETENTION) >= 0.75
    assert _check("Receipts are required for items above 25 EUR.", CLAIMS) >= 0.75
    assert (
        _check("Monthly snapshots, on the other hand, are kept for 13 months.", RETENTION) >= 0.75
    )
    # the requirement's opposite still flips: optional is not required
    assert _check("Receipts are optional for items above 25 EUR.", CLAIMS) == 0.0


def test_a_word_of_the_language_opening_the_sentence_is_no_name() -> None:
    # "Regular" opens the sentence capitalised; it is an adjective, not a name nobody gave
    verdict = check("Regular backups are retained for 35 days.", [RETENTION], [RETENTION])
    assert verdict.missing == []


def test_an_acronym_one_side_spells_out_the_other_says() -> None:
    for claim in (
        "MFA is mandatory and must use a hardware key.",
        "Your single sign-on account is created by the People team before you start.",
    ):
        verdict = check(claim, [ACCOUNTS], [ACCOUNTS])
        assert verdict.score >= 0.75 and verdict.unmatched == [], (claim, verdict)
    # words that merely start with the same letters spell nothing
    verdict = check("All people involved create it.", [ACCOUNTS + " API keys rotate."], [ACCOUNTS])
    assert "involved" in verdict.unmatched


RATE_LIMITED = (
    "The API answers with HTTP status 429 and a Retry-After header that gives the number of "
    "seconds to wait. Clients should back off exponentially and retry at most five times."
)
BACKUP_ENCRYPTION = "Backups are encrypted with AES-256 and stored in a second region, eu-west-2."


def test_a_light_verb_says_nothing_in_its_ing_form_either() -> None:
    # "stating" as "states"/"stated": with "returned" for "answers with" one reworded word
    # is left, a rewording; before, two were, and the faithful sentence was refused
    verdict = check(
        "An HTTP 429 is returned, together with a Retry-After header stating how many seconds "
        "the client should wait.",
        [RATE_LIMITED],
        [RATE_LIMITED],
    )
    assert verdict.score >= 0.75 and "stating" not in verdict.unmatched, verdict
    # a noun the list holds ("time") keeps its "-ing": "timing" is a word of the claim
    assert "timing" in check("The timing is random.", ["Jobs run."], ["Jobs run."]).unmatched


def test_an_action_named_by_its_noun_needs_no_carrying_verb_from_the_passage() -> None:
    # "encryption is applied to backups" says "backups are encrypted"
    for claim in (
        "AES-256 encryption is applied to backups.",
        "Backup encryption is performed with AES-256.",
    ):
        verdict = check(claim, [BACKUP_ENCRYPTION], [BACKUP_ENCRYPTION])
        assert verdict.score >= 0.75 and verdict.unmatched == [], (claim, verdict)
    # what it is applied to is still the passage's to say
    verdict = check(
        "AES-256 encryption is applied to logs.", [BACKUP_ENCRYPTION], [BACKUP_ENCRYPTION]
    )
    assert verdict.score < 0.75 and verdict.unmatched == ["logs"]


ROLES_RUNBOOK = (
    "When an alert fires, the on-call engineer opens an incident channel named after the date. "
    "After the incident is resolved, the incident commander schedules a blameless postmortem "
    "within five business days."
)


def test_the_actor_of_an_action_is_one_the_passage_names_for_it() -> None:
    sentences = split_sentences(ROLES_RUNBOOK)
    # a role the passage names, but for another action: the claim swapped who does it
    for claim in (
        "The postmortem is scheduled by the on-call engineer once the incident is resolved.",
        "The on-call engineer schedules the postmortem after the incident is resolved.",
        "An incident channel is opened by the incident commander when an alert fires.",
    ):
        verdict = check(claim, [ROLES_RUNBOOK], sentences)
        assert verdict.score == 0.0 and verdict.missing, (claim, verdict)
    # the role the passage gives the action, passive or active, is kept
    for claim in (
        "The postmortem is scheduled by the incident commander once the incident is resolved.",
        "The incident commander schedules the postmortem after the incident is resolved.",
        "The on-call engineer opens an incident channel when an alert fires.",
    ):
        verdict = check(claim, [ROLES_RUNBOOK], sentences)
        assert verdict.score >= 0.75 and verdict.missing == [], (claim, verdict)


# -- issue 22, session 5: leaks closed as classes, and chatty wording -------------------------
RUNBOOK_FULL = (
    "When an alert fires, the on-call engineer opens an incident channel named after the date "
    "and the affected service, for example inc-2026-03-14-billing. Severity levels: SEV1 means "
    "customers cannot use the product; SEV2 means a major feature is degraded; SEV3 means a "
    "minor issue with a workaround. SEV1 incidents page the incident commander and require a "
    "status page update within 15 minutes. After the incident is resolved, the incident "
    "commander schedules a blameless postmortem within five business days."
)
TIERS = (
    "The free tier allows 60 requests per minute. The business tier allows 1,200 requests per "
    "minute with bursts of up to 200 requests per second."
)
SCHEDULE = (
    "Full database backups run nightly at 02:00 UTC. Backups are retained for 35 days; monthly "
    "snapshots are kept for 13 months."
)
MERGING = (
    "Builds run in CI on every push; a green build is required before a pull request can be merged."
)
ON_CALL = (
    "New engineers join the on-call rotation after six weeks. A rotation lasts seven days, "
    "starting Monday at 10:00 UTC."
)


def test_the_actor_of_a_reworded_action_is_the_one_its_passage_sentence_names() -> None:
    # "arranged" is not "schedules": the action is found by what it is done to instead
    for claim in (
        "The blameless postmortem is arranged by the on-call engineer.",
        "The on-call engineer organises a blameless postmortem within five business days.",
    ):
        verdict = check(claim, [RUNBOOK_FULL], split_sentences(RUNBOOK_FULL))
        assert verdict.score == 0.0 and "on-call engineer" in verdict.missing, (claim, verdict)
    for claim in (
        "The blameless postmortem is arranged by the incident commander.",
        "The incident commander organises a blameless postmortem within five business days.",
    ):
        assert _check(claim, RUNBOOK_FULL) >= 0.75, claim


def test_two_events_told_in_the_other_order_say_the_opposite() -> None:
    for claim, passage in (
        ("You can merge a pull request before the build is green.", MERGING),
        ("A pull request can be merged before the build is green.", MERGING),
        ("New engineers join the on-call rotation before six weeks.", ON_CALL),
        ("The postmortem is scheduled before the incident is resolved.", RUNBOOK_FULL),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score == 0.0 and verdict.flipped, (claim, verdict)
    for claim, passage in (
        ("A pull request can only be merged after the build is green.", MERGING),
        ("You need a green build before a pull request can be merged.", MERGING),
        ("A pull request can't be merged until the build is green.", MERGING),
        ("After six weeks, new engineers join the on-call rotation.", ON_CALL),
        (
            "Once the incident is resolved, the incident commander schedules a postmortem.",
            RUNBOOK_FULL,
        ),
    ):
        assert _check(claim, passage) >= 0.75, claim


def test_a_value_said_of_another_subject_of_its_passage_is_not_grounded() -> None:
    for claim, passage, value in (
        ("The business tier allows 60 requests per minute.", TIERS, "60 requests"),
        ("The free tier allows bursts of up to 200 requests per second.", TIERS, "200 requests"),
        ("Monthly snapshots are retained for 35 days.", SCHEDULE, "35 days"),
        ("Backups are kept for 13 months.", SCHEDULE, "13 months"),
        ("A SEV2 means customers cannot use the product at all.", RUNBOOK_FULL, "SEV2"),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score == 0.0 and value in verdict.missing, (claim, verdict)
    # each value with what the passage says it of; both values in one claim; a value of
    # another kind ("nightly") is no rival to a duration
    for claim, passage in (
        ("The free tier allows 60 requests per minute.", TIERS),
        ("Business-tier clients may burst to 200 requests per second.", TIERS),
        ("Backups are retained for 35 days and monthly snapshots for 13 months.", SCHEDULE),
        ("Database backups are kept for 35 days.", SCHEDULE),
        ("A SEV2 means a major feature is degraded.", RUNBOOK_FULL),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score >= 0.75 and verdict.missing == [], (claim, verdict)


def test_a_claim_pieced_from_two_sentences_has_no_word_to_spare() -> None:
    # its subject from one sentence, the rest from another, and a word neither says
    claim = "The incident commander is whoever is the secondary on-call when the alert fires."
    verdict = check(claim, [RUNBOOK_FULL], split_sentences(RUNBOOK_FULL))
    assert verdict.score == 0.0 and verdict.missing == ["secondary"], verdict
    # one sentence reworded keeps its spare word ("shifts"); "starting" elsewhere is chance
    claim = "New engineers start taking on-call shifts once they have been here for six weeks."
    assert _check(claim, ON_CALL) >= 0.75


def test_chatty_frames_lead_ins_and_phrasal_verbs_say_nothing() -> None:
    laptops = "All laptops use full-disk encryption. Screens lock after 5 minutes of inactivity."
    passwords = (
        "Passwords must be at least 14 characters long and stored in the company password manager."
    )
    reviews = "Reviews should be answered within one working day."
    exceeded = "The API answers with HTTP status 429 when a limit is exceeded."
    for claim, passage in (
        ("The good news is that all laptops use full-disk encryption.", laptops),
        ("They're kept for 35 days, while monthly snapshots stick around for 13 months.", SCHEDULE),
        ("A 429 is what the API sends back when you've exceeded a limit.", exceeded),
        (
            "Passwords, meanwhile, have to be at least 14 characters and live in the company "
            "password manager.",
            passwords,
        ),
        ("You're expected to answer reviews within one working day.", reviews),
        ("And no, you can't merge a pull request until that build is green.", MERGING),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score >= 0.75, (claim, verdict)
    # what the frame wraps is still the passage's to say
    assert _check("The good news is that all laptops use tape backups.", laptops) == 0.0
    assert (
        _check("And yes, you can merge a pull request before the build is green.", MERGING) == 0.0
    )


def test_more_chatty_wording_is_read_and_its_opposites_still_flip() -> None:
    onboarding = (
        "Your SSO account is created by the People team before you start; multi-factor "
        "authentication is mandatory and must use a hardware key."
    )
    reviews = "Reviews should be answered within one working day."
    laptops = "All laptops use full-disk encryption."
    wiki = "Results of each restore test are recorded in the reliability wiki."
    for claim, passage in (
        (
            "Totally — your SSO account gets set up by the People team before your start date.",
            onboarding,
        ),
        ("Heads up: MFA is mandatory, and you'll need a hardware key for it.", onboarding),
        ("Try to get back to reviews within one working day.", reviews),
        ("Restore test results get logged in the reliability wiki.", wiki),
    ):
        verdict = check(claim, [passage], split_sentences(passage))
        assert verdict.score >= 0.75, (claim, verdict)
    # "turned off" is the opposite of using it; a wiki, portal or tier is named by its word
    assert _check("Every laptop has full-disk encryption turned off.", laptops) == 0.0
    verdict = check("Restore test results get logged in the security wiki.", [wiki], [wiki])
    assert verdict.score == 0.0 and verdict.missing == ["security wiki"], verdict


def test_a_bound_on_a_number_flips_to_its_opposite() -> None:
    from rag.verification.grounding import flipped

    economy = "Economy class is the default for flights under six hours."
    assert flipped("Economy is the default for flights over six hours.", economy)
    assert flipped("Economy is the default for flights longer than 6 hours.", economy)
    assert not flipped("Economy is the default for flights shorter than six hours.", economy)
    # "over" that bounds no number is a word like any other
    assert not flipped(
        "Economy is the default, over and above any upgrade, under six hours.", economy
    )


# -- issue 22, session 6: a value belongs to what its passage sentence says it of -------------
# The passages as retrieved from examples/docs (their line breaks kept).
BACKUP_SCHEDULE = (
    "Full database backups run nightly at 02:00 UTC. Incremental backups (write-ahead log "
    "shipping)\nrun continuously with a recovery point objective (RPO) of 5 minutes. Backups "
    "are retained for\n35 days; monthly snapshots are kept for 13 months."
)
RESTORE_TESTS = (
    "Backup and Restore Policy\nRestore tests\nA restore test runs every quarter. The recovery "
    "time objective (RTO) for the main customer\ndatabase is 4 hours. Results of each restore "
    "test are recorded in the reliability wiki."
)
PASSWORDS_AND_KEYS = (
    "Security Handbook\nPasswords and keys\nPasswords must be at least 14 characters long and "
    "stored in the company password manager.\nAPI keys are rotated every 90 days. A leaked key "
    "must be revoked immediately and reported to security@northwind.example."
)
TRAVEL = (
    "Economy class is the default for flights under six hours. Business class may be booked for "
    "flights longer than six hours with manager approval. Hotel costs are reimbursed up to 180 "
    "EUR per night."
)
BOOTSTRAP = (
    "Clone the monorepo and run `make bootstrap`. The bootstrap script installs Python 3.11, the\n"
    "pre-commit hooks and a local Postgres 16 container. Builds run in CI on every push; a green\n"
    "build is required before a pull request can be merged."
)
CODE_REVIEW = (
    "Every change needs one approving review from a code owner. Reviews should be answered "
    "within\none working day. Large changes (over 400 lines) should be split into smaller pull "
    "requests."
)
INCIDENT = (
    "When an alert fires, the on-call engineer opens an incident channel named after the date "
    "and\nthe affected service, for example inc-2026-03-14-billing.\n\nAfter the incident is "
    "resolved, the incident commander schedules a blameless postmortem within\nfive business "
    "days."
)


def test_a_value_is_not_given_to_a_subject_another_sentence_names() -> None:
    # 02:00 is the full backups' time; "incremental" is what the next sentence speaks of (no
    # rival clock time there to compare with)
    assert _check("Incremental backups run nightly at 02:00 UTC.", BACKUP_SCHEDULE) == 0.0
    assert _check("Full database backups run nightly at 02:00 UTC.", BACKUP_SCHEDULE) == 1.0
    # 14 characters is the passwords' length, not the API keys' (a rival of another kind, 90
    # days, is no help)
    assert _check("API keys must be at least 14 characters long.", PASSWORDS_AND_KEYS) == 0.0
    assert _check("Passwords must be at least 14 characters long.", PASSWORDS_AND_KEYS) == 1.0
    # each value from its own sentence, the subject of one with the deadline of the other
    claim = "Pull requests over 400 lines must be answered within one working day."
    assert _check(claim, CODE_REVIEW) == 0.0
    assert (
        _check("Reviews of pull requests should be answered within one working day.", CODE_REVIEW)
        >= 0.75
    )
    # ... and a synthesis that keeps each value with its own subject still passes
    claim = "Full database backups run nightly at 02:00 UTC, and backups are kept for 35 days."
    assert _check(claim, BACKUP_SCHEDULE) >= 0.75


def test_a_bound_is_read_against_the_sentence_holding_the_value_it_bounds() -> None:
    # both sentences hold "six hours", one under and one over: the claim's words say which
    assert _check("Economy class is the default for flights longer than six hours.", TRAVEL) == 0.0
    claim = "Business class may be booked for flights shorter than six hours with manager approval."
    assert _check(claim, TRAVEL) == 0.0
    assert _check("Economy is the default when a flight lasts more than six hours.", TRAVEL) == 0.0
    assert _check("Economy class is the default for flights shorter than six hours.", TRAVEL) == 1.0
    claim = "Flights longer than six hours may be booked in business class with manager approval."
    assert _check(claim, TRAVEL) == 1.0


def test_a_version_belongs_to_the_product_it_follows() -> None:
    assert _check("The bootstrap script installs Python 16.", BOOTSTRAP) == 0.0
    assert _check("The bootstrap script installs Postgres 3.11.", BOOTSTRAP) == 0.0
    claim = "The bootstrap script installs Python 3.11 and a local Postgres 16 container."
    assert _check(claim, BOOTSTRAP) == 1.0


def test_how_often_is_not_how_long() -> None:
    # "every quarter" is every three months, ninety days apart; it says nothing of how long
    # anything is kept
    claim = "According to the backup policy, backups are retained for ninety days."
    assert _check(claim, RESTORE_TESTS) == 0.0
    assert _check("A restore test runs every three months.", RESTORE_TESTS) == 1.0
    assert _check("A restore test is run quarterly.", RESTORE_TESTS) == 1.0


def test_the_actor_after_an_opening_clause_is_checked_too() -> None:
    claim = "Once the incident is resolved, the on-call engineer schedules a blameless postmortem."
    assert _check(claim, INCIDENT) == 0.0
    claim = (
        "Once the incident is resolved, the incident commander schedules a blameless postmortem."
    )
    assert _check(claim, INCIDENT) == 1.0


def test_a_named_kind_is_not_swapped_for_another_word() -> None:
    # the passage rotates API keys; "encryption keys" are keys it never speaks of, though the
    # sentence before said "encrypted" (so the word itself is held)
    before = "Backups are encrypted with AES-256."
    claim = "The encryption keys are rotated every ninety days."
    assert _check(claim, PASSWORDS_AND_KEYS, before) == 0.0
    assert _check("API keys get rotated every ninety days.", PASSWORDS_AND_KEYS, before) == 1.0
    assert _check("Keys are rotated every ninety days.", PASSWORDS_AND_KEYS, before) == 1.0


def test_a_wrapped_line_going_on_with_a_name_is_no_heading() -> None:
    # "... starting\nMonday at 10:00 UTC." is one sentence: its subject is the rotation's
    rotation = (
        "New engineers join the on-call rotation after six weeks. A rotation lasts seven days, "
        "starting\nMonday at 10:00 UTC."
    )
    claim = "Each rotation is a week long and starts Monday at 10:00 UTC."
    assert _check(claim, rotation) == 1.0
    # a heading line above a sentence is still not part of it
    assert _check("API keys must be at least 14 characters long.", PASSWORDS_AND_KEYS) == 0.0


def test_an_instruction_opens_with_a_verb_not_a_name() -> None:
    access = "Request a laptop from IT on your first day."
    verdict = check("Grab a laptop from IT on your first day.", [access], [access])
    assert verdict.missing == []
    # a name opening a sentence is followed by its verb, and is still looked for
    verdict = check("Deabolis requested a laptop from IT.", [access], [access])
    assert verdict.missing == ["Deabolis"]
