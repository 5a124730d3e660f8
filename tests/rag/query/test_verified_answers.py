"""Issue 22 through the query pipeline: what a capable model writes on the production path
(``generation.chain: [openai]``), as the user gets it, run and streamed.

The model is the scripted OpenAI-compatible server (``evals.chat_server``): its reply cites
passages by what they say (``{cite:PHRASE}``), whatever numbers retrieval gave them.
"""

from __future__ import annotations

from typing import Any

import pytest

from rag.core.types import Answer, DoneEvent, Query, ResetEvent, TokenEvent
from rag.query.pipeline import QueryPipeline
from tests.rag.chat_server import ChatServer
from tests.rag.conftest import KnowledgeBase

QUESTION = "How long are backups kept?"
TRUE = "Backups are kept for 35 days {cite:kept for 35 days}."
INVENTED = "After that they are archived to tape for seven years {cite:kept for 35 days}."
INVENTED_TEXT = "After that they are archived to tape for seven years."


def _pipeline(
    kb: KnowledgeBase, kb_settings: Any, server: ChatServer, unsupported: str = "drop"
) -> QueryPipeline:
    generation: dict[str, Any] = {
        "chain": ["openai"],
        "openai": {"base_url": server.base_url, "max_retries": 0},
    }
    if unsupported != "drop":  # drop is the default: not set, as a deployment leaves it
        generation["verify"] = {"unsupported": unsupported}
    return QueryPipeline(kb.index, kb_settings(generation=generation, pii={"enabled": False}))


def _streamed(pipeline: QueryPipeline, question: str) -> tuple[str, Answer]:
    shown: list[str] = []
    done: Answer | None = None
    for event in pipeline.stream(Query(question)):
        if isinstance(event, ResetEvent):
            shown.clear()
        elif isinstance(event, TokenEvent):
            shown.append(event.text)
        elif isinstance(event, DoneEvent):
            done = event.answer
    assert done is not None
    return "".join(shown), done


@pytest.mark.parametrize("streamed", [False, True])
def test_an_invented_sentence_is_never_shown_by_default(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer, streamed: bool
) -> None:
    chat_server.reply = f"{TRUE} {INVENTED}"
    pipeline = _pipeline(kb, kb_settings, chat_server)
    if streamed:
        shown, answer = _streamed(pipeline, QUESTION)
        assert shown == answer.answer, "the stream is the answer"
    else:
        answer = pipeline.run(Query(QUESTION))
    assert answer.answer == "Backups are kept for 35 days [1].", answer.answer
    assert "tape" not in answer.model_dump_json(), "not in any field either"
    assert answer.withheld == 1 and answer.unsupported == []
    assert [c.source for c in answer.citations] == ["backups.md"]


def test_with_mark_the_invented_sentence_is_shown_marked(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer
) -> None:
    chat_server.reply = f"{TRUE} {INVENTED}"
    shown, answer = _streamed(_pipeline(kb, kb_settings, chat_server, "mark"), QUESTION)
    assert answer.answer == f"Backups are kept for 35 days [1]. [unverified] {INVENTED_TEXT}"
    assert shown == answer.answer
    assert answer.unsupported == [INVENTED_TEXT] and answer.withheld == 0


@pytest.mark.parametrize(
    "reply",
    [
        "Backups are kept for 90 days {cite:kept for 35 days}.",  # a wrong value, right passage
        "Backups are not copied to a second region {cite:second region}.",  # a flipped negation
    ],
)
def test_a_wrong_claim_citing_the_right_passage_abstains(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer, reply: str
) -> None:
    chat_server.reply = reply
    shown, answer = _streamed(_pipeline(kb, kb_settings, chat_server), QUESTION)
    assert answer.abstained and answer.citations == [], answer
    assert shown == answer.answer == kb_settings().generation.abstain_text


def test_a_paraphrase_and_a_synthesis_are_kept_whole(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer
) -> None:
    chat_server.reply = (
        "Every night at 2 am UTC the production databases get backed up {cite:every night}. "
        "These copies are retained for thirty-five days {cite:every night}."
    )
    shown, answer = _streamed(_pipeline(kb, kb_settings, chat_server), QUESTION)
    assert not answer.abstained and answer.withheld == 0, answer
    assert (
        shown
        == answer.answer
        == (
            "Every night at 2 am UTC the production databases get backed up [1]. "
            "These copies are retained for thirty-five days [1]."
        )
    )
