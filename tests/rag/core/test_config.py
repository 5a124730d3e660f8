from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rag.core.config import ConfigError, load_settings


def test_default_profile_loads_and_round_trips(tmp_path: Path) -> None:
    s = load_settings()
    assert s.store.backend == "edge"
    assert s.embedding.model_path is None
    out = tmp_path / "c.yaml"
    out.write_text(s.to_yaml())
    again = load_settings(out)
    assert again.model_dump() == s.model_dump()


def test_env_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBEDDING__BATCH_SIZE", "7")
    monkeypatch.setenv("RAG_STORE__BACKEND", "qdrant")
    s = load_settings()
    assert s.embedding.batch_size == 7
    assert s.store.backend == "qdrant"
    assert s.chunking.chunk_tokens == 200  # untouched keys keep the YAML value


def test_config_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text(yaml.safe_dump({"chunking": {"chunk_tokens": 99}}))
    monkeypatch.setenv("RAG_CONFIG", str(cfg))
    assert load_settings().chunking.chunk_tokens == 99


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"chunking": {"chunk_tokenz": 3}}, "unknown key 'chunking.chunk_tokenz'"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"embedding": {"batch_size": 0}}, "embedding.batch_size"),
        # Plug-in names are checked against their tables by rag.plugins.check_settings
        # (tests/rag/test_plugins.py); here only their shape.
        ({"store": {"backend": 3}}, "store.backend"),
        ({"generation": {"chain": "extractive"}}, "generation.chain"),
        ({"ingestion": {"extensions": ["md"]}}, "ingestion.extensions"),
        ({"ingestion": {"extensions": []}}, "ingestion.extensions"),
        ({"ingestion": {"max_file_mb": "lots"}}, "ingestion.max_file_mb"),
    ],
)
def test_bad_keys_and_values_name_the_key(tmp_path: Path, doc: dict, needle: str) -> None:  # type: ignore[type-arg]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(scalar)


def test_overrides_beat_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": "/tmp/from-yaml",
                "chunking": {"chunk_tokens": 99, "overlap_tokens": 9},
                "embedding": {"batch_size": 5},
            }
        )
    )
    s = load_settings(
        cfg,
        overrides={
            "data_dir": "/tmp/elsewhere",
            "chunking": {"overlap_tokens": 7},  # nested: merged key by key into the YAML's
            "embedding": None,  # a flag not given (None) leaves the YAML value alone
        },
    )
    assert s.data_dir == Path("/tmp/elsewhere")
    assert s.chunking.overlap_tokens == 7
    assert s.chunking.chunk_tokens == 99  # the YAML's sibling key survives the nested override
    assert s.embedding.batch_size == 5
    # Without overrides the same file gives its own values.
    plain = load_settings(cfg)
    assert (plain.data_dir, plain.chunking.overlap_tokens) == (Path("/tmp/from-yaml"), 9)


def test_ingestion_extensions_default_to_every_parser_and_are_normalised(tmp_path: Path) -> None:
    assert load_settings().ingestion.extensions is None  # every registered parser's suffixes
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"ingestion": {"extensions": [".MD", ".txt", ".md"]}}))
    assert load_settings(cfg).ingestion.extensions == [".md", ".txt"]


def test_plugin_names_load_as_plain_strings(tmp_path: Path) -> None:
    """Names registered at run time must load: the tables, not the schema, know them."""
    cfg = tmp_path / "c.yaml"
    doc = {
        "store": {"backend": "my-store"},
        "rerank": {"backend": "my-reranker"},
        "generation": {"chain": ["my-generator", "extractive"]},
        "costs": {"prices": {"my-generator": {"input_per_million": 1.0}}},
        "ingestion": {"extensions": [".rst"]},
    }
    cfg.write_text(yaml.safe_dump(doc))
    s = load_settings(cfg)
    assert (s.store.backend, s.rerank.backend) == ("my-store", "my-reranker")
    assert s.generation.chain == ["my-generator", "extractive"]
    assert list(s.costs.prices) == ["my-generator"] and s.ingestion.extensions == [".rst"]
