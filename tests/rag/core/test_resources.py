"""rag.core.resources in a source checkout (the wheel's side: tests/packaging/test_wheel.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.core.config import DEFAULT_CONFIG, load_settings
from rag.core.resources import default_config, find_config, package_path, project_root
from rag.query.prompts import resolve_prompt_dir

REPO = Path(__file__).resolve().parents[3]


def test_a_checkout_reads_its_own_top_level_configs() -> None:
    # No rag/_defaults in the source tree: that copy exists only inside a built wheel.
    assert not (REPO / "rag" / "_defaults").exists()
    assert project_root() == REPO
    assert default_config() == DEFAULT_CONFIG == REPO / "configs" / "default.yaml"
    assert resolve_prompt_dir("configs/prompts") == REPO / "configs" / "prompts"
    assert package_path("api", "static") == REPO / "api" / "static"
    assert package_path("evals", "golden.jsonl").is_file()


def test_a_relative_config_falls_back_to_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("configs/vllm.yaml") == REPO / "configs" / "vllm.yaml"
    assert load_settings("configs/vllm.yaml").generation is not None
    # One in the working directory wins; a missing one stays as given (and fails to load).
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "vllm.yaml").write_text("data_dir: ./mine\n", encoding="utf-8")
    assert find_config("configs/vllm.yaml") == Path("configs/vllm.yaml")
    assert load_settings("configs/vllm.yaml").data_dir == Path("./mine")
    assert find_config("configs/nope.yaml") == Path("configs/nope.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        load_settings("configs/nope.yaml")
