"""int8 embedding (``embedding.query_precision`` / ``embedding.document_precision``): the ONNX
export quantized by ONNX Runtime at warm-up, cached beside it, used where configured, near
fp32; what encoded the documents is part of the index's identity.

int8 results differ slightly between CPUs (AVX-512 VNNI or not): nothing here asserts exact
vectors against a reference, only a cosine floor to fp32 and which encoder ran."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.core.config import Settings, load_settings
from rag.core.errors import ConfigError, EmbeddingError
from rag.indexing.embedding import Embedder, embedder_for
from rag.indexing.index import EmbeddingMismatchError, Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex
from rag.indexing.status import collect_status

TEXTS = [
    "How long are production backups kept?",
    "Who approves a change to the payment service?",
    "Mitochondrial DNA mutations accumulate with age in human muscle tissue.",
    "Mitochondria",
]
# Below this an int8 vector is no longer the fp32 model's (measured: 0.985-0.999 on SciFact).
COSINE_FLOOR = 0.97


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export (and its int8 quantization) for the module: each takes seconds."""
    return tmp_path_factory.mktemp("onnx")


def _embedder(cache: Path, **update: object) -> Embedder:
    settings = load_settings().embedding.model_copy(update={"threads": 1, **update})
    emb = Embedder(settings, cache_dir=cache)
    emb.warm_up()
    return emb


@pytest.fixture(scope="module")
def fp32(onnx_cache: Path) -> Embedder:
    return _embedder(onnx_cache, query_precision="fp32")


def _fp32_reference(emb: Embedder, texts: list[str]) -> np.ndarray:
    """PyTorch fp32 vectors from a separate load of the same weights."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(emb.model_dir), device="cpu", local_files_only=True)
    return np.asarray(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))


def test_int8_queries_use_the_quantized_export_near_fp32(onnx_cache: Path, fp32: Embedder) -> None:
    emb = _embedder(onnx_cache, query_precision="int8")
    assert emb.query_backend == "onnx-int8" and fp32.query_backend == "onnx-fp32"
    assert emb.document_backend == fp32.document_backend  # documents stay on the float model
    int8_file = onnx_cache / emb.identity().fingerprint / "model-int8.onnx"
    assert int8_file.is_file() and (int8_file.parent / "model.onnx").is_file()
    assert emb.int8_cosine is not None and emb.int8_cosine >= emb.settings.min_int8_cosine
    reference = _fp32_reference(emb, TEXTS)
    got = np.stack([emb.embed_query(t) for t in TEXTS])
    assert got.shape == (len(TEXTS), emb.dimension) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.min(_cosines(got, reference)) > COSINE_FLOOR
    # It is the int8 graph that ran: the fp32 export gives PyTorch's vectors to 0.9999.
    assert np.min(_cosines(got, reference)) < 0.9999
    assert np.min(_cosines(fp32.embed(TEXTS), reference)) > 0.9999
    # The query precision is not the index's: its identity is fp32's.
    assert emb.identity() == fp32.identity()
    # Built once: a second warm-up reuses the cached quantization.
    mtime = int8_file.stat().st_mtime_ns
    _embedder(onnx_cache, query_precision="int8")
    assert int8_file.stat().st_mtime_ns == mtime


def test_int8_documents_encode_chunks_and_sentences_at_int8(onnx_cache: Path) -> None:
    emb = _embedder(onnx_cache, query_precision="fp32", document_precision="int8")
    assert emb.document_backend == "onnx-int8" and emb.query_backend == "onnx-fp32"
    reference = _fp32_reference(emb, TEXTS)
    many = TEXTS * 5  # past onnx_max_batch: the document path
    for vectors in (emb.embed_documents(TEXTS), emb.embed_chunks(TEXTS), emb.embed(many)):
        cos = _cosines(vectors[: len(TEXTS)], reference)
        assert np.min(cos) > COSINE_FLOOR and np.min(cos) < 0.9999
    # The question the answer path compares with stored sentence vectors: int8 too.
    question = emb.embed_documents_batched([TEXTS[0]])
    assert np.allclose(question, emb.embed_documents([TEXTS[0]]), atol=1e-6)


def test_an_int8_vector_does_not_depend_on_the_texts_encoded_with_it(onnx_cache: Path) -> None:
    # int8 activations are quantized over the whole batch: batched, a text's vector moved
    # (cosine 0.986 on SciFact claims), so an answer would depend on who else asked meanwhile.
    emb = _embedder(onnx_cache, query_precision="int8", document_precision="int8")
    alone = np.concatenate([emb.embed([t]) for t in TEXTS])
    for batch in (emb.embed(TEXTS), emb.embed_documents(TEXTS[::-1])[::-1]):
        assert np.allclose(batch, alone, atol=1e-6)


def test_the_index_records_what_encoded_its_documents(
    tmp_path: Path, onnx_cache: Path, fp32: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(
        "# Backups\n\nBackups run nightly at 02:00 UTC and are kept for 35 days. "
        "Restores are tested every quarter by the on-call engineer.\n"
    )

    def settings(precision: str) -> Settings:
        return load_settings(
            overrides={
                "data_dir": str(tmp_path / "data"),
                "pii": {"enabled": False},
                "embedding": {"document_precision": precision},
            }
        )

    int8 = _embedder(onnx_cache, query_precision="fp32", document_precision="int8")
    # fp32 leaves the identity as it was before precisions existed (caches, old indexes).
    assert "document_precision" not in fp32.identity().as_dict()
    assert int8.identity().as_dict()["document_precision"] == "int8"
    assert int8.identity().fingerprint == fp32.identity().fingerprint

    built = Index(settings("fp32"), embedder=fp32)
    built.open()
    Ingestor(built).sync_folder(docs)
    fp32_sentences = built.sentence_vectors.identity()
    built.close()

    # Opened with documents at int8: refused, saying what differs and what to do.
    other = Index(settings("int8"), embedder=int8)
    with pytest.raises(EmbeddingMismatchError) as err:
        other.open()
    msg = str(err.value)
    assert "encoded at fp32" in msg and "embedding.document_precision is int8" in msg
    assert "rag reindex" in msg
    # Queries at int8 over fp32 documents: allowed (the query precision is not the index's).
    queries_only = Index(settings("fp32"), embedder=_embedder(onnx_cache, query_precision="int8"))
    assert queries_only.open() == "kb_v1"
    queries_only.close()

    # `rag reindex` re-encodes at int8: the new collection records it, chunks and sentences.
    result = reindex(other)
    assert result["promoted"]
    live = other.open()
    assert live == "kb_v2"
    meta = other.store.collection_metadata(live)
    assert meta["embedding"]["document_precision"] == "int8"
    assert meta["sentence_vectors"] != fp32_sentences
    assert meta["sentence_vectors"]["model"].endswith(":int8")
    chunk = next(iter(other.store.scroll(live, with_vectors=True)))
    stored = np.asarray(chunk.dense, dtype=np.float32)
    text = str(chunk.payload["text"])
    assert np.allclose(stored, int8.embed_documents([text])[0], atol=1e-5)
    shown = collect_status(other)["embedding"]  # `rag status`
    assert shown["document_precision"] == "int8" and shown["query_precision"] == "fp32"
    assert shown["query_precision_resolved"] == "fp32"
    other.close()
    # And back: an int8 index opened at fp32 is refused the other way round.
    back = Index(settings("fp32"), embedder=fp32)
    with pytest.raises(EmbeddingMismatchError, match="encoded at int8"):
        back.open()
    back.close()


def test_chunks_are_stored_at_the_document_precision_whatever_the_query_one(
    tmp_path: Path, onnx_cache: Path, fp32: Embedder
) -> None:
    # A few chunks went through the short-text (query) encoder: with queries at int8 they
    # would be stored at int8 in an index whose identity says fp32.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.txt").write_text(
        "The API answers 429 with a Retry-After header when the rate limit is exceeded."
    )
    emb = _embedder(onnx_cache, query_precision="int8")
    assert emb.query_backend == "onnx-int8" and emb.document_backend.startswith("torch-")
    index = Index(
        load_settings(overrides={"data_dir": str(tmp_path / "data"), "pii": {"enabled": False}}),
        embedder=emb,
    )
    index.open()
    assert Ingestor(index).sync_folder(docs).embedded == 1
    assert index.collection is not None
    (chunk,) = list(index.store.scroll(index.collection, with_vectors=True))
    stored = np.asarray(chunk.dense, dtype=np.float32)
    reference = _fp32_reference(emb, [str(chunk.payload["text"])])[0]
    assert float(stored @ reference) > 0.9999
    index.close()


def test_int8_unavailable_or_too_far_from_fp32_is_a_clear_error(
    tmp_path: Path, onnx_cache: Path, fp32: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No quantization tools (onnxruntime without `onnx`): faked by hiding the module, since
    # both are installed here. The fp32 export is copied, so only the quantization is tried.
    fresh = tmp_path / "onnx" / fp32.identity().fingerprint
    fresh.mkdir(parents=True)
    shutil.copy(onnx_cache / fp32.identity().fingerprint / "model.onnx", fresh / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    for key in ("document_precision", "query_precision"):
        with pytest.raises(EmbeddingError) as err:
            _embedder(tmp_path / "onnx", **{key: "int8"})
        msg = str(err.value)
        assert f"embedding.{key} is 'int8'" in msg and "install the `onnx` package" in msg
        assert "Set it to 'fp32'" in msg
        assert not (fresh / "model-int8.onnx").exists()
    monkeypatch.delitem(sys.modules, "onnxruntime.quantization")
    # A quantization further from fp32 than embedding.min_int8_cosine is refused too.
    with pytest.raises(EmbeddingError, match="stray from fp32"):
        _embedder(onnx_cache, query_precision="int8", min_int8_cosine=0.99999)
    # int8 runs on ONNX Runtime: asking for it with the torch backend is a settings error.
    with pytest.raises(ConfigError, match="short_text_backend"):
        load_settings(
            overrides={"embedding": {"short_text_backend": "torch", "query_precision": "int8"}}
        )


def test_auto_the_default_embeds_queries_at_int8_here(
    onnx_cache: Path, fp32: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 29: int8 queries are the default where quantization works and passes the check.
    assert load_settings().embedding.query_precision == "auto"
    with caplog.at_level("WARNING"):
        emb = _embedder(onnx_cache)
    assert emb.settings.query_precision == "auto"
    assert emb.query_precision == "int8" and emb.query_backend == "onnx-int8"
    assert "passed the warm-up check" in emb.query_precision_reason
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    got = emb.embed_query(TEXTS[0])
    assert np.allclose(got, _embedder(onnx_cache, query_precision="int8").embed([TEXTS[0]])[0])
    # Documents stay at their precision: the index's identity is fp32's.
    assert emb.identity() == fp32.identity() and emb.document_backend.startswith("torch-")
    # What `rag status` shows: the setting, what it resolved to, and why.
    shown = emb.query_precision_shown()
    assert shown == {
        "setting": "auto",
        "resolved": "int8",
        "reason": emb.query_precision_reason,
    }


def _fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "embedding.query_precision" in r.getMessage()
    ]


def test_auto_falls_back_to_fp32_saying_why_once_where_explicit_int8_refuses(
    tmp_path: Path,
    onnx_cache: Path,
    fp32: Embedder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1. The check fails (a floor no quantization meets): fp32, with the measured cosine.
    with caplog.at_level("WARNING"):
        emb = _embedder(onnx_cache, min_int8_cosine=0.99999)
        emb.embed_query(TEXTS[0])
        emb.embed(TEXTS)
    assert emb.query_precision == "fp32" and emb.query_backend == "onnx-fp32"
    assert np.allclose(emb.embed([TEXTS[0]]), fp32.embed([TEXTS[0]]), atol=1e-6)
    (warning,) = _fallback_warnings(caplog)  # said once, at warm-up
    assert f"min cosine {emb.int8_cosine:.4f}" in warning and "min_int8_cosine" in warning
    assert "embedding.query_precision is 'auto'" in warning and "'fp32' to pin" in warning
    assert emb.query_precision_shown()["resolved"] == "fp32"
    assert "stray from fp32" in str(emb.query_precision_shown()["reason"])
    # Asked for by name, the same int8 is refused: an error, never fp32.
    with pytest.raises(EmbeddingError, match="stray from fp32"):
        _embedder(onnx_cache, query_precision="int8", min_int8_cosine=0.99999)

    # 2. No quantization tools (onnxruntime without `onnx`; hidden, since both are installed).
    caplog.clear()
    fresh = tmp_path / "onnx" / fp32.identity().fingerprint
    fresh.mkdir(parents=True)
    shutil.copy(onnx_cache / fp32.identity().fingerprint / "model.onnx", fresh / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with caplog.at_level("WARNING"):
        emb = _embedder(tmp_path / "onnx")
    assert emb.query_precision == "fp32" and emb.query_backend == "onnx-fp32"
    (warning,) = _fallback_warnings(caplog)
    assert "install the `onnx` package" in warning
    with pytest.raises(EmbeddingError, match="install the `onnx` package"):
        _embedder(tmp_path / "onnx", query_precision="int8")

    # 3. Short texts pinned to PyTorch: int8 (ONNX Runtime) is out, said so; not a settings error.
    caplog.clear()
    with caplog.at_level("WARNING"):
        emb = _embedder(onnx_cache, short_text_backend="torch")
    assert emb.query_precision == "fp32" and emb.query_backend.startswith("torch-")
    (warning,) = _fallback_warnings(caplog)
    assert "short_text_backend is 'torch'" in warning


def test_a_shared_onnx_cache_dir_spares_a_new_data_dir_the_export(
    tmp_path: Path, onnx_cache: Path, fp32: Embedder
) -> None:
    # With int8 queries the default, every new data dir would export and quantize (~4 s):
    # replicas and test runs can share the graphs (a folder per weights fingerprint).
    graphs = onnx_cache / fp32.identity().fingerprint
    _embedder(onnx_cache)  # the int8 graph is there
    built = {p.name: p.stat().st_mtime_ns for p in graphs.glob("*.onnx")}
    assert set(built) == {"model.onnx", "model-int8.onnx"}
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path / "data"),
            "embedding": {"onnx_cache_dir": str(onnx_cache), "threads": 1},
        }
    )
    emb = embedder_for(settings)
    emb.warm_up()
    assert emb.cache_dir == onnx_cache and emb.query_precision == "int8"
    assert {p.name: p.stat().st_mtime_ns for p in graphs.glob("*.onnx")} == built
    assert not (tmp_path / "data" / "models").exists()
    # Unset: under the data dir, as before.
    default = embedder_for(load_settings(overrides={"data_dir": str(tmp_path / "other")}))
    assert default.cache_dir == tmp_path / "other" / "models" / "onnx"
