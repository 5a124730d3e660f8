"""Follow-up questions in a chat, through the real server and pipeline (MiniLM, Qdrant Edge, the
extractive chain) over examples/docs: issue 30's three conversations through ``/v1/query``
(its ``history`` field) and through ``/v1/chat/completions`` with the official OpenAI client
(earlier messages are the history); a topic shift is not polluted by the turns before it; the
standalone question is in the response."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.api.conftest import Deployment, sse_events

# (question, a string the right answer holds, the standalone question's own words or None)
CONVERSATIONS: list[list[tuple[str, str, str | None]]] = [
    [
        ("How long are backups retained?", "35 days", None),
        ("And monthly snapshots?", "13 months", "monthly snapshots"),
        ("Where are they stored?", "eu-west-2", "monthly snapshots"),
    ],
    [
        ("What is the free tier rate limit of the public API?", "60 requests per minute", None),
        ("And the business tier?", "1,200 requests per minute", "business tier rate limit"),
        ("What happens when it is exceeded?", "429", "business tier rate limit"),
    ],
    [
        ("When do new engineers join the on-call rotation?", "six weeks", None),
        ("How long does a rotation last?", "seven days", None),
        ("How fast must pages be acknowledged?", "5 minutes", None),
    ],
]


def _ask(deployment: Deployment, question: str, history: list[dict[str, str]]) -> dict[str, Any]:
    with deployment.client() as client:
        r = client.post("/v1/query", json={"question": question, "history": history})
    assert r.status_code == 200, r.text
    return dict(r.json())


CASES = [
    # Until in_conversation_place (rag/generate/extractive.py), the last follow-up of these two
    # abstained: "Where are monthly snapshots stored?" (the policy says where *backups* are
    # stored: relevance 0.04) and "What happens when the business tier rate limit of the
    # public API is exceeded?" (the 429 sentence under the heading that says it: 0.04).
    pytest.param(CONVERSATIONS[0], id="backups"),
    pytest.param(CONVERSATIONS[1], id="rate-limits"),
    pytest.param(CONVERSATIONS[2], id="on-call"),
]


@pytest.mark.parametrize("conversation", CASES)
def test_issue_conversations_through_v1_query(
    deployment: Deployment, conversation: list[tuple[str, str, str | None]]
) -> None:
    history: list[dict[str, str]] = []
    for i, (question, expected, resolved) in enumerate(conversation):
        result = _ask(deployment, question, history)
        assert not result["abstained"] and expected in result["answer"], (question, result)
        assert result["citations"] and all(c["verified"] for c in result["citations"])
        standalone = result["standalone_question"]
        if i == 0:
            assert standalone is None  # no history, nothing to condense
        elif resolved is None:
            assert standalone == question  # a complete question stays as it was asked
        else:
            assert resolved in standalone and standalone != question, standalone
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": result["answer"]},
        ]


@pytest.mark.parametrize("conversation", CASES)
def test_issue_conversations_through_the_openai_client(
    deployment: Deployment, conversation: list[tuple[str, str, str | None]]
) -> None:
    client = openai.OpenAI(
        base_url=deployment.server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
    )
    messages: list[Any] = [{"role": "system", "content": "You are a helpful assistant."}]
    for question, expected, resolved in conversation:
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(
            model=deployment.settings.api.model_name, messages=messages
        )
        text = reply.choices[0].message.content or ""
        rag = (reply.model_extra or {})["rag"]
        assert not rag["abstained"] and expected in text, (question, text)
        if resolved is not None:
            assert resolved in rag["standalone_question"], rag
        messages.append({"role": "assistant", "content": text})


def test_the_openai_clients_follow_up_is_answered_as_its_standalone_question(
    deployment: Deployment,
) -> None:
    client = openai.OpenAI(
        base_url=deployment.server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
    )
    messages: list[Any] = [
        {"role": "user", "content": "What is the free tier rate limit of the public API?"},
        {"role": "assistant", "content": "The free tier allows 60 requests per minute [1]."},
        {"role": "user", "content": "And the business tier?"},
    ]
    reply = client.chat.completions.create(
        model=deployment.settings.api.model_name, messages=messages
    )
    rag = (reply.model_extra or {})["rag"]
    assert rag["standalone_question"] == "What is the business tier rate limit of the public API?"
    assert "1,200 requests per minute" in (reply.choices[0].message.content or "")


def test_a_follow_up_streamed_carries_its_standalone_question(deployment: Deployment) -> None:
    history = [
        {"role": "user", "content": "What is the free tier rate limit of the public API?"},
        {"role": "assistant", "content": "The free tier allows 60 requests per minute [1]."},
    ]
    body = {"question": "And the business tier?", "history": history, "stream": True}
    with deployment.client() as client, client.stream("POST", "/v1/query", json=body) as r:
        assert r.status_code == 200
        events = list(sse_events(r.iter_lines()))
    done = json.loads(next(data for event, data in events if event == "done"))
    assert done["standalone_question"] == "What is the business tier rate limit of the public API?"
    tokens = "".join(json.loads(data)["text"] for event, data in events if event == "token")
    assert "1,200 requests per minute" in tokens and tokens == done["answer"]


def test_a_new_question_after_a_conversation_is_not_polluted(deployment: Deployment) -> None:
    history = [
        {"role": "user", "content": "What is the free tier rate limit of the public API?"},
        {"role": "assistant", "content": "The free tier allows 60 requests per minute [1]."},
        {"role": "user", "content": "And the business tier?"},
        {"role": "assistant", "content": "The business tier allows 1,200 requests per minute [1]."},
    ]
    result = _ask(deployment, "How long are backups retained?", history)
    assert result["standalone_question"] == "How long are backups retained?"
    assert "35 days" in result["answer"]
    assert {c["source"] for c in result["citations"]} == {"policies/backup-policy.md"}


# (history: a question and the answer given, the follow-up the documents do not answer)
UNANSWERED = [
    pytest.param(
        "How big can a burst be on the business tier?",
        "The business tier allows 1,200 requests per minute with bursts of up to 200 requests "
        "per second [1].",
        "And on the free tier?",  # an ellipsis: "The free tier allows 60 ..." is not about bursts
        id="ellipsis",
    ),
    pytest.param(
        "How are backups encrypted?",
        "Backups are encrypted with AES-256 and stored in a second region, eu-west-2, separate "
        "from the primary region eu-central-1 [1].",
        "Which region is the staging one?",  # no sentence there names staging
        id="complete",
    ),
]


@pytest.mark.parametrize(("before", "said", "question"), UNANSWERED)
def test_a_follow_up_the_documents_do_not_answer_abstains(
    deployment: Deployment, before: str, said: str, question: str
) -> None:
    """Issue 30: a follow-up that refers back is answered from where the conversation is
    at a lower bar (rag.generate.extractive.in_conversation_place); near misses there still
    abstain."""
    history = [{"role": "user", "content": before}, {"role": "assistant", "content": said}]
    result = _ask(deployment, question, history)
    assert result["abstained"], result


def test_history_is_checked_like_the_rest_of_the_body(deployment: Deployment) -> None:
    with deployment.client() as client:
        bad_role = client.post(
            "/v1/query",
            json={"question": "q", "history": [{"role": "system", "content": "obey"}]},
        )
        assert bad_role.status_code == 422 and "history" in bad_role.text
        extra = client.post(
            "/v1/query",
            json={"question": "q", "history": [{"role": "user", "content": "a", "name": "x"}]},
        )
        assert extra.status_code == 422
