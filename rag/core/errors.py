"""The library's exception tree: catch :class:`RagError` to catch every error it raises on purpose.

Each message says what went wrong and what to do next. Subclasses also derive from the
built-in they replaced (``ValueError``, ``RuntimeError``), so older ``except`` clauses still
match::

    RagError
    ├── ConfigError             bad configuration (names the key)          ValueError
    ├── QueryError              a request the pipeline cannot take          ValueError
    │   ├── PromptError         unknown or broken prompt                    ValueError
    │   └── QuestionError       an empty, invisible or over-long question   ValueError
    ├── ParseError              a file that cannot be ingested (the reason shown in `rag status`)
    │   └── WorkBudgetExceeded  parsing and scoring it took longer than ingestion.parse_timeout_s
    ├── SourceError             a folder to ingest that is not one                 NotADirectoryError
    ├── EmbeddingError          the embedding model is missing or cannot run       RuntimeError
    ├── TokenizerError          a tokenizer.json that is not there                 FileNotFoundError
    ├── StoreError              the vector store failed or is locked        RuntimeError
    │   ├── EmbeddingMismatchError  the index was built with another model or transform
    │   └── DiskFullError       the data dir's volume is under its free-space floor
    ├── PackingError            the token budget cannot hold one passage    ValueError
    ├── RerankError             the reranker cannot run                     RuntimeError
    ├── GenerationError         a backend could not answer                  RuntimeError
    ├── VerificationError       the streaming verifier used out of order    RuntimeError
    ├── StageNotFoundError      a pipeline asked for a stage it does not have  KeyError
    ├── FeedbackError           feedback on a trace or record that cannot take it  LookupError
    │   └── FeedbackConflictError  a record already confirmed, or missing its question  ValueError
    └── TracingError            the trace exporter is stopping: a batch was dropped  RuntimeError

    QueryCancelled              the reader of an answer stream went away    GeneratorExit (not a RagError)

This module imports nothing, so every other module can use it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DiskFullError",
    "EmbeddingError",
    "EmbeddingMismatchError",
    "FeedbackConflictError",
    "FeedbackError",
    "GenerationError",
    "PackingError",
    "ParseError",
    "PromptError",
    "QueryCancelled",
    "QueryError",
    "QuestionError",
    "RagError",
    "RerankError",
    "SourceError",
    "StageNotFoundError",
    "StoreError",
    "TokenizerError",
    "TracingError",
    "VerificationError",
    "WorkBudgetExceeded",
]


class RagError(Exception):
    """Root of every error the library raises on purpose."""


class ConfigError(RagError, ValueError):
    """The configuration cannot be used; the message names the key and what to change."""


class QueryError(RagError, ValueError):
    """A query the pipeline cannot take (an empty question, say); the message says why."""


class PromptError(QueryError):
    """A prompt file or request is unusable; the message names the file and what to fix."""


class QuestionError(QueryError):
    """The question itself is unusable: empty, only invisible characters, or ``too_long``."""

    def __init__(self, message: str, *, too_long: bool = False):
        super().__init__(message)
        self.too_long = too_long


class ParseError(RagError):
    """A file that cannot be ingested; ``str(err)`` is the reason shown in ``rag status``."""


class WorkBudgetExceeded(ParseError):
    """One file's parsing, chunking and scoring ran past its time budget
    (``ingestion.parse_timeout_s``, :mod:`rag.core.budget`): the file is failed, not retried
    until it changes or the limit is raised."""


class StoreError(RagError, RuntimeError):
    """A store operation failed; the message says what to do."""


class EmbeddingMismatchError(StoreError):
    """The index was built with another embedding model (or document transforms) than configured."""


class DiskFullError(StoreError):
    """Too little free space on the data dir's volume to write safely (``storage.min_free_mb``):
    nothing was written; the message says how much is free and what to do."""


class PackingError(RagError, ValueError):
    """The budget cannot hold even one passage; the message says which setting to change."""


class RerankError(RagError, RuntimeError):
    """The reranker cannot run; the message says which setting to fix."""


class GenerationError(RagError, RuntimeError):
    """A backend could not produce an answer; ``retryable`` when another try may succeed."""

    def __init__(self, message: str, *, retryable: bool = False, backend: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.backend = backend


class SourceError(RagError, NotADirectoryError):
    """A path given to ingest or watch that is not a folder; the message names it."""


class EmbeddingError(RagError, RuntimeError):
    """The embedding model is missing or cannot run; the message names the setting to fix."""


class TokenizerError(RagError, FileNotFoundError):
    """A ``tokenizer.json`` (or a folder meant to hold one) is not there."""


class VerificationError(RagError, RuntimeError):
    """The streaming verifier was used out of order (a bug in a stage, not in the input)."""


class StageNotFoundError(RagError, KeyError):
    """A pipeline was asked for a stage it does not have; the message lists its stages."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FeedbackError(RagError, LookupError):
    """Feedback on a trace or a record this caller cannot reach (unknown, another tenant's)."""


class FeedbackConflictError(FeedbackError, ValueError):
    """A feedback record that cannot be confirmed (already in a golden set, no question)."""


class TracingError(RagError, RuntimeError):
    """The trace exporter is stopping: the batch handed to it was dropped."""


class QueryCancelled(GeneratorExit):
    """The reader of an answer stream went away (a server's client disconnected), so the
    ``generate`` stage stops at the model's next token instead of at the next sentence it
    could show. A ``GeneratorExit``, as closing the stream is: no ``except Exception`` takes
    it for a backend failure, and tracers record both as cancelled."""
