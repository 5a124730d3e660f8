"""Request and response bodies: the OpenAPI schema is generated from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from rag.core.textguard import VISIBLE_CHARACTER, is_blank
from rag.core.types import Answer, Citation, PromptRef

__all__ = [
    "FILTER_KEYS",
    "ChatCompletion",
    "ChatRequest",
    "Citation",
    "DocumentInfo",
    "DocumentList",
    "HistoryMessage",
    "ModelList",
    "QueryRequest",
    "QueryResponse",
]

# Payload fields a caller may filter on. `tenant` is never one: it comes from the API key.
FILTER_KEYS = ("source", "doc_id", "title", "section", "page")


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema counts them: 3 and 3.0 (the models are strict, and a strict
    int refuses a float); never true, "3" or 3.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The validator outermost: the bounds stay on the int itself, so the schema says minimum/maximum.
Page = Annotated[int, Field(ge=0, le=1_000_000), BeforeValidator(_json_integer)]
Tokens = Annotated[int, Field(ge=1, le=32768), BeforeValidator(_json_integer)]
OnlyOne = Annotated[int, Field(ge=1, le=1), BeforeValidator(_json_integer)]
Texts = Annotated[list[str], Field(min_length=1, max_length=100)]
Pages = Annotated[list[Page], Field(min_length=1, max_length=100)]


# A character a person would see: not whitespace, control or format (Unicode Cc, Cf, Z*) nor
# another invisible (zero-width joiners, variation selectors, fillers); rag.core.textguard.is_blank
# is the same test, so a question of only U+200B is a 422 here and never reaches retrieval.
NOT_BLANK = VISIBLE_CHARACTER


# Request bodies take JSON types as declared (strict): lax mode would read `false` as page 0,
# "yes" as true and "50" as 50, accepting bodies the schema calls invalid.
class Filters(BaseModel):
    """Exact-match payload filters; a list matches any of its values. All given keys must match."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: str | Texts | None = Field(default=None, description="Document path(s)")
    doc_id: str | Texts | None = Field(default=None, description="Document id(s)")
    title: str | Texts | None = Field(default=None, description="Document title(s)")
    section: str | Texts | None = Field(
        default=None, description="A heading anywhere in the chunk's heading path"
    )
    page: Page | Pages | None = Field(default=None, description="Page number(s), from 1 (PDF)")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(FILTER_KEYS))
            if unknown:
                raise ValueError(
                    f"unknown filter key(s) {', '.join(map(repr, unknown))}: use {', '.join(FILTER_KEYS)} "
                    "(the tenant is always that of the API key)"
                )
        return value

    def as_filter(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class HistoryMessage(BaseModel):
    """One earlier message of the conversation: the user's question or the assistant's answer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(
        min_length=1,
        max_length=100_000,
        # In the schema; checked by the validator below, which says what is wrong.
        json_schema_extra={"pattern": NOT_BLANK},
        description="Limited further by api.max_question_chars",
    )
    filters: Filters | None = None
    prompt: str | None = Field(
        default=None,
        max_length=129,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="Prompt `name` or `name@version` (404 when the deployment has no such prompt)",
    )
    stream: bool = Field(
        default=False, description="Answer as Server-Sent Events: token…, citations, done"
    )
    generate: bool = Field(
        default=True, description="False: return the retrieved, packed context only"
    )
    user: str | None = Field(default=None, max_length=256, description="For A/B prompt assignment")
    session: str | None = Field(default=None, max_length=256)
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="None: the prompt's, else generation.temperature"
    )
    max_tokens: Tokens | None = Field(
        default=None,
        description="Answer tokens; None: the prompt's limit. `finish_reason: length` when cut",
    )
    history: list[HistoryMessage] | None = Field(
        default=None,
        max_length=200,
        description='The conversation before `question`, oldest first: a follow-up ("And the '
        'business tier?") is answered as the standalone question it stands for, which the '
        "answer reports as `standalone_question` (the most recent messages within "
        "api.history_tokens are read)",
    )

    @field_validator("question")
    @classmethod
    def _visible(cls, value: str) -> str:
        if is_blank(value):
            raise ValueError(
                "the question is empty: it has only whitespace or invisible characters "
                "(zero-width, format or control characters); ask something"
            )
        return value


# The `rag query --json` object: the library's own Answer, so the schema cannot drift from it.
QueryResponse = Answer


# -- OpenAI-compatible chat ------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in (self.content or []) if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class ChatRequest(BaseModel):
    # Unknown OpenAI parameters (top_p, seed, ...) are accepted and ignored, like other servers do.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(description="A name from GET /v1/models")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    n: OnlyOne | None = Field(default=None, description="Only 1 is supported")
    user: str | None = Field(default=None, max_length=256)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagInfo(BaseModel):
    """Extension field: what the knowledge base did for this answer."""

    abstained: bool
    degraded: bool
    generator: str | None
    prompt: PromptRef | None
    timings_ms: dict[str, float]
    trace_id: str | None = Field(
        default=None, description="The Langfuse trace (for POST /v1/feedback); null: not traced"
    )
    withheld: int = Field(
        default=0,
        description="Sentences of the model's answer left out of the content: no passage supports "
        "them (generation.verify.unsupported: drop, the default); their text is never returned",
    )
    unsupported: list[str] = Field(
        default_factory=list,
        description="With generation.verify.unsupported: mark, the sentences no passage supports, "
        "shown in the content after an `[unverified]` mark; empty with drop",
    )
    standalone_question: str | None = Field(
        default=None,
        description="The last user message as answered: rewritten to stand on its own when "
        "earlier messages were given; null without them",
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    citations: list[Citation] = Field(
        description="Extension: the sources behind the `[n]` markers in the answer (streamed in the last chunk)"
    )
    rag: RagInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- documents -------------------------------------------------------------------------
class DocumentInfo(BaseModel):
    path: str = Field(description="The document's name in citations and in /v1/documents/{path}")
    status: Literal["ok", "pending", "failed", "skipped"]
    chunks: int
    reason: str | None = Field(default=None, description="Why it failed or was skipped")
    origin: Literal["upload", "watched"] = Field(
        description="Uploaded through the API, or from a watched folder"
    )
    flagged_chunks: int = Field(
        default=0,
        description="Chunks the prompt-injection detector flagged (kept out of answers by "
        "default: injection.flagged)",
    )
    injection_reasons: list[str] = Field(
        default_factory=list, description="What the detector found in those chunks"
    )


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    total: int
    tenant: str = Field(description="The tenant of the API key (whose documents these are)")


class UploadResult(BaseModel):
    path: str
    status: Literal["pending"]
    bytes: int
    sha256: str


class DeleteResult(BaseModel):
    path: str
    status: Literal["deleting"]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
