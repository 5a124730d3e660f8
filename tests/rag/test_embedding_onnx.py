"""Short texts go through ONNX Runtime only when it gives PyTorch's vectors; the export is cached
by weight fingerprint; when ONNX can't be used, "auto" falls back and "onnx" fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rag.embedding_onnx
from rag.config import load_settings
from rag.embedding import Embedder

TEXTS = [
    "How long are production backups kept?",
    "Who approves a change to the payment service?",
    "  leading and trailing spaces are stripped like sentence-transformers does  ",
    "Mitochondria",
]


def _embedder(tmp_path: Path, **update: object) -> Embedder:
    settings = load_settings().embedding.model_copy(update={"threads": 1, **update})
    return Embedder(settings, cache_dir=tmp_path / "onnx")


def test_short_texts_use_onnx_and_match_pytorch(tmp_path: Path) -> None:
    emb = _embedder(tmp_path)
    emb.warm_up()
    assert emb.short_text_backend == "onnx"
    exported = list((tmp_path / "onnx").rglob("model.onnx"))
    assert len(exported) == 1 and exported[0].parent.name == emb.identity().fingerprint
    fast = np.stack([emb.embed([t])[0] for t in TEXTS])
    batched = emb.embed(TEXTS)  # within onnx_max_batch: ONNX, padded batch
    reference = emb._model.encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )  # PyTorch
    assert fast.shape == (len(TEXTS), emb.dimension) and fast.dtype == np.float32
    assert np.min(np.sum(fast * reference, axis=1)) > 0.9999
    assert np.min(np.sum(batched * reference, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # A long batch goes through PyTorch: same vectors either way.
    long_batch = emb.embed(TEXTS * 3)
    assert np.min(np.sum(long_batch[: len(TEXTS)] * fast, axis=1)) > 0.9999

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


def test_unusable_onnx_falls_back_on_auto_and_fails_on_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        rag.embedding_onnx, "onnx_unsupported_reason", lambda model: "onnxruntime is not installed"
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
    real = rag.embedding_onnx.OnnxEncoder.encode

    def skewed(
        self: rag.embedding_onnx.OnnxEncoder, texts: list[str], normalize: bool
    ) -> np.ndarray:
        vecs = real(self, texts, normalize)
        vecs[:, :40] = 0.0
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    monkeypatch.setattr(rag.embedding_onnx.OnnxEncoder, "encode", skewed)
    emb = _embedder(tmp_path)
    emb.warm_up()
    assert emb.short_text_backend == "torch"
    assert emb._onnx is None
