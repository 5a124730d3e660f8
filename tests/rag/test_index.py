"""Embedding version lock and blue/green reindex, with a real second model (a tiny BERT built here:
no other sentence-transformers model can be installed offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import Settings, load_settings
from rag.embedding import default_model_path
from rag.index import EmbeddingMismatchError, Index
from rag.ingest import Ingestor
from rag.reindex import reindex
from rag.retrieve import Retriever


def build_tiny_model(out: Path, hidden: int = 32) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
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


def test_failed_reindex_leaves_live_index_untouched(tmp_path: Path, docs: Path) -> None:
    idx = Index(settings_for(tmp_path))
    idx.open()
    Ingestor(idx).sync_folder(docs)
    shutil.rmtree(docs)
    from rag.store import StoreError

    with pytest.raises(StoreError, match="missing"):
        reindex(idx)
    assert idx.store.get_alias("kb") == "kb_v1" and idx.store.list_collections() == ["kb_v1"]
    idx.close()
