"""Citation verification with the real embedder: kept, removed, added, renumbered, abstained."""

from __future__ import annotations

import pytest

from rag.core.config import CitationSettings
from rag.indexing.embedding import Embedder
from rag.query.pack import PackedContext, Passage
from rag.verification.citations import (
    SupportScorer,
    relevance_features,
    split_sentences,
    verify_answer,
)

ABSTAIN = "The documents don't contain an answer to this."
QUESTION = "When was the Eiffel Tower built?"

TEXTS = {
    1: "Berlin is the capital of Germany. It has about 3.7 million inhabitants.",
    2: "The Eiffel Tower is a lattice tower in Paris. It was built between 1887 and 1889 for the World's Fair.",
    3: "Backups are taken every night at 02:00 UTC and kept for 35 days.",
}


def _context() -> PackedContext:
    passages = [
        Passage(
            chunk_ids=[f"c{n}"],
            doc_id=f"d{n}",
            source=f"doc{n}.md",
            title=f"Doc {n}",
            section=["S"],
            page=None,
            start=10 * n,
            end=10 * n + len(text),
            text=text,
            score=1.0 / n,
            rank=n - 1,
            n=n,
        )
        for n, text in TEXTS.items()
    ]
    return PackedContext(passages, "\n\n".join(p.render() for p in passages), 100, 1000)


@pytest.fixture(scope="module")
def scorer(embedder: Embedder) -> SupportScorer:
    return SupportScorer(embedder.embed)


def _verify(answer: str, scorer: SupportScorer, question: str = QUESTION):  # type: ignore[no-untyped-def]
    return verify_answer(answer, _context(), scorer, CitationSettings(), question, ABSTAIN)


def test_split_sentences_keeps_lines_and_list_items_whole() -> None:
    # A wrapped line starting with a number is not a list item; "1." opens one.
    assert split_sentences("Backups are retained for\n35 days in total.") == [
        "Backups are retained for\n35 days in total."
    ]
    assert split_sentences("Steps:\n1. Stop the writer.\n2. Restore it\n- check") == [
        "Steps:",
        "1. Stop the writer.",
        "2. Restore it",
        "- check",
    ]


def test_split_sentences_keeps_markers_with_their_sentence() -> None:
    text = "It was built in 1889 [2]. It is 330 m tall.[1] See e.g. the guide. [3]\n\nNew para"
    assert split_sentences(text) == [
        "It was built in 1889 [2].",
        "It is 330 m tall.[1]",
        "See e.g. the guide. [3]",
        "New para",
    ]


def test_supported_citation_is_kept_and_renumbered(scorer: SupportScorer) -> None:
    v = _verify("The Eiffel Tower was built between 1887 and 1889 [2].", scorer)
    assert not v.abstained
    assert v.answer == "The Eiffel Tower was built between 1887 and 1889 [1]."
    assert [c["n"] for c in v.citations] == [1]
    c = v.citations[0]
    assert c["source"] == "doc2.md" and c["verified"] is True
    assert "1889" in c["quote"] and c["quote"] in TEXTS[2], (
        "the quote is the supporting sentence of the passage"
    )


def test_marker_for_a_passage_not_in_the_context_is_removed(scorer: SupportScorer) -> None:
    v = _verify("The tower was built between 1887 and 1889 [7].", scorer)
    assert v.sentences[0].dropped_markers == [7]
    # The sentence is still supported, by the passage that does support it.
    assert v.answer.endswith("[1].") and v.citations[0]["source"] == "doc2.md"


def test_wrong_citation_is_replaced_by_the_supporting_passage(scorer: SupportScorer) -> None:
    v = _verify("The Eiffel Tower was built between 1887 and 1889 [1].", scorer)
    assert 1 in v.sentences[0].dropped_markers, "Berlin does not support a sentence about the tower"
    assert [c["source"] for c in v.citations] == ["doc2.md"]


def test_changed_fact_is_not_supported(scorer: SupportScorer) -> None:
    v = _verify("The Eiffel Tower was built in 1920 in London [2].", scorer)
    assert v.abstained and v.answer == ABSTAIN and v.citations == []


def test_unsupported_sentence_is_flagged_supported_one_kept(scorer: SupportScorer) -> None:
    v = _verify(
        "The tower was built between 1887 and 1889 [2]. It was painted purple by Picasso in 1960 [2].",
        scorer,
    )
    assert not v.abstained
    assert v.unsupported == ["It was painted purple by Picasso in 1960."]
    assert [c["source"] for c in v.citations] == ["doc2.md"]


def test_several_citations_renumber_in_order_of_use(scorer: SupportScorer) -> None:
    v = _verify(
        "Backups are kept for 35 days [3]. The Eiffel Tower was built between 1887 and 1889 [2].",
        scorer,
        question="How long are backups kept and when was the Eiffel Tower built?",
    )
    assert (
        v.answer
        == "Backups are kept for 35 days [1]. The Eiffel Tower was built between 1887 and 1889 [2]."
    )
    assert [(c["n"], c["source"]) for c in v.citations] == [(1, "doc3.md"), (2, "doc2.md")]


def test_model_abstention_is_an_abstention(scorer: SupportScorer) -> None:
    v = _verify(
        "The documents don't contain an answer to this.",
        scorer,
        question="Who won the 1998 World Cup?",
    )
    assert v.abstained and v.citations == []


def test_empty_answer_abstains(scorer: SupportScorer) -> None:
    assert _verify("", scorer).abstained


def test_support_scores_order_sensibly(scorer: SupportScorer) -> None:
    ctx = _context().by_number
    good, _ = scorer.support("It was built between 1887 and 1889.", ctx[2], QUESTION)
    wrong_year, _ = scorer.support("It was built in 1850.", ctx[2], QUESTION)
    unrelated, _ = scorer.support("It was built between 1887 and 1889.", ctx[3], QUESTION)
    assert good > 0.5 > max(wrong_year, unrelated)


def test_a_model_looping_on_a_passage_header_abstains(scorer: SupportScorer) -> None:
    # What SmolLM2 once answered in `make run`: the context header copied over and over.
    looped = " ".join(["Doc 2 — S # Eiffel Tower [2]"] * 5)
    out = verify_answer(
        looped, _context(), scorer, CitationSettings(), "What is the Eiffel Tower?", ABSTAIN
    )
    assert out.abstained and out.citations == []


def test_a_repeated_sentence_is_said_once(scorer: SupportScorer) -> None:
    said = "It was built between 1887 and 1889 [2]. "
    out = _verify(said * 3, scorer)
    assert out.answer == "It was built between 1887 and 1889 [1]."
    assert len(out.citations) == 1


def test_a_supported_sentence_that_does_not_answer_the_question_abstains(
    scorer: SupportScorer,
) -> None:
    # True and supported by [2], but "when" is not answered: no date, no period.
    v = _verify("The Eiffel Tower is a lattice tower in Paris [2].", scorer)
    assert v.abstained and v.answer == ABSTAIN and v.citations == []
    s = v.sentences[0]
    assert s.supported and not s.relevant and not s.answers
    assert v.unsupported == [], "it is supported: not flagged as unsupported"


def test_an_answering_sentence_carries_the_supported_ones_around_it(
    scorer: SupportScorer,
) -> None:
    v = _verify(
        "The Eiffel Tower is a lattice tower in Paris [2]. It was built between 1887 and 1889 [2].",
        scorer,
    )
    assert not v.abstained and [s.answers for s in v.sentences] == [False, True]
    assert v.answer.startswith("The Eiffel Tower is a lattice tower in Paris [1].")


def test_streaming_holds_back_until_a_sentence_answers(scorer: SupportScorer) -> None:
    from rag.verification.citations import AnswerVerifier, StreamingVerifier

    release = StreamingVerifier(
        lambda: AnswerVerifier(_context(), scorer, CitationSettings(), QUESTION, ABSTAIN)
    )
    assert release.feed("The Eiffel Tower is a lattice tower in Paris [2]. It was") == []
    shown = release.feed(" built between 1887 and 1889 [2]. Backups")
    assert shown == [
        "The Eiffel Tower is a lattice tower in Paris [1].",
        " It was built between 1887 and 1889 [1].",
    ]
    off_topic = StreamingVerifier(
        lambda: AnswerVerifier(_context(), scorer, CitationSettings(), QUESTION, ABSTAIN)
    )
    off_topic.feed("The Eiffel Tower is a lattice tower in Paris [2].")
    assert off_topic.close().abstained and off_topic.drain() == [ABSTAIN]


def test_min_relevance_zero_turns_the_relevance_check_off(scorer: SupportScorer) -> None:
    v = verify_answer(
        "The Eiffel Tower is a lattice tower in Paris [2].",
        _context(),
        scorer,
        CitationSettings(min_relevance=0.0),
        QUESTION,
        ABSTAIN,
    )
    assert not v.abstained


def test_an_index_glued_to_a_name_is_text_not_a_marker(scorer: SupportScorer) -> None:
    # "argv[0] is the script name": the [0] is the document's, and removing it would make
    # the quote say something else. A marker glued to the word that ends a sentence stays one.
    sentences = split_sentences("The list argv[0] holds the script name [1]. It is set early[2].")
    assert sentences == ["The list argv[0] holds the script name [1].", "It is set early[2]."]
    v = _verify("The Eiffel Tower was built between 1887 and 1889[2].", scorer)
    assert v.answer == "The Eiffel Tower was built between 1887 and 1889 [1]."
    v = _verify("The Eiffel Tower, towers[0] in the list, was built in 1889 [2].", scorer)
    checked = v.sentences[0]
    assert "towers[0] in the list" in checked.text and 0 not in checked.dropped_markers


# -- issue 22: what a capable model writes, checked claim by claim ---------------------------
RUNBOOK = {
    1: (
        "Engineering Onboarding Guide",
        ["Accounts and access"],
        "Request a laptop from IT on your first day. Production access is granted only after "
        "you complete the security training, usually on day three.",
    ),
    2: (
        "Backup and Restore Policy",
        ["Schedule"],
        "Full database backups run nightly at 02:00 UTC. Backups are retained for 35 days; "
        "monthly snapshots are kept for 13 months.",
    ),
    3: (
        "Security Handbook",
        ["Passwords and keys"],
        "Passwords must be at least 14 characters long. API keys are rotated every 90 days.",
    ),
    4: (
        "Incident Response Runbook",
        [],
        "After the incident is resolved, the incident commander schedules a blameless "
        "postmortem within five business days.",
    ),
}


def _packed(docs: dict[int, tuple[str, list[str], str]]) -> PackedContext:
    """A context of these passages: number -> (title, section, text)."""
    passages = [
        Passage(
            chunk_ids=[f"r{n}"],
            doc_id=f"r{n}",
            source=f"runbook{n}.md",
            title=title,
            section=section,
            page=None,
            start=0,
            end=len(text),
            text=text,
            score=1.0 / n,
            rank=n - 1,
            n=n,
        )
        for n, (title, section, text) in docs.items()
    ]
    return PackedContext(passages, "\n\n".join(p.render() for p in passages), 100, 1000)


def _runbook() -> PackedContext:
    return _packed(RUNBOOK)


def _check(answer: str, question: str, scorer: SupportScorer, **settings: object):  # type: ignore[no-untyped-def]
    return verify_answer(
        answer,
        _runbook(),
        scorer,
        CitationSettings(**settings),
        question,
        ABSTAIN,  # type: ignore[arg-type]
    )


def test_an_invented_sentence_after_a_true_one_is_left_out_of_the_answer(
    scorer: SupportScorer,
) -> None:
    v = _check(
        "Backups are retained for 35 days [2]. After that they are archived to tape for seven years [2].",
        "How long are backups kept?",
        scorer,
    )
    assert v.answer == "Backups are retained for 35 days [1].", "the invention is not shown"
    assert v.unsupported == ["After that they are archived to tape for seven years."]


def test_with_unsupported_mark_the_invention_is_shown_marked(scorer: SupportScorer) -> None:
    v = _check(
        "Backups are retained for 35 days [2]. After that they are archived to tape for seven years [2].",
        "How long are backups kept?",
        scorer,
        unsupported="mark",
    )
    assert v.answer == (
        "Backups are retained for 35 days [1]. "
        "[unverified] After that they are archived to tape for seven years."
    )


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        # the passage says five business days
        (
            "The postmortem is scheduled within two business days [4].",
            "When is the postmortem held?",
        ),
        ("Backups are retained for 90 days [2].", "How long are backups kept?"),
        ("Passwords must be at least 12 characters long [3].", "How long must passwords be?"),
        # 90 days is in another passage (API keys): a value and its subject come from one
        ("Backups are retained for 90 days [2][3].", "How long are backups kept?"),
    ],
)
def test_a_wrong_value_cited_to_the_right_passage_is_refused(
    answer: str, question: str, scorer: SupportScorer
) -> None:
    v = _check(answer, question, scorer)
    assert v.abstained and v.citations == [], v.answer
    assert v.sentences[0].why and v.sentences[0].why.startswith("not in the passage")


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        (
            "New engineers must finish the security training before they get production access [1].",
            "When do I get production access?",
        ),
        (
            "Passwords have to be at least fourteen characters long [3].",
            "How long must passwords be?",
        ),
        ("Database backups are kept for 35 days [2].", "How long are backups kept?"),
        ("The full backups run every night at 2 am UTC [2].", "When do backups run?"),
        (
            "Once an incident is resolved, a blameless postmortem is held within five business days [4].",
            "When is the postmortem held?",
        ),
    ],
)
def test_a_faithful_paraphrase_is_kept(answer: str, question: str, scorer: SupportScorer) -> None:
    v = _check(answer, question, scorer)
    assert not v.abstained and v.unsupported == [], v.sentences
    assert v.answer.endswith("[1]."), v.answer


def test_a_synthesis_is_kept_whole_pronoun_and_two_passages(scorer: SupportScorer) -> None:
    v = _check(
        "You get production access once you have completed the security training [1]. "
        "This usually happens on day three [1].",
        "When do I get production access?",
        scorer,
    )
    assert not v.abstained and v.unsupported == [], v.sentences
    assert v.answer.count("[1]") == 2
    both = _check(
        "API keys are rotated every 90 days, while backups are retained for 35 days [3][2].",
        "How often are API keys rotated and how long are backups kept?",
        scorer,
    )
    assert not both.abstained and both.unsupported == [], both.sentences
    assert both.answer.endswith("[1][2].")
    assert [c["source"] for c in both.citations] == ["runbook3.md", "runbook2.md"]


def test_a_sentence_is_judged_with_the_verified_sentence_before_it(scorer: SupportScorer) -> None:
    # "the job" is what the first sentence named; the passage never says "job".
    v = _check(
        "The nightly full database backup job runs at 02:00 UTC [2]. "
        "The job keeps each backup for 35 days [2].",
        "How long are backups kept?",
        scorer,
    )
    assert v.unsupported == [] and v.answer.count("[1]") == 2, v.sentences
    # Alone, the same sentence says something the passage does not: "job".
    alone = _check(
        "The job keeps each backup for 35 days [2].", "How long are backups kept?", scorer
    )
    assert alone.abstained


def test_a_negation_flip_is_refused(scorer: SupportScorer) -> None:
    v = _check(
        "Production access is not granted after the security training [1].",
        "When do I get production access?",
        scorer,
    )
    assert v.abstained and v.sentences[0].why == "says the opposite of the passage"


def test_a_short_sentence_with_a_value_still_needs_a_passage(scorer: SupportScorer) -> None:
    v = _check(
        "Backups are retained for 35 days [2]. It is 40 days.", "How long are backups kept?", scorer
    )
    assert v.answer == "Backups are retained for 35 days [1]." and v.unsupported == [
        "It is 40 days."
    ]


def test_a_phrase_the_passage_never_says_fails_the_claim(scorer: SupportScorer) -> None:
    # Six of eight words are the passage's, but "railway locomotives" is not: one word a
    # passage lacks is a rewording, two are something it never said.
    v = _check(
        "Full database backups run nightly at 02:00 UTC, and backups are retained for 35 days "
        "by railway locomotives [2].",
        "How long are backups kept?",
        scorer,
    )
    assert v.abstained, v.sentences


def test_a_paraphrase_answers_what_the_sentence_it_restates_answers(
    scorer: SupportScorer,
) -> None:
    # The relevance model was fitted on document sentences: a capable model's rewording ("ship
    # the write-ahead log ... giving a recovery point objective") scores far below the passage
    # sentence it restates ("... objective (RPO) of 5 minutes"), which answers the question.
    text = (
        "Incremental backups (write-ahead log shipping) run continuously with a recovery point "
        "objective (RPO) of 5 minutes."
    )
    context = _packed({1: ("Backup and Restore Policy", ["Schedule"], text)})
    answer = (
        "Incremental backups ship the write-ahead log continuously, giving a recovery point "
        "objective of five minutes [1]."
    )
    v = verify_answer(answer, context, scorer, CitationSettings(), "What's our RPO?", ABSTAIN)
    assert not v.abstained and v.answer == answer, v.sentences


# -- issue 22, session 4 -----------------------------------------------------------------------
def test_one_fact_worded_from_two_cited_passages_is_kept(scorer: SupportScorer) -> None:
    # no clause break to split on: the two cited passages are read together
    context = _packed(
        {
            1: (
                "Engineering Onboarding Guide",
                ["Development environment"],
                "Builds run in CI on every push; a green build is required before a pull "
                "request can be merged.",
            ),
            2: (
                "Engineering Onboarding Guide",
                ["Code review"],
                "Every change needs one approving review from a code owner.",
            ),
        }
    )
    answer = (
        "Your pull request needs a green CI build and one approving review from a code owner "
        "before it can be merged [1][2]."
    )
    question = "What does my pull request need before it is merged?"
    v = verify_answer(answer, context, scorer, CitationSettings(), question, ABSTAIN)
    assert not v.abstained and v.unsupported == [], v.sentences
    assert v.answer.endswith("[1][2]."), v.answer
    # a value neither passage says still fails it
    wrong = answer.replace("one approving review", "two approving reviews")
    w = verify_answer(wrong, context, scorer, CitationSettings(), question, ABSTAIN)
    assert w.abstained, w.sentences


def test_a_yes_no_answer_to_the_question_asked_is_an_answer(scorer: SupportScorer) -> None:
    text = (
        "Your SSO account is created by the People team before you start; multi-factor "
        "authentication is mandatory and must use a hardware key."
    )
    context = _packed({1: ("Engineering Onboarding Guide", ["Accounts and access"], text)})
    answer = "No, multi-factor authentication is mandatory and it has to use a hardware key [1]."
    question = "Can I just use an authenticator app on my phone for MFA?"
    v = verify_answer(answer, context, scorer, CitationSettings(), question, ABSTAIN)
    assert not v.abstained and v.answer == answer, v.sentences
    # the answer word alone answers: with a relevance bar nothing clears, it is still kept,
    # and the same sentence without it is not
    unreachable = CitationSettings(min_relevance=1.0, min_relevance_typed=1.0)
    v = verify_answer(answer, context, scorer, unreachable, question, ABSTAIN)
    assert not v.abstained and v.answer == answer, v.sentences
    plain = "Multi-factor authentication is mandatory and it has to use a hardware key [1]."
    assert verify_answer(plain, context, scorer, unreachable, question, ABSTAIN).abstained


def test_a_value_from_one_cited_passage_said_of_anothers_subject_is_refused(
    scorer: SupportScorer,
) -> None:
    # two cited passages are never one pool of words: the free tier's 60 is not what
    # enterprise customers get, though the sentence cites both
    context = _packed(
        {
            1: ("Public API Rate Limits", [], "The free tier allows 60 requests per minute."),
            2: (
                "Public API Rate Limits",
                [],
                "Enterprise customers can request higher limits through their account manager.",
            ),
        }
    )
    question = "What limit do enterprise customers get?"
    mixed = "Enterprise customers get 60 requests per minute [1][2]."
    v = verify_answer(mixed, context, scorer, CitationSettings(), question, ABSTAIN)
    assert v.abstained, v.sentences


def test_an_acronym_of_the_question_spelt_out_counts_as_said() -> None:
    from rag.verification.citations import relevance_features

    question = "What's the rule for large PRs?"
    sentence = "Anything over 400 lines should be broken into several smaller pull requests."
    # "PRs" is said ("rule" and "large" are not); without "pull requests" nothing is
    assert relevance_features(question, sentence, 0.3).overlap == 0.25
    other = sentence.replace("pull requests", "changes")
    assert relevance_features(question, other, 0.3).overlap == 0.0


def test_a_fragment_question_reads_as_what_are_the_x_of_y() -> None:
    headings = ["Engineering Onboarding Guide", "Development environment"]
    sentence = "After the monorepo is cloned, make bootstrap is run."
    # "steps" names the form of the answer, as "what" does; "dev" is cut from "development":
    # before, neither counted and the faithful answer was refused as irrelevant
    fragment = relevance_features("Dev environment setup steps.", sentence, 0.3, headings)
    assert fragment.overlap == pytest.approx(2 / 3)
    imperative = relevance_features("Summarise the dev environment.", sentence, 0.3, headings)
    assert imperative.overlap == 1.0
    # a question asked with a question word keeps "steps" as a word it asks for; its clipped
    # "dev" is "development" as in a fragment (issue 22, session 5: "how do i set up my dev
    # environment")
    asked = relevance_features("What are the dev environment setup steps?", sentence, 0.3, headings)
    assert asked.overlap == 0.5
    # a clipped word is a whole word's start, not any three letters ("art" in "restart")
    other = relevance_features("Art setup steps.", "Restart the bootstrap.", 0.3, [])
    assert other.overlap == 0.0


# -- issue 30: documentation sentences said as they stand are not dropped --------------------
def _docs_context(pages: dict[int, tuple[str, str]]) -> PackedContext:
    """Passages n: (title, text), one page each, as documentation folders give them."""
    passages = [
        Passage(
            chunk_ids=[f"c{n}"],
            doc_id=f"d{n}",
            source=f"page{n}.html",
            title=title,
            section=[],
            page=None,
            start=0,
            end=len(text),
            text=text,
            score=1.0 / n,
            rank=n - 1,
            n=n,
        )
        for n, (title, text) in pages.items()
    ]
    return PackedContext(passages, "\n\n".join(p.render() for p in passages), 100, 1000)


def test_a_name_that_opens_with_a_dot_is_a_value_the_passage_holds(scorer: SupportScorer) -> None:
    # The marker's space before the full stop was removed before any dot: "is .venv [1]."
    # became "is.venv", a name no passage holds, and the right answer was withheld.
    context = _docs_context(
        {
            1: (
                "Virtual Environments and Packages",
                "A common directory location for a virtual environment is .venv. You can "
                "activate it with a script.",
            )
        }
    )
    out = verify_answer(
        "A common directory location for a virtual environment is .venv [1].",
        context,
        scorer,
        CitationSettings(),
        "What is a common directory location for a virtual environment?",
        ABSTAIN,
    )
    assert not out.abstained and ".venv" in out.answer


def test_another_pages_title_does_not_make_a_sentence_say_nothing(scorer: SupportScorer) -> None:
    # Words of the question and of headings say nothing new — but only the headings of the
    # passage the sentence cites: another page titled with the value is no reason to drop it.
    context = _docs_context(
        {
            1: ("Backup policy", "Backups are stored in Frankfurt. They are kept for 35 days."),
            2: ("Frankfurt office", "The Frankfurt office opens at 08:00."),
        }
    )
    out = verify_answer(
        "Backups are stored in Frankfurt [1].",
        context,
        scorer,
        CitationSettings(),
        "Where are backups stored?",
        ABSTAIN,
    )
    assert not out.abstained and "Frankfurt" in out.answer


def test_a_definitions_label_is_a_value_its_passage_states(scorer: SupportScorer) -> None:
    # The extractive backend says a definition with its label (rag.core.sentences
    # .passage_segments); verification split the label off and missed "list.clear()".
    context = _docs_context(
        {
            1: (
                "Data Structures",
                "Here are all of the methods of list objects:\n\nlist.append(x)\n\nAdd an "
                "item to the end of the list. Equivalent to a[len(a):] = [x].\n\n"
                "list.remove(x)\n\nRemove the first item from the list whose value is equal "
                "to x. It raises a ValueError if there is no such item.\n\nlist.pop([i])\n\n"
                "Remove the item at the given position in the list, and return it.\n\n"
                "list.clear()\n\nRemove all items from the list. Equivalent to del a[:].",
            )
        }
    )
    out = verify_answer(
        "list.clear()\nRemove all items from the list [1].",
        context,
        scorer,
        CitationSettings(),
        "How do I remove all items from the list?",
        ABSTAIN,
    )
    assert not out.abstained and "list.clear()" in out.answer


def test_a_chatty_question_is_read_for_what_it_asks() -> None:
    # issue 22, session 5: "I'm" is the asker, not a name the passage must mention; "ack" is
    # cut from "acknowledge"; "how quickly" and "do i need to" name the form of the answer
    from rag.verification.answer_types import about_something_else

    question = "how quickly do i need to ack a page when I'm the primary?"
    passage = "The primary on-call engineer must acknowledge pages within 5 minutes."
    assert not about_something_else(question, passage)
    sentence = "As the primary on-call engineer, you must acknowledge pages within five minutes."
    assert relevance_features(question, sentence, 0.3, ["On-call"]).overlap == 1.0
    # "set up" is the form of a how-to question; "dev" is "development"
    headings = ["Engineering Onboarding Guide", "Development environment"]
    setup = relevance_features(
        "how do i set up my dev environment", "Clone the monorepo.", 0.3, headings
    )
    assert setup.overlap == 1.0
    # a name the passage never mentions still counts as missing
    assert about_something_else("how do i page the Oracle team?", passage)


def test_a_courtesy_is_said_and_an_interjection_names_nothing(scorer: SupportScorer) -> None:
    # issue 22, session 5: "Good question!" states nothing a passage could hold: shown as
    # "Sure." is, not dropped as an unsupported claim; "Yep," opens an answer, no name
    v = _check(
        "Good question! Backups are retained for 35 days [2]. Hope that helps!",
        "How long are backups kept?",
        scorer,
    )
    assert v.answer == "Good question! Backups are retained for 35 days [1]. Hope that helps!"
    assert v.unsupported == []
    v = _check("Yep, backups are retained for 35 days [2].", "Are backups kept a month?", scorer)
    assert v.answer == "Yep, backups are retained for 35 days [1].", v
    # a claim after the courtesy words is still a claim
    v = _check(
        "Backups are retained for 35 days [2]. Good question about tape archives, kept for "
        "seven years [2].",
        "How long are backups kept?",
        scorer,
    )
    assert v.answer == "Backups are retained for 35 days [1]."
