"""Question answer types and the sentence checks (rag/verification/answer_types.py); no model needed."""

from __future__ import annotations

import pytest

from rag.verification.answer_types import (
    AnswerType,
    RelevanceFeatures,
    about_something_else,
    expected_types,
    has_type,
    missing_names,
    relevance,
    type_match,
)

D, Q, T, F, P, L, N = (
    AnswerType.DURATION,
    AnswerType.QUANTITY,
    AnswerType.TIME,
    AnswerType.FREQUENCY,
    AnswerType.PERSON,
    AnswerType.PLACE,
    AnswerType.NAME,
)


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("How long do we keep database backups?", {D}),
        ("How quickly must the primary on-call acknowledge a page?", {D}),
        ("How soon after a SEV1 starts must the status page be updated?", {D}),
        ("How many approvals does a pull request need?", {Q}),
        ("How much does the hotel cost?", {Q}),
        ("What is the API rate limit?", {Q}),
        ("What is the minimum password length?", {Q}),
        ("When do new engineers join the on-call rotation?", {T}),
        ("What day does a rotation start?", {T}),
        ("The tower was built in what year?", {T}),
        ("How often are API keys rotated?", {F}),
        ("Who approves expenses over the limit?", {P}),
        ("Which team reviews the requests?", {P}),
        ("Where do I report a leaked key?", {L}),
        ("In which region are backup copies stored?", {L}),
        ("Who do I tell if my laptop is stolen, and how fast?", {P, D}),
        # not a question word here: "do ... when the API returns 429"
        ("What should a client do when the API returns 429?", set()),
        ("How are backups encrypted?", set()),
        ("What does SEV1 mean?", set()),
        ("Which module implements a heap queue?", {N}),
        ("Which modules help me write tests?", {N}),
        ("Which function returns the length of a list?", {N}),
        ("What module reads CSV files?", {N}),
        ("What function did the guild serve?", set()),  # English, not code
        ("What class of problems is it in?", set()),
        ("What does the pass statement do?", set()),  # about a named statement: no name asked
    ],
)
def test_expected_types(question: str, kinds: set[AnswerType]) -> None:
    assert expected_types(question) == frozenset(kinds)


@pytest.mark.parametrize(
    ("question", "sentence", "expected"),
    [
        # the three: supported sentences that answer another question
        (
            "When do new engineers join the on-call rotation?",
            "Welcome to the Northwind platform team.",
            False,
        ),
        (
            "When do new engineers join the on-call rotation?",
            "New engineers join the on-call rotation after six weeks.",
            True,
        ),
        (
            "What is the API rate limit?",
            "The Northwind public API limits requests per API key to protect shared capacity.",
            False,
        ),
        ("What is the API rate limit?", "The free tier allows 60 requests per minute.", True),
        (
            "Who approves expenses over the limit?",
            "The free tier allows 60 requests per minute.",
            False,
        ),
        (
            "Who approves expenses over the limit?",
            "Requests are reviewed by the platform team.",
            True,
        ),
        # a number the question already holds is no answer; "a second region" is no duration
        (
            "How many requests per minute does the free tier get?",
            "The free tier gets requests per minute.",
            False,
        ),
        (
            "How long are backups retained?",
            "Backups are stored in a second region, eu-west-2.",
            False,
        ),
        ("How long are backups retained?", "Backups are retained for 35 days.", True),
        ("In which region are backup copies stored?", "Copies are stored in eu-west-2.", True),
        ("In which region are backup copies stored?", "Backups are retained for 35 days.", False),
        ("Where do I report a leaked API key?", "Report it to security@northwind.example.", True),
        ("How often are API keys rotated?", "API keys are rotated every 90 days.", True),
        ("How often do we run a restore test?", "A restore test runs every quarter.", True),
        ("How often are API keys rotated?", "API keys are stored in the password manager.", False),
        (
            "When is the company holiday party?",
            "The free tier allows 60 requests per minute.",
            False,
        ),
        ("When was the Duchy founded?", "The Duchy began in 911 as a fiefdom.", True),
        ("When did they keep French names?", "They did so well into the nineteenth century.", True),
        ("Who is it?", "It is done.", False),  # "it" is no IT department
        ("Who do I tell?", "Tell the IT helpdesk.", True),
        (
            "How many approvals does a change need?",
            "Every change needs one approving review.",
            True,
        ),
        # a count is no version, year or ordinal
        (
            "How many employees does the foundation have?",
            "The foundation holds the copyright on Python versions 2.1 and newer.",
            False,
        ),
        ("How many employees does the foundation have?", "In 2001, it was formed.", False),
        ("How many employees does the foundation have?", "It has 2001 employees.", True),
        (
            "How many spaces should I indent with?",
            "The spaces before the first non-blank character make the indentation.",
            False,
        ),
        ("How many spaces should I indent with?", "Use 4-space indentation.", True),
        # a code name, or a word the sentence calls a module / function / ...
        ("Which module implements a heap queue?", "The new heapq module implements it.", True),
        ("Which module implements a heap queue?", "This module implements a heap queue.", False),
        ("Which module reads CSV files?", "The csv module's reader reads them.", True),
        ("Which module works with SQLite databases?", "Use sqlite3 for SQLite databases.", True),
        ("Which module provides a deque?", "class collections.deque([iterable])", True),
        ("Which function iterates in parallel?", "zip() iterates in parallel.", True),
        ("Which class parses arguments?", "ArgumentParser parses them.", True),
        # SQL keywords and environment variables are written in capitals
        ("Which command starts a transaction block?", "BEGIN starts one.", True),
        ("Which command starts a transaction block?", "Start one with the keyword.", False),
        (
            "Which module provides a deque?",
            "Deque objects provide one read-only attribute.",
            False,
        ),
        (
            "Which modules help me write tests?",
            "A test suite for a module can serve as a module interface specification.",
            False,
        ),
    ],
)
def test_type_match(question: str, sentence: str, expected: bool) -> None:
    assert type_match(question, sentence) is expected


def test_missing_names_are_the_question_names_the_passage_never_mentions() -> None:
    passage = "For more on this configuration, see the relevant section of the Django docs."
    question = "How do I configure the Django ORM for PostgreSQL?"
    assert missing_names(question, passage) == ["ORM", "PostgreSQL"]
    assert missing_names("What is the GIL?", "The caller must hold the GIL.") == []
    assert missing_names("What does sys.path hold?", "A list of strings: sys.path.") == []
    assert missing_names("What does sys.path hold?", "The module search path.") == ["sys.path"]
    # the first word is capitalised anyway; "I" is no name; accents do not matter
    assert missing_names("Backups: how do I restore one?", "Restores take an hour.") == []
    assert missing_names("What is Thomas de Maiziere's role?", "Thomas de Maizière is") == []


def test_a_passage_is_about_something_else_when_most_names_are_missing() -> None:
    question = "How do I configure the Django ORM for PostgreSQL?"
    assert about_something_else(question, "See the relevant section of the Django docs.")
    assert not about_something_else(question, "The Django ORM talks to PostgreSQL via psycopg.")
    # names in what is asked count, not the asker's contact details or signature
    signed = (
        "How long are backups kept? Mail me at jane.roe@gmail.com or call 415 555 0100, Jane Roe"
    )
    assert missing_names(signed, "Backups are kept for 35 days.") == []
    assert missing_names("What does sys.path hold? And os.environ?", "") == [
        "sys.path",
        "os.environ",
    ]
    # one missing name is a misspelling or paraphrase as often as not
    assert not about_something_else("How many US presidents studied here?", "Eight U.S. ...")
    assert not about_something_else("When did Maiziere resign?", "Maizière resigned in 1990.")
    assert not about_something_else("What did Teslas engines do?", "Tesla built engines.")
    # but a question's only name that nothing in the passage is even spelt like is missing:
    # the page is about something else (a near miss: PostgreSQL's port for Oracle's)
    oracle = "Which port does the Oracle listener use by default?"
    assert about_something_else(oracle, "The TCP port the server listens on; 5432 by default.")


def test_no_type_asked_is_none_and_any_part_of_a_compound_question_answers() -> None:
    assert type_match("How are backups encrypted?", "With AES-256.") is None
    question = "Who designed the Eiffel Tower and when do backups run?"
    assert type_match(question, "Backups run at 02:00 UTC.") is True
    assert has_type("Backups run at 02:00 UTC.", T) and not has_type("Backups run.", T)


def test_relevance_rises_with_similarity_and_falls_without_the_type() -> None:
    def rel(cosine: float, overlap: float, miss: bool) -> float:
        return relevance(RelevanceFeatures(cosine, overlap, float(miss), float(not miss)))

    assert 0.0 < rel(0.2, 0.0, False) < rel(0.6, 0.0, False) < rel(0.6, 0.8, False) < 1.0
    assert rel(0.6, 0.8, True) < rel(0.6, 0.8, False)


# -- issue 22, session 4 -----------------------------------------------------------------------
def test_a_yes_or_no_answer_word_answers_a_yes_no_question() -> None:
    from rag.verification.answer_types import answers_yes_no

    question = "Can I just use an authenticator app on my phone for MFA?"
    sentence = "No, multi-factor authentication is mandatory and must use a hardware key."
    assert answers_yes_no(question, sentence)
    # a true sentence about something else does not answer it, answer word or not
    assert not answers_yes_no(
        "Do we get paid extra for being on call?",
        "No, engineers join the rotation after six weeks.",
    )
    # nor does an answer word to a question that asks no yes or no
    assert not answers_yes_no("Which key must MFA use?", sentence)


def test_a_question_acronym_the_passage_spells_out_is_mentioned() -> None:
    # "MFA requirements for new starters?" against a passage saying "multi-factor
    # authentication": before, its only name was missing and the passage about something else
    passage = "Multi-factor authentication is mandatory and must use a hardware key."
    assert missing_names("MFA requirements for new starters?", passage) == []
    assert not about_something_else("MFA requirements for new starters?", passage)
    # an acronym the passage does not spell is still missing
    assert missing_names("What is the RTO?", passage) == ["RTO"]
    assert about_something_else("What is the RTO?", passage)
