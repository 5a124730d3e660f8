"""The typed boundary of the query path: what goes in (:class:`Query`), what comes out
(:class:`Answer`, :class:`Citation`, :class:`Usage`) and what a stream carries (the events).

The library, the CLI and the API share these classes; the API's OpenAPI schema is generated
from them, and ``Answer.model_dump(mode="json")`` is the ``rag query --json`` object.

A stream is ``TokenEvent``… (maybe ``ResetEvent`` and more tokens), one ``CitationsEvent``,
then ``DoneEvent``. The texts of the ``TokenEvent`` since the last ``ResetEvent``,
concatenated, equal ``DoneEvent.answer.answer``: text is released sentence by sentence once
verified and filtered, never before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.core.access import Reader, cli_reader

if TYPE_CHECKING:
    from rag.core.config import Settings

__all__ = [
    "Answer",
    "BackendUsage",
    "Citation",
    "CitationsEvent",
    "DoneEvent",
    "Fallback",
    "FinishReason",
    "Injection",
    "PromptRef",
    "Query",
    "ResetEvent",
    "StreamEvent",
    "TokenEvent",
    "Turn",
    "Usage",
]


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation: a user's question or the assistant's answer."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Query:
    """One question and how to answer it. ``filters`` match chunk payloads exactly (a list
    matches any of its values); the API always sets ``tenant`` itself."""

    question: str
    filters: dict[str, Any] | None = None
    prompt: str | None = None  # "name" or "name@version"; None = the deployment's choice
    generate: bool = True  # False: the packed context only, no model call
    user: str | None = None  # A/B prompt assignment
    session: str | None = None
    # Whose documents to search; None = the deployment's (``tenant`` in settings). Never a
    # filter: the API sets it from the caller's key, and filters naming it are refused.
    tenant: str | None = None
    # The groups the asker reads with (rag/core/access.py); None: every group (the CLI,
    # evals). Like the tenant, never a filter: the API sets it from the caller's principal.
    groups: tuple[str, ...] | None = None
    # The principal's user id (an API key's --user, a JWT's user claim): traces carry it.
    # ``user`` above is the caller's own label for A/B assignment, not an identity.
    asker: str | None = None
    temperature: float | None = None  # None: the prompt's, else generation.temperature
    max_tokens: int | None = None  # answer tokens; None: the prompt's, else the configured
    # The trace to record this query under (the API picks it before answering, for its
    # X-Trace-Id header); None: the tracer picks one. Ignored when tracing is off.
    trace_id: str | None = None
    # The conversation before ``question``, oldest first: the ``condense`` stage turns a
    # follow-up ("And the business tier?") into a standalone question (rag/query/condense.py).
    history: tuple[Turn, ...] = ()

    def reader(self, settings: Settings) -> Reader:
        """Who asks: the caller's tenant and groups; a query without groups (the CLI, evals)
        asks as the CLI's principal (``access.cli_groups``)."""
        if self.groups is None:
            return cli_reader(settings, self.tenant)
        return Reader(self.tenant or settings.tenant, frozenset(self.groups), self.asker)


class Citation(BaseModel):
    model_config = ConfigDict(extra="allow")

    n: int = Field(description="The number used by `[n]` markers in the answer")
    source: str = Field(description="Document path (as listed by GET /v1/documents)")
    title: str | None = None
    section: list[str] = Field(default_factory=list, description="Heading path of the cited chunk")
    page: int | None = None
    start: int = Field(description="Character offset of the chunk in the parsed document")
    end: int
    quote: str = Field(description="The cited text")
    score: float
    verified: bool = Field(
        description="Verification found the cited text supports the sentence(s) citing it"
    )


class PromptRef(BaseModel):
    name: str
    version: str


FinishReason = Literal["stop", "length"]


class BackendUsage(BaseModel):
    """One model call of a request: which backend, what it used and cost, how it ended."""

    backend: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = Field(default=0.0, description="From costs.prices (0 when unpriced)")
    outcome: Literal["answered", "refused", "failed", "skipped"] = Field(
        default="answered",
        description="answered; refused by verification; failed (error or timeout); skipped "
        "(the tenant's daily budget was spent)",
    )
    estimated: bool = Field(
        default=False, description="The backend reported no usage: counted with its tokenizer"
    )


class Usage(BaseModel):
    """Tokens a backend used; also what generators yield last (positional: prompt, completion).

    On an answer it sums every model call of the request (refused and failed attempts
    included); ``backends`` lists each call, ``cost`` their total from ``costs.prices``.

    A generator also says here why it stopped (``finish_reason``: ``length`` when cut at
    ``max_tokens``; None when it cannot tell); the answer carries it as ``Answer.finish_reason``,
    so it is left out of ``usage`` in the JSON."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = Field(default=0.0, description="Total cost of the calls, from costs.prices")
    backends: list[BackendUsage] = Field(
        default_factory=list, description="Each model call of the request, in order"
    )
    finish_reason: FinishReason | None = Field(default=None, exclude=True)

    def __init__(self, prompt_tokens: int = 0, completion_tokens: int = 0, **data: Any):
        super().__init__(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, **data)

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Fallback(BaseModel):
    """A backend that did not answer, and why (its error, or verification's refusal)."""

    generator: str
    error: str


class Injection(BaseModel):
    """Prompt injection met while answering (rag/guards/injection.py); absent when none was."""

    question: bool = Field(
        description="The question held an attack (an instruction, a smuggled passages block, a "
        "system-prompt request): it was taken out before retrieval and answering"
    )
    reasons: list[str] = Field(default_factory=list, description="What the detector found")
    passages_excluded: int = Field(
        default=0,
        description="Retrieved chunks flagged as injection and kept out of the answer whole "
        "(injection.flagged: exclude_chunk, or nothing but the attack in them)",
    )
    spans_removed: int = Field(
        default=0,
        description="Attack spans cut out of retrieved chunks, the rest of each chunk kept "
        "(injection.flagged: exclude)",
    )


class Answer(BaseModel):
    """The `rag query --json` object."""

    model_config = ConfigDict(extra="allow")

    answer: str = Field(description="Verified text: [n] markers name `citations`")
    abstained: bool = Field(description="The documents don't answer the question")
    degraded: bool = Field(
        description="A backend failed or timed out, so a later one answered (or none did). "
        "Not set when an earlier backend merely abstained or had its answer refused by "
        "verification: `fallbacks` lists those too"
    )
    generator: str | None = Field(description="The backend that answered (null: none was asked)")
    citations: list[Citation]
    prompt: PromptRef | None
    usage: Usage = Field(default_factory=Usage)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    context_tokens: int = 0
    unsupported: list[str] = Field(
        default_factory=list,
        description="Sentences of the model's answer no passage supports, shown in `answer` "
        "marked `[unverified]` (generation.verify.unsupported: mark); empty by default (drop), "
        "when they are left out: `withheld` counts them",
    )
    withheld: int = Field(
        default=0,
        description="How many sentences of the model's answer were left out because no passage "
        "supports them (generation.verify.unsupported: drop, the default); their text is "
        "never returned",
    )
    fallbacks: list[Fallback] = Field(
        default_factory=list, description="Backends that failed or were refused first"
    )
    finish_reason: FinishReason | None = Field(
        default=None,
        description="Why generation ended: `length` when the answer was cut at its token limit "
        "(max_tokens), else `stop`; null when nothing was generated (`generate: false`)",
    )
    injection: Injection | None = Field(
        default=None,
        description="Prompt injection found in the question or the retrieved chunks; null: none",
    )
    cached: bool = Field(
        default=False,
        description="Served from the answer cache (no retrieval, no generation): the cited "
        "passages were checked unchanged",
    )

    standalone_question: str | None = Field(
        default=None,
        description="The question as answered when the query came with a chat history: the "
        'follow-up rewritten to stand on its own ("And the business tier?" → "What is the '
        'business tier rate limit of the public API?"); equal to the question when it needed '
        "nothing; null without history",
    )

    trace_id: str | None = Field(
        default=None,
        description="The Langfuse trace of this answer (send it to POST /v1/feedback); null "
        "when tracing is off",
    )

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- stream events -------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenEvent:
    """Verified, filtered answer text (one sentence or more, with its leading space)."""

    text: str
    kind: ClassVar[Literal["token"]] = "token"

    def data(self) -> str:
        return self.text


@dataclass(frozen=True)
class ResetEvent:
    """A backend was abandoned after text was released: discard the text received so far."""

    failed: str
    next: str | None
    error: str
    kind: ClassVar[Literal["reset"]] = "reset"

    def data(self) -> dict[str, Any]:
        return {"failed": self.failed, "next": self.next, "error": self.error}


@dataclass(frozen=True)
class CitationsEvent:
    citations: list[Citation]
    kind: ClassVar[Literal["citations"]] = "citations"

    def data(self) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in self.citations]


@dataclass(frozen=True)
class DoneEvent:
    answer: Answer
    kind: ClassVar[Literal["done"]] = "done"

    def data(self) -> dict[str, Any]:
        return self.answer.as_json()


StreamEvent = TokenEvent | ResetEvent | CitationsEvent | DoneEvent
