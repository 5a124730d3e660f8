"""The extractive backend's choice of sentences (rag/generate/extractive.py); no model needed
for selection, the real embedder for the end-to-end case."""

from __future__ import annotations

from dataclasses import replace

from rag.generate import GenerationRequest
from rag.generate.extractive import (
    Candidate,
    ExtractiveGenerator,
    _without_headings,
    candidates,
    defines_what_is_asked,
    in_conversation_place,
    not_said_again,
    passage_segments,
    select,
)
from rag.indexing.embedding import Embedder
from rag.query.pack import PackedContext, Passage
from rag.verification.answer_types import RelevanceFeatures
from rag.verification.citations import SupportScorer, split_sentences
from tests.passages import passage

NO_FEATURES = RelevanceFeatures(0.0, 0.0, 0.0, 0.0)


def _c(n: int, position: int, relevance: float, typed: bool | None = None) -> Candidate:
    return Candidate(
        n, position, f"sentence {n}.{position}", relevance, typed, relevance, NO_FEATURES, 0.0
    )


def test_nothing_relevant_enough_is_an_abstention() -> None:
    assert select([_c(1, 0, 0.05), _c(2, 0, 0.1)], 2, 0.12) == []


def test_the_neighbour_that_holds_the_answer_type_comes_along_in_reading_order() -> None:
    best = _c(1, 1, 0.5, typed=False)
    before = _c(1, 0, 0.02, typed=True)  # weak on its own, but it has what was asked
    elsewhere = _c(2, 0, 0.3, typed=True)
    picked = select([before, best, elsewhere], 2, 0.12)
    assert picked == [before, best]


def test_else_the_next_best_sentence_if_it_is_relevant_itself() -> None:
    best, second, weak = _c(1, 0, 0.6, True), _c(2, 3, 0.2, True), _c(1, 1, 0.05, True)
    assert select([best, weak, second], 2, 0.12) == [best, second]
    assert select([best, weak], 2, 0.12) == [best]
    assert select([best, second], 1, 0.12) == [best]


def test_a_follow_up_is_not_answered_again_unless_the_sentence_has_what_it_asks() -> None:
    said = ["The incident commander schedules a blameless postmortem within five days [1]."]
    again = Candidate(
        1,
        4,
        "The incident commander schedules a blameless postmortem within five days.",
        0.5,
        True,  # "When ...?": it holds a time — what the follow-up asks for
        0.5,
        NO_FEATURES,
        0.0,
    )
    other = _c(2, 0, 0.3, None)
    # "And when?" (its standalone question: "When is the blameless postmortem scheduled?")
    assert not_said_again([again, other], "And when?", said) == [again, other]
    # "What happens then?" asks for something new: the sentence said before is not the answer
    untyped = replace(again, typed=None)
    assert not_said_again([untyped, other], "What happens then?", said) == [other]


def test_headings_glued_to_a_sentence_are_dropped() -> None:
    assert _without_headings("Public API Rate Limits", {"public api rate limits"}) == ""
    assert (
        _without_headings("Laptops and devices\nAll laptops use full-disk encryption.", set())
        == "All laptops use full-disk encryption."
    )
    wrapped = "A rotation lasts seven days, starting\nMonday at 10:00 UTC."
    assert _without_headings(wrapped, {"guide", "on-call"}) == wrapped
    assert (
        _without_headings("Backups are kept for\n35 days.", set())
        == "Backups are kept for\n35 days."
    )


def _passage(n: int, text: str, section: list[str]) -> Passage:
    return Passage(
        chunk_ids=[f"c{n}"],
        doc_id=f"d{n}",
        source=f"doc{n}.md",
        title="Onboarding",
        section=section,
        page=None,
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        rank=n - 1,
        n=n,
    )


def test_the_sentence_that_answers_wins_over_the_welcome_text(embedder: Embedder) -> None:
    passages = [
        _passage(
            1, "Welcome to the Northwind platform team. This guide covers your first week.", []
        ),
        _passage(
            2,
            "New engineers join the on-call rotation after six weeks. A rotation lasts seven days.",
            ["On-call"],
        ),
    ]
    context = PackedContext(passages, "", 0, 1000)
    question = "When do new engineers join the on-call rotation?"
    request = GenerationRequest(messages=[], question=question, context=context, max_tokens=0)
    scorer = SupportScorer(embedder.embed)
    found = {c.sentence: c for c in candidates(question, request, scorer)}
    assert found["New engineers join the on-call rotation after six weeks."].typed is True
    text = "".join(
        p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
    )
    assert text == "New engineers join the on-call rotation after six weeks [2]."


def test_a_sentence_opening_with_an_option_is_said_a_paragraph_apart(embedder: Embedder) -> None:
    """Issue 30 (evals/gitdocs): "... with a single command [1]. -m\n--merge\nWhen switching
    ..." read as one sentence to verification, which then checked both as one claim and
    refused the first, right one with the second. A sentence opening with an option, a term
    or a setting is said a paragraph apart: verification splits them as they were picked."""
    passages = [
        _passage(1, "Switch branches with the git switch command.", ["Branches"]),
        _passage(2, "-c\n--create\nCreate a new branch and switch branches to it.", ["Options"]),
    ]
    context = PackedContext(passages, "", 0, 1000)
    question = "How do I switch branches?"
    request = GenerationRequest(messages=[], question=question, context=context, max_tokens=0)
    scorer = SupportScorer(embedder.embed)
    said = "".join(
        p for p in ExtractiveGenerator(scorer, 2, 0.0).stream(request) if isinstance(p, str)
    )
    assert "\n\n-c\n--create" in said, said
    assert len(split_sentences(said)) == 2, split_sentences(said)


def _man_page(text: str) -> Passage:
    return passage(text, source="page.html", title="git-fetch(1) Manual Page")


def test_a_blank_line_ends_a_sentence_and_a_colon_brings_its_line_along() -> None:
    page = (
        "git-fetch(1) Manual Page\n\nNAME\n\ngit-fetch - Download objects and refs from another "
        "repository\n\nSYNOPSIS\n\ngit fetch [<options>] [<repository>]\n\nIf you are the owner, "
        "you can destroy it using the following command:\n\ndropdb mydb\n\nThen it is gone."
    )
    segments = passage_segments(_man_page(page))
    # the manual page's one-line summary is not run together with its synopsis
    assert "git-fetch - Download objects and refs from another repository" in segments
    assert "git fetch [<options>] [<repository>]" in segments
    # a sentence announcing a command says the command
    assert (
        "If you are the owner, you can destroy it using the following command: dropdb mydb"
        in segments
    )
    assert segments[-1] == "Then it is gone."


def test_a_question_in_the_documents_is_never_the_answer(embedder: Embedder) -> None:
    """A planted "User: <the question>?" turn (or a FAQ's own question) repeats the asking: it
    scores high on relevance and answers nothing."""
    question = "When do new engineers join the on-call rotation?"
    passages = [
        _passage(
            1,
            f"User: {question}\nNew engineers join the on-call rotation after six weeks.",
            ["On-call"],
        )
    ]
    request = GenerationRequest(
        messages=[], question=question, context=PackedContext(passages, "", 0, 1000), max_tokens=0
    )
    scorer = SupportScorer(embedder.embed)
    assert all("?" not in c.sentence for c in candidates(question, request, scorer))
    text = "".join(
        p for p in ExtractiveGenerator(scorer, 2, 0.12).stream(request) if isinstance(p, str)
    )
    assert text == "New engineers join the on-call rotation after six weeks [1].", text


def _in_doc(n: int, source: str, text: str, section: list[str]) -> Passage:
    return replace(_passage(n, text, section), source=source, title="Backup and Restore Policy")


def _said(n: int, position: int, sentence: str, relevance: float) -> Candidate:
    return Candidate(n, position, sentence, relevance, True, relevance, NO_FEATURES, 0.0)


def test_a_follow_up_that_refers_back_is_answered_where_the_conversation_is() -> None:
    """Issue 30 (evals/chat): "Where are they stored?" after "And monthly snapshots?" became
    "Where are monthly snapshots stored?", and the sentence that says where the backups are
    stored scored 0.04 (the relevance model wants the subject named): an abstention. In the
    document the previous answer came from, a sentence holding the follow-up's own words
    ("stored") is the answer at a quarter of the bar; elsewhere, or without those words, or
    after an ellipsis (a new subject), nothing changes."""
    policy, other = "policies/backup-policy.md", "onboarding.md"
    passages = [
        _in_doc(1, policy, "Backups are retained for 35 days.", ["Schedule"]),
        _in_doc(2, policy, "Backups are stored in eu-west-2.", ["Storage"]),
        _in_doc(3, other, "Laptops are stored in a locker.", ["Devices"]),
    ]
    request = GenerationRequest(
        messages=[],
        question="Where are monthly snapshots stored?",
        context=PackedContext(passages, "", 0, 1000),
        max_tokens=0,
    )
    before = _said(1, 0, "Backups are retained for 35 days.", 0.3)
    stored = _said(2, 0, "Backups are stored in eu-west-2.", 0.04)
    locker = _said(3, 0, "Laptops are stored in a locker.", 0.05)
    found = [before, stored, locker]
    said = ["Backups are retained for 35 days [1]."]

    def place(asked: str, reason: str = "pronoun", answers: list[str] = said) -> list[Candidate]:
        follow_up = {"asked": asked, "said": answers, "reason": reason}
        return in_conversation_place(found, request, follow_up, 2, 0.12)

    assert place("Where are they stored?") == [stored]  # not the locker: another document
    assert place("Where are they kept?") == []  # its own words are in no sentence there
    assert place("Where are they?") == []  # no words of its own: nothing to hold on to
    assert place("And where are they stored?", reason="ellipsis (phrase)") == []
    assert place("Where are they stored?", answers=[]) == []  # no earlier answer: no place
    weak = replace(stored, relevance=0.02, score=0.02)  # under a quarter of the bar
    assert (
        in_conversation_place(
            [before, weak],
            request,
            {"asked": "Where are they stored?", "said": said, "reason": "pronoun"},
            2,
            0.12,
        )
        == []
    )


def test_the_follow_ups_own_words_are_held_as_written_not_as_synonyms() -> None:
    """ "What happens when it is exceeded?": "Enterprise customers can request higher
    limits" is not about exceeding (a synonym group has both words); the sentence under the
    heading "When a limit is exceeded" is."""
    source = "api-rate-limits.html"
    passages = [
        replace(
            _passage(1, "The free tier allows 60 requests per minute.", ["Default limits"]),
            source=source,
        ),
        replace(
            _passage(2, "Enterprise customers can request higher limits.", ["Raising a limit"]),
            source=source,
        ),
        replace(
            _passage(3, "The API answers with HTTP status 429.", ["When a limit is exceeded"]),
            source=source,
        ),
    ]
    request = GenerationRequest(
        messages=[],
        question="What happens when the free tier rate limit is exceeded?",
        context=PackedContext(passages, "", 0, 1000),
        max_tokens=0,
    )
    free = _said(1, 0, "The free tier allows 60 requests per minute.", 0.4)
    higher = _said(2, 0, "Enterprise customers can request higher limits.", 0.09)
    status = _said(3, 0, "The API answers with HTTP status 429.", 0.04)
    follow_up = {
        "asked": "What happens when it is exceeded?",
        "said": ["The free tier allows 60 requests per minute [1]."],
        "reason": "pronoun",
    }
    assert in_conversation_place([free, higher, status], request, follow_up, 2, 0.12) == [status]


def test_a_manual_pages_name_line_answers_what_its_command_does(embedder: Embedder) -> None:
    """Issue 30 (evals/gitdocs): "What does git blame show?" abstained, though the manual
    page's NAME line says it ("git-blame - Show what revision and author last modified each
    line of a file"): the relevance model scores that line low. The NAME line of the page of
    what a "What does X do?" question names is an answer; another page's is not."""
    blame = "git-blame - Show what revision and author last modified each line of a file"
    passages = [
        replace(
            _passage(
                1,
                f"{blame}\n\nSYNOPSIS\n\ngit blame [-c] [-b] [-l] [--root] [-t] <file>\n\n"
                "The origin of lines is automatically followed across whole-file renames.",
                ["NAME"],
            ),
            title="git-blame(1)",
        ),
        replace(
            _passage(2, "git-log - Show commit logs", ["NAME"]),
            title="git-log(1)",
        ),
    ]
    context = PackedContext(passages, "", 0, 1000)
    scorer = SupportScorer(embedder.embed)

    def answer(question: str) -> str:
        request = GenerationRequest(messages=[], question=question, context=context, max_tokens=0)
        return "".join(
            p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
        )

    # the synopsis repeats the name word for word: it scored above the NAME line (0.57, 0.38)
    assert answer("What does git blame do?") == f"{blame} [1]."
    assert "git-log" not in answer("What does git stash do?")


def test_a_definitions_label_answers_what_the_thing_it_names_is(embedder: Embedder) -> None:
    """Issue 30 (evals/pgdocs, gitdocs, pydocs): reference documentation defines a setting, a
    method or a subcommand under a label of its own ("work_mem (integer)", "classmethod
    date.today()", "pop [--index] [<stash>]"); the relevance model preferred another sentence
    that repeats the question's words ("The final limit is determined by multiplying
    work_mem ..."). The definition whose label names what a "What is X?" / "What does X do?"
    question asks about is its answer; a question about one detail of X is not answered by it."""
    work_mem = (
        "work_mem (integer)\n\nSets the base maximum amount of memory to be used by a query "
        "operation (such as a sort or hash table) before writing to temporary disk files. If "
        "this value is specified without units, it is taken as kilobytes. The default value is "
        "four megabytes (4MB).\n\nhash_mem_multiplier (floating point)\n\nUsed to compute the "
        "maximum amount of memory that hash-based operations can use. The final limit is "
        "determined by multiplying work_mem by hash_mem_multiplier."
    )
    passages = [replace(_passage(1, work_mem, ["Resource Consumption", "Memory"]), title="Server")]
    context = PackedContext(passages, "", 0, 1000)
    scorer = SupportScorer(embedder.embed)

    def answer(question: str) -> str:
        request = GenerationRequest(messages=[], question=question, context=context, max_tokens=0)
        return "".join(
            p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
        )

    assert answer("What does work_mem limit?").startswith("work_mem (integer)\nSets the base")
    # one detail of it ("the default value of work_mem") is no question the label answers
    assert not defines_what_is_asked("What is the default value of work_mem?", work_mem)
    # the label names it: the name itself, a qualified name, the last word on its own page
    assert defines_what_is_asked(
        "What is checkpoint_timeout?", "checkpoint_timeout (integer)\nMaximum time between ..."
    )
    assert defines_what_is_asked(
        "What does date.today() do?", "classmethod date.today()\nReturn the current local date."
    )
    pop = "pop [--index] [-q|--quiet] [<stash>]\nRemove a single stashed state from the list."
    assert defines_what_is_asked("What does git stash pop do?", pop, ["git-stash(1)", "OPTIONS"])
    assert not defines_what_is_asked("What does git stash pop do?", pop, ["git-log(1)"])
    assert not defines_what_is_asked(
        "What does work_mem limit?", "hash_mem_multiplier (floating point)\nUsed to compute ..."
    )


# The csv page as the HTML parser reads it: a long label is a sentence of its own, its
# description the next; the sentence sharing the question's words is about something else.
CSV_PAGE = (
    "A row must be an iterable of strings or numbers for Writer objects and a dictionary "
    "mapping fieldnames to strings or numbers for DictWriter objects.\n\n"
    "class csv.DictReader(f, fieldnames=None, restkey=None, restval=None, dialect='excel', "
    "*args, **kwds)\n\nCreate an object that operates like a regular reader but maps the "
    "information in each row to a dict whose keys are given by the optional fieldnames "
    "parameter.\n\nclass csv.DictWriter(f, fieldnames, restval='', extrasaction='raise', "
    "dialect='excel', *args, **kwds)\n\nCreate an object which operates like a regular "
    "writer but maps dictionaries onto output rows."
)
JSON_PAGE = (
    "parse_int, if specified, will be called with the string of every JSON int to be "
    "decoded.\n\njson.dumps(obj, *, skipkeys=False, ensure_ascii=True, indent=None, "
    "sort_keys=False, **kw)\n\nSerialize obj to a JSON formatted str using this conversion "
    "table.\n\njson.load(fp, *, cls=None, object_hook=None, parse_float=None, parse_int=None, "
    "**kw)\n\nDeserialize fp (a .read()-supporting text file containing a JSON document) to a "
    "Python object.\n\njson.loads(s, *, cls=None, object_hook=None, parse_float=None, "
    "parse_int=None, **kw)\n\nDeserialize s (a str, bytes or bytearray instance containing a "
    "JSON document) to a Python object."
)


def test_the_api_entry_a_how_do_i_question_asks_for_is_its_answer(embedder: Embedder) -> None:
    """Issue 30 (evals/pydocs and pyconv_blind follow-ups): "Which class reads rows into
    dictionaries?" was answered by the sentence sharing its words ("… a dictionary … for
    DictWriter objects"), "Which function parses a JSON string?" by "parse_int, if specified,
    …". The entry whose name, parameters or description's first words do the question's
    action (by morphology: reads — DictReader, writes — DictWriter, parses — parse_int,
    serialise — Serialize) and hold most of its other words (string — str) is the answer,
    said with its description; a question asking no action is answered as before."""
    scorer = SupportScorer(embedder.embed)

    def answer(page: str, question: str) -> str:
        passages = [replace(_passage(1, page, ["Module Contents"]), title="csv/json")]
        request = GenerationRequest(
            messages=[],
            question=question,
            context=PackedContext(passages, "", 0, 1000),
            max_tokens=0,
        )
        return "".join(
            p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
        )

    reads = answer(CSV_PAGE, "Which class reads rows into dictionaries?")
    assert reads.startswith("class csv.DictReader(") and "Create an object" in reads
    assert answer(CSV_PAGE, "how do I write dictionaries as rows").startswith(
        "class csv.DictWriter("
    )
    # among json's entries: loads parses a string (parse_int; str), load a file, dumps writes
    from rag.generate.entries import action_of, best_entries, names_doing, parse_entry

    segments = JSON_PAGE.split("\n\n")
    entries = [
        (i, e)
        for i, (label, description) in enumerate(zip(segments, [*segments[1:], ""], strict=True))
        if (e := parse_entry(label, description)) is not None
    ]
    names = {i: e.name for i, e in entries}

    def best(question: str) -> list[str]:
        action = action_of(question)
        assert action is not None
        return [names[i] for i in best_entries(action, entries)]

    assert best("Which function parses a JSON string?") == ["json.loads"]
    assert best("how do i serialise a python dict to a JSON string") == ["json.dumps"]
    # a parameter does nothing itself: "parse_int, if specified, …" is no function that parses
    parse_int = segments[0]
    asked = "Which function parses a JSON string?"
    assert names_doing(("parses", ["JSON"]), parse_int, asked) == "parse_int"
    assert names_doing(("parses", ["JSON"]), parse_int, asked, frozenset({"parse_int"})) is None
    request = GenerationRequest(
        messages=[],
        question=asked,
        context=PackedContext([replace(_passage(1, JSON_PAGE, ["M"]), title="json")], "", 0, 1),
        max_tokens=0,
    )
    found = candidates(asked, request, scorer)
    assert next(c for c in found if c.sentence.startswith("parse_int")).relevance < 0.5
    # no action asked ("what is"), or a verb that says none ("make"): no entry preferred
    assert not answer(CSV_PAGE, "What is a row?").startswith("class csv.Dict")


def test_entry_morphology_and_labels() -> None:
    from rag.generate.entries import action_of, entry_label, parse_entry, same_root

    assert action_of("argparse: how do I add an optional flag") == ("add", ["optional", "flag"])
    assert action_of("Which class does argparse use to hold the arguments?") == (
        "hold",
        ["arguments"],
    )
    assert action_of("how do I make one mandatory") is None  # a verb that says nothing
    assert action_of("What is a row?") is None
    assert same_root("reads", "Reader") and same_root("parses", "parse")
    assert same_root("serialise", "Serialize") and same_root("raised", "Raises")
    assert not same_root("copy", "copyreg")  # another word it opens
    assert not same_root("parses", "Deserialize")
    assert entry_label("classmethod date.today()") == ("date.today", "")
    assert entry_label("exception ValueError") == ("ValueError", "")
    assert entry_label("The csv module defines the following classes:") is None
    entry = parse_entry("copyreg.constructor(object)", "Declares object to be a constructor.")
    assert entry is not None and entry.name_parts == ("constructor",)
    assert entry.module_parts == ("copyreg",)


def test_a_continuing_follow_up_ranks_the_previous_answers_document_higher() -> None:
    """Issue 30 (evals/pydocs): "And an else clause?" after "When does a finally clause
    run?" answered from the tutorial on errors is about try's else clause, not a loop's:
    a follow-up the rules completed (ellipsis, pronoun) ranks the sentences of the document
    its previous answer came from higher; a complete question (a new subject) does not. The
    embedder is left out (zero vectors: no similarity), so the two else clauses tie on
    everything but where they stand."""
    import numpy as np

    errors, loops = "tutorial/errors.html", "reference/compound_stmts.html"
    finally_ = "The finally clause runs as the last task of the try statement."
    loop_else = "The else clause of a loop runs when the loop ends normally."
    try_else = "The else clause of a try runs when the try clause raises nothing."
    passages = [
        _in_doc(1, errors, finally_, ["Errors"]),
        _in_doc(2, loops, loop_else, ["Loops"]),
        _in_doc(3, errors, try_else, ["Errors"]),
    ]
    scorer = SupportScorer(lambda texts: np.zeros((len(texts), 1), dtype=np.float32))

    def answer(reason: str) -> str:
        request = GenerationRequest(
            messages=[],
            question="When does an else clause run?",
            context=PackedContext(passages, "", 0, 1000),
            max_tokens=0,
            extra={
                "follow_up": {
                    "asked": "And an else clause?",
                    "said": [f"{finally_[:-1]} [1]."],
                    "reason": reason,
                }
            },
        )
        return "".join(
            p for p in ExtractiveGenerator(scorer, 1, 0.0).stream(request) if isinstance(p, str)
        )

    assert answer("ellipsis").startswith(try_else[:-1])
    assert answer("pronoun").startswith(try_else[:-1])
    assert answer("complete question (topic shift or new)").startswith(loop_else[:-1])


def test_the_kind_asked_for_and_a_mention_that_does_it(embedder: Embedder) -> None:
    """Issue 30 (evals/pydocs "And which one writes them?", pyconv_blind "how do I clear an
    lru_cache"): "Which class …" is answered by a class entry, never a method that writes
    rows (csvwriter.writerows); with no entry doing what is asked in the context, the
    sentence mentioning a code name that does it (cache_clear()) answers, rather than one
    sharing the question's words."""
    from rag.generate.entries import asked_kind, best_entries, names_doing, parse_entry

    writerows = parse_entry("csvwriter.writerows(rows)\nWrite all elements in rows.")
    dict_writer = parse_entry("class csv.DictWriter(f, fieldnames)\nMaps dicts onto rows.")
    assert writerows is not None and dict_writer is not None
    action = ("writes", ["rows"])
    assert asked_kind("Which class writes rows?") == "class"
    assert best_entries(action, [(0, writerows), (1, dict_writer)], "class") == [1]
    assert best_entries(action, [(0, writerows)], "class") == []
    assert best_entries(action, [(0, writerows)], asked_kind("how do I write rows")) == [0]
    sentence = "The decorator also provides a cache_clear() function for clearing the cache."
    assert names_doing(("clear", ["lru", "cache"]), sentence, "how do I clear an lru_cache")
    assert not names_doing(("clear", []), "Use lru_cache() with a size.", "how do I clear it")

    page = (
        "In general, the LRU cache should only be used when you want to reuse previously "
        "computed values.\n\n" + sentence
    )
    passages = [replace(_passage(1, page, ["functools"]), title="functools")]
    request = GenerationRequest(
        messages=[],
        question="how do I clear an lru_cache",
        context=PackedContext(passages, "", 0, 1000),
        max_tokens=0,
    )
    scorer = SupportScorer(embedder.embed)
    said = "".join(
        p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
    )
    assert said.startswith("The decorator also provides a cache_clear()")


def test_a_manual_pages_command_and_options_are_entries_too(embedder: Embedder) -> None:
    """Issue 30 (evals/gitdocs): "Which command applies the changes introduced by some
    existing commits?" is answered by the NAME line that names the command ("git-cherry-pick -
    Apply the changes …"), not by a sentence sharing its words without naming it; "Which
    option of …" by an option's label lines. A command is no class, an option no command."""
    from rag.generate.entries import action_of, asked_kind, best_entries, parse_entry

    pick = parse_entry("git-cherry-pick - Apply the changes introduced by some existing commits")
    annotate = parse_entry("-a\n--annotate\nMake an unsigned, annotated tag object")
    assert (
        pick is not None
        and pick.kind == "command"
        and pick.name_parts
        == (
            "git",
            "cherry",
            "pick",
        )
    )
    assert annotate is not None and annotate.kind == "option" and annotate.name == "--annotate"
    assert annotate.description == "Make an unsigned, annotated tag object"
    question = "Which command applies the changes introduced by some existing commits?"
    action = action_of(question)
    assert action is not None and asked_kind(question) == "command"
    assert best_entries(action, [(0, annotate), (1, pick)], "command") == [1]
    assert best_entries(action, [(1, pick)], "class") == []
    tag = action_of("Which flag annotates a tag?")
    assert tag is not None and best_entries(tag, [(0, annotate), (1, pick)], "option") == [0]
    # said once, through the generator
    page = (
        "git-cherry-pick - Apply the changes introduced by some existing commits\n\n"
        "Otherwise, apply the changes introduced by those commits that are in next but not "
        "HEAD to the current branch, creating a new commit for each new change."
    )
    request = GenerationRequest(
        messages=[],
        question=question,
        context=PackedContext([replace(_passage(1, page, ["NAME"]), title="git")], "", 0, 1000),
        max_tokens=0,
    )
    scorer = SupportScorer(embedder.embed)
    said = "".join(
        p for p in ExtractiveGenerator(scorer, 1, 0.12).stream(request) if isinstance(p, str)
    )
    assert said == "git-cherry-pick - Apply the changes introduced by some existing commits [1]."


def test_an_entry_far_down_the_ranking_is_about_something_else() -> None:
    """Issue 30 (evals/pydocs "How do I copy an object?"): zlib's "Compress.copy() Returns a
    copy of the compression object" does the action, but scored half of the best sentence:
    an entry (or a mention) is raised only from near the top (``NEAR_TOP_SHARE`` of the best
    score); near the top it is."""
    from rag.generate.extractive import NEAR_TOP_SHARE, _asked_entry_first

    best = _said(1, 0, "Not all objects can be copied, but most can.", 0.5)
    entry = "Compress.copy()\nReturns a copy of the compression object."
    segments = {1: [best.sentence], 2: [entry]}

    def raised(score: float) -> list[str]:
        far = replace(_said(2, 0, entry, score), score=score)
        out = _asked_entry_first("How do I copy an object?", [best, far], segments)
        return [c.sentence for c in out if c.relevance >= 0.9]

    assert raised(0.5 * (NEAR_TOP_SHARE - 0.1)) == []
    assert raised(0.5 * (NEAR_TOP_SHARE + 0.1)) == [entry]
