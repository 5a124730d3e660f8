"""Follow-ups into standalone questions (rag/query/condense.py): the rules on their own, and the
``condense`` stage in the real pipeline (MiniLM, Qdrant Edge), with a model rewrite through the
OpenAI protocol stand-in (a real HTTP server; vLLM itself cannot run here) and its fallbacks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.core.types import Query, Turn
from rag.query.condense import condense
from rag.query.pipeline import QueryPipeline
from rag.query.tracing import Span
from tests.rag.chat_server import ChatServer, Fault
from tests.rag.conftest import KnowledgeBase


def talk(*turns: str) -> list[str]:
    """Each question of a conversation as the rules make it stand alone."""
    history: list[Turn] = []
    out = []
    for question in turns:
        out.append(condense(question, history).question)
        history += [Turn("user", question), Turn("assistant", "An answer [1].")]
    return out


def test_the_issues_three_conversations() -> None:
    assert talk(
        "How long are backups retained?", "And monthly snapshots?", "Where are they stored?"
    )[1:] == ["How long are monthly snapshots retained?", "Where are monthly snapshots stored?"]
    assert talk(
        "What is the free tier rate limit of the public API?",
        "And the business tier?",
        "What happens when it is exceeded?",
    )[1:] == [
        "What is the business tier rate limit of the public API?",
        "What happens when the business tier rate limit of the public API is exceeded?",
    ]
    # complete follow-ups (a topic of their own) stay as they were asked
    assert talk(
        "When do new engineers join the on-call rotation?",
        "How long does a rotation last?",
        "How fast must pages be acknowledged?",
    )[1:] == ["How long does a rotation last?", "How fast must pages be acknowledged?"]


@pytest.mark.parametrize(
    ("turns", "standalone"),
    [
        # ellipsis: a phrase after the same preposition, a question word, "ones"
        (
            ("Which class is the default for flights under six hours?", "And for longer flights?"),
            "Which class is the default for longer flights?",
        ),
        (
            ("Who do I tell if my laptop is stolen?", "How fast?"),
            "How fast do I tell if my laptop is stolen?",
        ),
        (
            ("When do full backups run?", "And incremental ones?"),
            "When do incremental backups run?",
        ),
        (("What does SEV1 mean?", "What about SEV2?"), "What does SEV2 mean?"),
        (
            (
                "Which Postgres version does the bootstrap script install?",
                "And which Python version?",
            ),
            "Which Python version does the bootstrap script install?",
        ),
        # pronouns: "one", "its", "they"; which one
        (
            ("How often are API keys rotated?", "What must happen if one is leaked?"),
            "What must happen if an API key is leaked?",
        ),
        (
            ("Who schedules the blameless postmortem?", "How are its action items tracked?"),
            "How are the action items of the blameless postmortem tracked?",
        ),
        (
            ("How many times should clients retry?", "How should they back off?"),
            "How should clients back off?",
        ),
        (
            (
                "Which function serializes an object to a JSON string?",
                "And which one parses a JSON string?",
            ),
            "Which function parses a JSON string?",
        ),
    ],
)
def test_ellipsis_and_pronouns(turns: Sequence[str], standalone: str) -> None:
    assert talk(*turns)[-1] == standalone


def test_a_pronoun_means_the_conversations_topic_and_a_named_answer() -> None:
    # the topic carries over: "it" is the virtual environment the last turn was about
    assert talk(
        "Which module creates virtual environments?",
        "What is a common directory location for one?",
        "How do I leave it again?",
    )[1:] == [
        "What is a common directory location for a virtual environment?",
        "How do I leave the virtual environment again?",
    ]
    # "Which module ...?" answered with a name: "it" is that name
    history = [
        Turn("user", "Which module works with SQLite databases?"),
        Turn("assistant", "The sqlite3 module provides a DB-API 2.0 interface [1]."),
    ]
    assert condense("Is it thread-safe?", history).question == "Is sqlite3 thread-safe?"


@pytest.mark.parametrize(
    "question",
    [
        "How long are backups retained?",  # a new complete question
        "How long does it take to review a request for a higher rate limit?",  # expletive it
        "Is it safe to parse JSON from untrusted sources?",  # expletive it
        "How can a module tell whether it is run as a script?",  # it: the module, said here
        "Who is the CEO of Northwind?",
    ],
)
def test_a_topic_shift_is_not_polluted_by_earlier_turns(question: str) -> None:
    history = [
        Turn("user", "What is the free tier rate limit of the public API?"),
        Turn("assistant", "The free tier allows 60 requests per minute [1]."),
        Turn("user", "And the business tier?"),
        Turn("assistant", "The business tier allows 1,200 requests per minute [1]."),
    ]
    result = condense(question, history)
    assert result.question == question and result.method == "unchanged", result


def test_without_history_nothing_changes() -> None:
    result = condense("And the business tier?", [])
    assert (result.question, result.method) == ("And the business tier?", "none")


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=80),
    st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=80)), max_size=6),
)
def test_any_text_gives_a_question_and_never_raises(question: str, turns: list[Any]) -> None:
    result = condense(question, [Turn(role, text) for role, text in turns])
    asked = " ".join(question.split())
    assert result.asked == asked
    assert result.question.strip() or not asked


# -- the stage in the pipeline ------------------------------------------------------------
def _rewriting(request: dict[str, Any], rewrite: str, answer: str) -> str:
    system = request["messages"][0]["content"]
    return (
        rewrite
        if "standalone" in request["messages"][-1]["content"].lower()
        or ("rewrite" in system.lower())
        else answer
    )


def _model_pipeline(kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer) -> QueryPipeline:
    settings = kb_settings(
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": chat_server.base_url, "max_retries": 0},
        },
        condense={"rewrite": "model"},
    )
    pipeline = QueryPipeline(kb.index, settings)
    pipeline.warm_up()  # the PII analyser of the openai backend loads here, not in the rewrite's time
    return pipeline


HISTORY = (
    Turn("user", "How long are backups kept?"),
    Turn("assistant", "Backups are kept for 35 days [1]."),
)


def test_the_model_rewrites_the_follow_up_and_its_call_is_counted(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer
) -> None:
    chat_server.reply_for = lambda body: _rewriting(
        body,
        "Which region are backups copied to?",
        "Backups are kept for 35 days and copied to a second region [1].",
    )
    pipeline = _model_pipeline(kb, kb_settings, chat_server)
    answer = pipeline.run(Query("And where do they go?", history=HISTORY))
    assert answer.standalone_question == "Which region are backups copied to?"
    rewrite = chat_server.requests[0]
    assert "How long are backups kept?" in rewrite["messages"][-1]["content"]
    assert "[1]" not in rewrite["messages"][-1]["content"]
    answering = chat_server.requests[1]["messages"][-1]["content"]
    assert "Which region are backups copied to?" in answering
    assert "And where do they go?" not in answering
    assert [b.backend for b in answer.usage.backends][:2] == ["openai", "openai"]
    assert answer.usage.prompt_tokens == sum(b.prompt_tokens for b in answer.usage.backends)
    pipeline.close()


@pytest.mark.parametrize("fault", ["server error", "empty", "an answer instead of a question"])
def test_the_rules_stand_when_the_model_rewrite_fails(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer, fault: str
) -> None:
    rules = condense("And where are they copied to?", HISTORY).question
    assert rules == "And where are backups copied to?" or "backups" in rules
    if fault == "server error":
        chat_server.faults.append(Fault(status=503))
        chat_server.reply_for = None
        chat_server.reply = "Backups are copied to a second region [1]."
    else:
        bad = "" if fault == "empty" else "The documents don't contain an answer to this."
        chat_server.reply_for = lambda body: _rewriting(
            body, bad, "Backups are copied to a second region [1]."
        )
    pipeline = _model_pipeline(kb, kb_settings, chat_server)
    answer = pipeline.run(Query("And where are they copied to?", history=HISTORY))
    assert answer.standalone_question == rules
    assert not answer.abstained and "second region" in answer.answer
    pipeline.close()


def test_prepare_leaves_a_model_rewrite_to_the_worker(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer
) -> None:
    """``prepare`` runs on the server's event loop: a model call must not happen there."""
    settings = kb_settings(
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": chat_server.base_url},
        },
        condense={"rewrite": "model"},
        cache={"enabled": True},
    )
    chat_server.reply_for = lambda body: _rewriting(
        body, "Which region are backups copied to?", "Backups are copied to a second region [1]."
    )
    pipeline = QueryPipeline(kb.index, settings)
    pipeline.warm_up()
    chat_server.requests.clear()
    prepared = pipeline.prepare(Query("And where do they go?", history=HISTORY))
    assert not prepared.cached and chat_server.requests == []
    events = list(prepared.events())
    assert chat_server.requests, "the rewrite ran with the rest of the walk"
    assert events[-1].answer.standalone_question == "Which region are backups copied to?"
    pipeline.close()


def test_the_standalone_question_is_what_every_stage_reads(
    kb: KnowledgeBase, kb_settings: Any
) -> None:
    seen: dict[str, str] = {}

    class Reads:  # a tracer: what each stage had as the question when it ran
        @contextmanager
        def request(self, state: Any) -> Iterator[Span]:
            yield Span("query")

        @contextmanager
        def span(self, name: str, state: Any) -> Iterator[Span]:
            seen.setdefault(name, state.question)
            yield Span(name)

    pipeline = QueryPipeline(kb.index, kb_settings(), tracer=Reads())
    history = (
        Turn("user", "When was the Eiffel Tower built?"),
        Turn("assistant", "It was built between 1887 and 1889 [1]."),
    )
    answer = pipeline.run(Query("How tall is it?", history=history))
    assert seen["retrieve"] == seen["generate"] == "How tall is the Eiffel Tower?", seen
    assert answer.standalone_question == "How tall is the Eiffel Tower?"
    assert "330 metres" in answer.answer and not answer.abstained
    assert answer.citations[0].source == "eiffel.md"
    # the bare follow-up, judged on its own, says too little
    alone = pipeline.run(Query("How tall is it?"))
    assert alone.standalone_question is None
    pipeline.close()


# -- issue 30, session 4: classes found on the tune half of a conversation set written blind --
@pytest.mark.parametrize(
    ("turns", "standalone"),
    [
        (
            (
                "When do the full database backups run?",
                "Separate question: what's the maximum hotel cost per night when travelling?",
            ),
            "What is the maximum hotel cost per night when travelling?",
        ),
        (
            ("How often are API keys rotated?", "different topic - who owns the public API"),
            "Who owns the public API?",
        ),
        (
            ("Where are backups stored?", "ok different question, how long does a rotation last"),
            "How long does a rotation last?",
        ),
        (
            ("What does SEV1 mean?", "Unrelated: how are passwords stored?"),
            "How are passwords stored?",
        ),
    ],
)
def test_a_topic_shift_marker_is_no_part_of_the_new_question(
    turns: Sequence[str], standalone: str
) -> None:
    result = condense(turns[-1], [Turn("user", turns[0]), Turn("assistant", "An answer [1].")])
    assert (result.question, result.reason) == (standalone, "topic shift")


@pytest.mark.parametrize(
    "question",
    [
        "And the business tier, per minute?",  # a comma, no marker: an ellipsis as before
        "So now, is it encrypted?",  # no word naming a shift
        "New engineers: when do they join?",  # a subject, not a marker
    ],
)
def test_only_an_opening_that_names_a_shift_is_a_marker(question: str) -> None:
    result = condense(question, [Turn("user", "What is the free tier rate limit?")])
    assert result.reason != "topic shift", result


def test_a_question_word_typed_without_its_apostrophe_opens_a_complete_question() -> None:
    # "whats the cap on hotels" is no fragment to graft onto the previous question
    assert (
        talk("Which class can I book for longer flights?", "whats the cap on hotels")[1]
        == "What is the cap on hotels?"
    )
    assert talk("Who schedules the postmortem?", "wheres the runbook")[1] == (
        "Where is the runbook?"
    )


@pytest.mark.parametrize(
    ("turns", "standalone"),
    [
        # the subject after the auxiliary, not a noun of the clause before it
        (
            (
                "How soon after an incident is resolved does the postmortem have to happen?",
                "who schedules it",
            ),
            "Who schedules the postmortem?",
        ),
        # "a password" is any password: "they" are passwords, not the characters asked about
        (
            ("How many characters must a password have at minimum?", "where should they be kept"),
            "Where should passwords be kept?",
        ),
        (
            ("How often must a policy be reviewed?", "who approves them"),
            "Who approves policies?",
        ),
        # an object said with "a" is one of them, not what "they" are
        (("Which items need a receipt?", "When are they paid?"), "When are the items paid?"),
    ],
)
def test_a_pronoun_means_the_previous_questions_subject(
    turns: Sequence[str], standalone: str
) -> None:
    assert talk(*turns)[-1] == standalone


# -- issue 30, session 5: the referents the pydocs conversations missed ---------------------------
def conversation(*exchanges: tuple[str, str], then: str) -> str:
    """``then`` made standalone after (question, the answer given) exchanges."""
    history: list[Turn] = []
    for question, answer in exchanges:
        history += [Turn("user", question), Turn("assistant", answer)]
    return condense(then, history).question


def test_one_is_an_instance_of_what_was_asked_about_not_the_name_answered() -> None:
    # "Which module creates virtual environments?" answered "venv": one is a virtual
    # environment (the name "venv" has no instances), and it stays the topic
    venv = (
        "Which module creates virtual environments?",
        "The venv module supports creating lightweight virtual environments [1].",
    )
    assert (
        conversation(venv, then="What is a common directory location for one?")
        == "What is a common directory location for a virtual environment?"
    )
    # a follow-up about the name in between: one is still one heap queue, never "a heapq"
    heap = (
        "Which module implements a heap queue?",
        "The heapq module implements a heap queue [1].",
    )
    smallest = ("What is its smallest element?", "Its smallest element is heap[0] [1].")
    assert (
        conversation(heap, smallest, then="How do I turn a list into one?")
        == "How do I turn a list into a heap queue?"
    )
    # "it" is the name still
    assert conversation(heap, then="Is it thread-safe?") == "Is heapq thread-safe?"


def test_a_part_of_something_is_not_what_it_means() -> None:
    # "at a given position" takes the place of "to the end" and keeps "of a list"; "it" is
    # then the list, not the position (a part of it)
    add = ("How do I add an item to the end of a list?", "Use append() [1].")
    at = ("And at a given position?", "Use insert() [1].")
    assert (
        conversation(add, then="And at a given position?")
        == "How do I add an item at a given position of a list?"
    )
    assert (
        conversation(add, at, then="How do I remove all items from it?")
        == "How do I remove all items from the list?"
    )


def test_instead_keeps_the_use_the_last_turn_asked_about() -> None:
    lists = ("Are lists efficient as queues?", "Lists are not efficient for this purpose [1].")
    assert (
        conversation(lists, then="What should I use instead?")
        == "What should I use instead of lists as queues?"
    )
    # a purpose of its own stays the only one
    random = ("Is random suitable for security purposes?", "It should not be used for that [1].")
    assert (
        conversation(random, then="What should I use for that instead?")
        == "What should I use for security purposes instead of random?"
    )


def test_it_is_the_name_an_answer_recommends_not_the_first_it_mentions() -> None:
    options = (
        "Which module should I use to parse command-line options?",
        "The getopt module is a parser for command line options [1]. Users who would like to "
        "write less code should consider using the argparse module instead [1].",
    )
    assert (
        conversation(options, then="How do I add an option to it?")
        == "How do I add an option to argparse?"
    )


def test_it_is_what_an_answer_to_what_should_i_use_named() -> None:
    lists = ("Are lists efficient as queues?", "Lists are not efficient for this purpose [1].")
    instead = (
        "What should I use instead?",
        "To implement a queue, use collections.deque which was designed to have fast appends "
        "and pops from both ends [1].",
    )
    assert (
        conversation(lists, instead, then="Which module provides it?")
        == "Which module provides collections.deque?"
    )
    random = ("Is random suitable for security purposes?", "It should not be used for that [1].")
    secrets = (
        "What should I use for that instead?",
        "random shouldn't be used for security purposes, use secrets instead [1].",
    )
    assert (
        conversation(random, secrets, then="How do I generate a token with it?")
        == "How do I generate a token with secrets?"
    )


def test_a_how_do_i_follow_up_keeps_the_action_or_takes_a_new_one() -> None:
    """Issue 30 (evals/pyconv_blind, typed as users type): after "how do I <verb> …" the word
    after "do I" is the verb whether or not the word lists know it ("serialise", "annotate"),
    so an ellipsis replaces the object, not the verb ("How do I a list of strings a paramter
    …?" before); a fragment opening with a verb is a new action for the same subject ("How do
    i parse such a string back a datetime as a string …?" before)."""
    assert (
        talk(
            "how do I annotate a paramter that can be an int or None",
            "What about a list of strings?",
        )[1]
        == "How do I annotate a list of strings that can be an int or None?"
    )
    assert talk("how do i serialise a python dict to a JSON string", "And a list?")[1] == (
        "How do i serialise a list to a JSON string?"
    )
    assert (
        talk(
            "how do i fromat a datetime as a string like 2023-01-31",
            "And parse such a string back?",
        )[1]
        == "How do i parse such a string back?"
    )
    # a fragment opening with no verb, or a question asking no action, is as before
    assert talk("How do I add an item to the end of a list?", "And at a given position?")[1] == (
        "How do I add an item at a given position of a list?"
    )
    from rag.query.condense import _replace_predicate, _tokens

    assert _replace_predicate(["read", "it"], _tokens("What is the free tier rate limit?")) is None
    assert _replace_predicate(["the", "docs"], _tokens("How do I read a file?")) is None
