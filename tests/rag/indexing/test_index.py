"""Embedding version lock and blue/green reindex, with a real second model (a tiny BERT built here:
no other sentence-transformers model can be installed offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.core.config import Settings, load_settings
from rag.indexing.embedding import Embedder, default_model_path
from rag.indexing.index import EmbeddingMismatchError, Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex
from rag.query.retrieve import Retriever


def build_tiny_model(out: Path, hidden: int = 32, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    base = out / "hf"
    tok = BertTokenizerFast.from_pretrained(str(default_model_path()))
    tok.save_pretrained(str(base))
    BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(str(base))
    st = SentenceTransformer(modules=[models.Transformer(str(base)), models.Pooling(hidden)])
    st.save(str(out / "st"))
    shutil.rmtree(base)
    return out / "st"


def settings_for(tmp: Path, model_path: Path | None = None, **extra: object) -> Settings:
    overrides: dict[str, object] = {"data_dir": str(tmp / "data"), **extra}
    if model_path is not None:
        overrides["embedding"] = {"model_path": str(model_path)}
    return load_settings(overrides=overrides)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.md").write_text(
        "# Backups\n\nBackups run nightly at 02:00 UTC and are kept for 35 days.\n"
    )
    (d / "b.txt").write_text(
        "The API answers 429 with a Retry-After header when the rate limit is exceeded."
    )
    return d


def test_opening_with_another_model_fails_naming_both(
    tmp_path: Path, docs: Path, tiny_model: Path
) -> None:
    idx = Index(settings_for(tmp_path))
    idx.open()
    Ingestor(idx).sync_folder(docs)
    idx.close()
    other = Index(settings_for(tmp_path, tiny_model))
    with pytest.raises(EmbeddingMismatchError) as err:
        other.open()
    msg = str(err.value)
    assert (
        "all-MiniLM-L6-v2 (dimension 384" in msg and "dimension 32" in msg and "rag reindex" in msg
    )
    other.close()


def test_the_lock_compares_the_model_not_only_its_dimension(tmp_path: Path, docs: Path) -> None:
    """A model of the same dimension (384) is not the same model. Refused, naming what
    differs: another model; the same name with other weights (a fine-tuned copy); the same
    model normalised the other way."""
    idx = Index(settings_for(tmp_path))
    idx.open()
    Ingestor(idx).sync_folder(docs)
    idx.close()
    built_with = Embedder(idx.settings.embedding).identity()
    same_size = build_tiny_model(tmp_path / "other-384", hidden=384, seed=1)

    def refused(settings: Settings) -> str:
        other = Index(settings)
        assert other.embedder.identity().dimension == built_with.dimension == 384
        try:
            with pytest.raises(EmbeddingMismatchError) as err:
                other.open()
        finally:
            other.close()
        msg = str(err.value)
        assert built_with.describe() in msg and other.embedder.identity().describe() in msg
        assert "rag reindex" in msg
        return msg

    assert "(differs in: model, fingerprint)" in refused(settings_for(tmp_path, same_size))
    # The same name as the indexed model (the name is read from the model card's title).
    (same_size / "README.md").write_text(f"# {built_with.model}\n\nFine-tuned.\n")
    assert "(differs in: fingerprint)" in refused(settings_for(tmp_path, same_size))
    unnormalised = settings_for(tmp_path, embedding={"normalize": False})
    assert "(differs in: normalize)" in refused(unnormalised)
    # Nothing was touched by the refusals: the index opens with its own model.
    again = Index(settings_for(tmp_path))
    assert again.open() == "kb_v1"
    again.close()


def test_reindex_with_new_model_swaps_alias_and_drops_old(
    tmp_path: Path, docs: Path, tiny_model: Path
) -> None:
    idx = Index(settings_for(tmp_path))
    first = idx.open()
    Ingestor(idx).sync_folder(docs)
    idx.close()

    switched = Index(settings_for(tmp_path, tiny_model))
    seen_during: list[str | None] = []

    def progress(phase: str, done: int, total: int) -> None:
        # Mid-rebuild the alias still points at the old collection: queries keep working.
        seen_during.append(switched.store.get_alias("kb"))

    result = reindex(switched, progress=progress)
    assert seen_during and all(a == first for a in seen_during)
    assert result["previous"] == first and result["collection"] == "kb_v2"
    assert switched.store.list_collections() == ["kb_v2"]  # old one deleted after the swap
    assert switched.open() == "kb_v2"
    assert switched.store.collection_metadata("kb_v2")["embedding"]["dimension"] == 32
    assert switched.store.count("kb_v2") == 2
    hits = Retriever(switched).run("rate limit Retry-After", top_k=2, mode="sparse")
    assert hits[0].payload["source"] == "b.txt"
    # Dense retrieval runs on the new model: every stored vector is the new model's embedding
    # of its chunk (dimension 32), and a query embedded with it finds its document.
    new_model = Embedder(switched.settings.embedding)
    stored = list(switched.store.scroll("kb_v2", with_vectors=True))
    assert len(stored) == 2
    for point in stored:
        assert point.dense is not None and len(point.dense) == 32
        expected = new_model.embed_chunks([point.payload["text"]])[0]  # what ingestion stores
        assert np.allclose(point.dense, expected, atol=1e-4), point.payload["source"]
    for point in stored:
        dense_hits = Retriever(switched).run(point.payload["text"], top_k=2, mode="dense")
        assert dense_hits[0].payload["source"] == point.payload["source"]
    switched.close()


def test_reindex_can_keep_old_collection(tmp_path: Path, docs: Path) -> None:
    s = settings_for(tmp_path, store={"keep_old_collections": True})
    idx = Index(s)
    idx.open()
    Ingestor(idx).sync_folder(docs)
    result = reindex(idx)
    assert result["kept_previous"] is True
    assert idx.store.list_collections() == ["kb_v1", "kb_v2"]
    assert idx.store.get_alias("kb") == "kb_v2"
    # The rebuilt collection holds the same chunk ids as the original.
    assert {p.id for p in idx.store.scroll("kb_v1")} == {p.id for p in idx.store.scroll("kb_v2")}
    idx.close()


def test_reindex_refuses_when_a_watched_folder_is_missing(tmp_path: Path, docs: Path) -> None:
    idx = Index(settings_for(tmp_path))
    idx.open()
    Ingestor(idx).sync_folder(docs)
    shutil.rmtree(docs)
    from rag.store import StoreError

    with pytest.raises(StoreError, match="missing"):
        reindex(idx)
    # Refused before anything was built: no new collection was even created.
    assert idx.store.get_alias("kb") == "kb_v1" and idx.store.list_collections() == ["kb_v1"]
    idx.close()


class FailingEmbedder(Embedder):
    """Embeds normally until armed with the collection being built, then raises (once) when
    asked to embed the second document's text (``fail_on``: its chunk, or its sentences),
    recording what that collection held at that moment."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.embedding)
        self.index: Index | None = None
        self.building: str | None = None
        self.fail_on = "Retry-After"  # b.txt, ingested after a.md
        self.at_failure: tuple[int, list[str]] | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        self._fail(texts)
        return super().embed(texts)

    def embed_chunks(self, texts: list[str]) -> np.ndarray:
        # Ingestion's entry: with queries at another precision (int8 where "auto" resolves
        # to it) a few chunks go to the fp32 encoder without passing through embed().
        self._fail(texts)
        return super().embed_chunks(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self._fail(texts)
        return super().embed_documents(texts)

    def _fail(self, texts: list[str]) -> None:
        armed = self.index is not None and self.building is not None
        if armed and any(self.fail_on in t for t in texts):
            idx, coll = self.index, self.building
            assert idx is not None and coll is not None
            self.index = self.building = None
            self.at_failure = (
                idx.store.count(coll),
                [r.source for r in idx.manifest.records(coll)],
            )
            raise RuntimeError("embedding backend died mid-reindex")


def test_reindex_failing_mid_build_drops_the_half_built_collection(
    tmp_path: Path, docs: Path
) -> None:
    # One file per write group: the first file is written and recorded in the new collection
    # before the second one's embedding fails.
    settings = settings_for(tmp_path, ingestion={"group_chunks": 1})
    embedder = FailingEmbedder(settings)
    idx = Index(settings, embedder=embedder)
    idx.open()
    Ingestor(idx).sync_folder(docs)
    live_ids = {p.id for p in idx.store.scroll("kb_v1")}

    embedder.index, embedder.building = idx, "kb_v2"
    with pytest.raises(RuntimeError, match="mid-reindex"):
        reindex(idx)
    # The failure really happened mid-build: kb_v2 already held a written, recorded file.
    assert embedder.at_failure == (1, ["a.md"])
    # ... and the cleanup removed all of it: no collection, no manifest rows.
    assert idx.store.list_collections() == ["kb_v1"]
    assert idx.manifest.records("kb_v2") == []
    # The live collection is untouched and still answers, dense and sparse.
    assert idx.store.get_alias("kb") == "kb_v1" and idx.collection == "kb_v1"
    assert {p.id for p in idx.store.scroll("kb_v1")} == live_ids
    assert {r.source for r in idx.manifest.records("kb_v1")} == {"a.md", "b.txt"}
    for mode in ("dense", "sparse"):
        hits = Retriever(idx).run("rate limit Retry-After", top_k=2, mode=mode)
        assert hits[0].payload["source"] == "b.txt", mode
    # A later reindex builds the next collection cleanly.
    assert reindex(idx)["collection"] == "kb_v2"
    assert idx.store.list_collections() == ["kb_v2"]
    idx.close()
