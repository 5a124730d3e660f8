"""Short texts go through ONNX Runtime only when it gives PyTorch's vectors; the export is cached
by weight fingerprint; when ONNX can't be used, "auto" falls back and "onnx" fails clearly.

``embedding.dtype: auto`` picks bf16 on CPUs with native bf16 units (AVX-512 BF16, AMX) and
fp32 elsewhere: every test here runs both branches on any CPU (``native_bf16``), since CI
machines differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rag.indexing.embedding
import rag.indexing.embedding_onnx
from rag.core.config import load_settings
from rag.indexing.embedding import Embedder

TEXTS = [
    "How long are production backups kept?",
    "Who approves a change to the payment service?",
    "  leading and trailing spaces are stripped like sentence-transformers does  ",
    "Mitochondria",
]


@pytest.fixture(params=[False, True], ids=["fp32-cpu", "bf16-cpu"])
def native_bf16(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the CPU is taken to have native bf16 units (the dtype: auto branch)."""
    monkeypatch.setattr(rag.indexing.embedding, "_cpu_has_native_bf16", lambda: request.param)
    return bool(request.param)


def _fp32_reference(emb: Embedder, texts: list[str]) -> np.ndarray:
    """PyTorch fp32 vectors from a separate load of the same weights."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(emb.model_dir), device="cpu", local_files_only=True)
    return np.asarray(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))


def _embedder(tmp_path: Path, **update: object) -> Embedder:
    # The fp32 export is what these tests are about: queries pinned to it (the default, "auto",
    # embeds them at int8 where it can: tests/rag/indexing/test_embedding_int8.py).
    settings = load_settings().embedding.model_copy(
        update={"threads": 1, "query_precision": "fp32", **update}
    )
    return Embedder(settings, cache_dir=tmp_path / "onnx")


def test_short_texts_use_onnx_and_match_pytorch(tmp_path: Path, native_bf16: bool) -> None:
    emb = _embedder(tmp_path)
    emb.warm_up()
    assert emb.dtype == ("bfloat16" if native_bf16 else "float32")
    assert emb.short_text_backend == "onnx"  # whatever the document dtype
    exported = list((tmp_path / "onnx").rglob("model.onnx"))
    assert len(exported) == 1 and exported[0].parent.name == emb.identity().fingerprint
    fast = np.stack([emb.embed([t])[0] for t in TEXTS])
    batched = emb.embed(TEXTS)  # within onnx_max_batch: ONNX, padded batch
    reference = _fp32_reference(emb, TEXTS)
    assert fast.shape == (len(TEXTS), emb.dimension) and fast.dtype == np.float32
    assert np.min(np.sum(fast * reference, axis=1)) > 0.9999
    assert np.min(np.sum(batched * reference, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # A long batch goes through PyTorch in the document dtype: bf16 only within its tolerance.
    long_batch = emb.embed(TEXTS * 3)
    tolerance = emb.settings.min_bf16_cosine if native_bf16 else 0.9999
    assert np.min(np.sum(long_batch[: len(TEXTS)] * fast, axis=1)) > tolerance

    mtime = exported[0].stat().st_mtime_ns
    again = _embedder(tmp_path)
    again.warm_up()
    assert again.short_text_backend == "onnx"
    assert exported[0].stat().st_mtime_ns == mtime  # the cached export was reused


def test_torch_setting_skips_onnx(tmp_path: Path) -> None:
    emb = _embedder(tmp_path, short_text_backend="torch")
    emb.warm_up()
    assert emb.short_text_backend == "torch"
    assert not (tmp_path / "onnx").exists()


def test_rejected_bf16_leaves_the_fp32_weights_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nn.Module.to() converts in place: trying bf16 and going back used to leave bf16-rounded
    # weights behind an unchanged fingerprint. A threshold no bf16 model meets forces a reject.
    monkeypatch.setattr(rag.indexing.embedding, "_cpu_has_native_bf16", lambda: True)
    emb = _embedder(tmp_path, min_bf16_cosine=1.0)
    emb.warm_up()
    assert emb.dtype == "float32" and emb.bf16_cosine is not None and emb.bf16_cosine < 1.0
    from sentence_transformers import SentenceTransformer

    fresh = SentenceTransformer(str(emb.model_dir), device="cpu", local_files_only=True)
    ours = emb._model.state_dict()
    for name, tensor in fresh.state_dict().items():
        assert ours[name].dtype == tensor.dtype
        assert bool((ours[name] == tensor).all()), f"{name} changed by the bf16 trial"
    # Long batches (PyTorch) give exactly the fp32 vectors.
    got = emb.embed(TEXTS * 3)[: len(TEXTS)]
    assert np.min(np.sum(got * _fp32_reference(emb, TEXTS), axis=1)) > 0.99999


def test_unusable_onnx_falls_back_on_auto_and_fails_on_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    monkeypatch.setattr(
        rag.indexing.embedding_onnx,
        "onnx_unsupported_reason",
        lambda model: "onnxruntime is not installed",
    )
    emb = _embedder(tmp_path)
    emb.warm_up()
    assert emb.short_text_backend == "torch"
    assert emb.embed([TEXTS[0]]).shape == (1, emb.dimension)

    strict = _embedder(tmp_path, short_text_backend="onnx")
    with pytest.raises(
        RuntimeError, match="short_text_backend is 'onnx' but onnxruntime is not installed"
    ):
        strict.warm_up()


def test_disagreeing_export_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An export that computes something else (like the SDPA trace that baked in its sequence
    # length, cosine ~0.95) must be caught by the agreement check, not used.
    real = rag.indexing.embedding_onnx.OnnxEncoder.encode

    def skewed(
        self: rag.indexing.embedding_onnx.OnnxEncoder, texts: list[str], normalize: bool
    ) -> np.ndarray:
        vecs = real(self, texts, normalize)
        vecs[:, :40] = 0.0
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    monkeypatch.setattr(rag.indexing.embedding_onnx.OnnxEncoder, "encode", skewed)
    emb = _embedder(tmp_path)
    emb.warm_up()
    assert emb.short_text_backend == "torch"
    assert emb._onnx is None
