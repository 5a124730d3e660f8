"""rag: watched folders in, a version-locked Qdrant index out, verified answers.

The public names, importable from here (``from rag import QueryPipeline, Query``). Each
loads its module on first use, so ``import rag`` stays cheap and importing one wing never
pulls in the others. Where things live (ARCHITECTURE.md has the map):

- ``rag.core``          types, errors, settings, data dir, tokens, text guard, paths
- ``rag.contracts``     every interface a plug-in implements, and the data it is handed
- ``rag.store``         vector stores (Qdrant Edge in process, a Qdrant server)
- ``rag.guards``        prompt-injection detection, PII (Presidio)
- ``rag.indexing``      parsing, chunking, transforms, embedding, manifest, sync, reindex
- ``rag.verification``  citation support and what a question asks for
- ``rag.generate``      generator backends and the fallback chain
- ``rag.query``         the pipeline and its stages, prompts, answer cache, costs, tracing
- ``rag.observability`` Langfuse tracing and user feedback
- ``rag.plugins``       the plug-in tables (``PARSERS``, ``STORES``, ``GENERATORS``,
  ``RERANKERS``) and ``check_settings``, which checks the settings' names against them

Everything else (modules and names starting with ``_``, and anything not listed in
``__all__`` here or in ARCHITECTURE.md) may change without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.contracts import (
        DocumentTransform,
        GenerationRequest,
        Generator,
        Hit,
        NoopTracer,
        OutputFilter,
        Parser,
        QueryState,
        Reranker,
        Span,
        Stage,
        Tracer,
        VectorStore,
    )
    from rag.core.config import Settings, load_settings
    from rag.core.errors import (
        ConfigError,
        GenerationError,
        ParseError,
        PromptError,
        QueryError,
        RagError,
        StoreError,
    )
    from rag.core.types import (
        Answer,
        Citation,
        CitationsEvent,
        DoneEvent,
        Fallback,
        PromptRef,
        Query,
        ResetEvent,
        StreamEvent,
        TokenEvent,
        Usage,
    )
    from rag.generate import GeneratorChain, build_chain
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor
    from rag.indexing.reindex import reindex
    from rag.plugins import GENERATORS, PARSERS, RERANKERS, STORES, check_settings
    from rag.query.pipeline import QueryPipeline, default_stages
    from rag.query.tracing import TimingTracer, Tracers
    from rag.store import open_store

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # the typed boundary
    **dict.fromkeys(
        [
            "Answer",
            "Citation",
            "CitationsEvent",
            "DoneEvent",
            "Fallback",
            "PromptRef",
            "Query",
            "ResetEvent",
            "StreamEvent",
            "TokenEvent",
            "Usage",
        ],
        "rag.core.types",
    ),
    **dict.fromkeys(
        [
            "ConfigError",
            "GenerationError",
            "ParseError",
            "PromptError",
            "QueryError",
            "RagError",
            "StoreError",
        ],
        "rag.core.errors",
    ),
    "Settings": "rag.core.config",
    "load_settings": "rag.core.config",
    # what a plug-in implements
    **dict.fromkeys(
        [
            "DocumentTransform",
            "GenerationRequest",
            "Generator",
            "Hit",
            "NoopTracer",
            "OutputFilter",
            "Parser",
            "QueryState",
            "Reranker",
            "Span",
            "Stage",
            "Tracer",
            "VectorStore",
        ],
        "rag.contracts",
    ),
    # the parts to compose
    "Index": "rag.indexing.index",
    "Ingestor": "rag.indexing.ingest",
    "reindex": "rag.indexing.reindex",
    "QueryPipeline": "rag.query.pipeline",
    "default_stages": "rag.query.pipeline",
    "TimingTracer": "rag.query.tracing",
    "Tracers": "rag.query.tracing",
    "GeneratorChain": "rag.generate",
    "build_chain": "rag.generate",
    "open_store": "rag.store",
    # the plug-in tables (a name in the settings -> an implementation), and their check
    **dict.fromkeys(
        ["GENERATORS", "PARSERS", "RERANKERS", "STORES", "check_settings"], "rag.plugins"
    ),
}

__all__ = [  # noqa: RUF022 - plain sorted() order: the export table is checked against it
    "Answer",
    "Citation",
    "CitationsEvent",
    "ConfigError",
    "DocumentTransform",
    "DoneEvent",
    "Fallback",
    "GENERATORS",
    "GenerationError",
    "GenerationRequest",
    "Generator",
    "GeneratorChain",
    "Hit",
    "Index",
    "Ingestor",
    "NoopTracer",
    "OutputFilter",
    "PARSERS",
    "ParseError",
    "Parser",
    "PromptError",
    "PromptRef",
    "Query",
    "QueryError",
    "QueryPipeline",
    "QueryState",
    "RERANKERS",
    "RagError",
    "Reranker",
    "ResetEvent",
    "STORES",
    "Settings",
    "Span",
    "Stage",
    "StoreError",
    "StreamEvent",
    "TimingTracer",
    "TokenEvent",
    "Tracer",
    "Tracers",
    "Usage",
    "VectorStore",
    "build_chain",
    "check_settings",
    "default_stages",
    "load_settings",
    "open_store",
    "reindex",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
