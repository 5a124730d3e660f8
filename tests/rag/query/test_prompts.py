"""Prompt registry: validation at load, pins, deterministic A/B, live rollback."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from rag.core.config import PromptSettings
from rag.query.prompts import (
    PromptError,
    PromptRegistry,
    ab_choice,
    parse_prompt_ref,
    resolve_prompt_dir,
)

GOOD = {
    "name": "answer",
    "metadata": {"author": "test", "date": "2026-01-01", "notes": "n"},
    "model": {"temperature": 0.1, "max_tokens": 50, "stop": ["\n\n"]},
    "variables": ["context", "question"],
    "template": {"system": "Use the passages. Costs $$5.", "user": "${context}\n\nQ: ${question}"},
}


def _write(folder: Path, version: str, **changes: object) -> Path:
    doc = {**GOOD, "version": version, **changes}
    path = folder / "answer" / f"{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _touch_later(path: Path) -> None:
    # Some file systems keep coarse mtimes: make the change visible whatever the clock.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _registry(folder: Path, **settings: object) -> PromptRegistry:
    reg = PromptRegistry(PromptSettings(directory=str(folder), reload_seconds=0, **settings))  # type: ignore[arg-type]
    reg.load()
    return reg


def test_shipped_prompts_load_and_render() -> None:
    reg = PromptRegistry(PromptSettings())
    reg.load()
    assert reg.directory == resolve_prompt_dir("configs/prompts")
    assert reg.versions() == ["v1", "v2", "v3"]
    for version in reg.versions():
        prompt = reg.get("answer", version)
        messages = prompt.render(
            context="[1] Paris\nThe tower.", question="Where?", abstain_text="No answer."
        )
        text = "\n".join(m["content"] for m in messages)
        assert (
            "[1] Paris" in text and "Where?" in text and "No answer." in text and "${" not in text
        )
        assert prompt.metadata["author"] and prompt.max_tokens


def test_render_fills_variables_and_keeps_literal_dollars(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    prompt = _registry(tmp_path).get("answer", "v1")
    messages = prompt.render(context="CTX", question="QQ")
    assert messages == [
        {"role": "system", "content": "Use the passages. Costs $5."},
        {"role": "user", "content": "CTX\n\nQ: QQ"},
    ]
    assert (prompt.temperature, prompt.max_tokens, prompt.stop) == (0.1, 50, ("\n\n",))
    assert prompt.ref == {"name": "answer", "version": "v1"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variables": ["context", "question", "user_name"]}, "unknown variable"),
        ({"template": {"user": "${context} ${question} ${passages}"}}, "undeclared"),
        ({"variables": ["context", "question", "passages"]}, "never used"),
        (
            {"variables": ["question"], "template": {"user": "Q: ${question}"}},
            "must use \\['context'\\]",
        ),
        ({"template": {"user": "${context} ${question} $"}}, "invalid placeholder"),
        ({"name": "other"}, "must match the folder"),
        ({"model": {"top_p": 0.3}}, "model may set"),
        ({"extra_key": 1}, "unknown key"),
    ],
)
def test_invalid_prompt_fails_at_load(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    _write(tmp_path, "v1", **changes)
    with pytest.raises(PromptError, match=message):
        _registry(tmp_path)


def test_newest_version_unless_pinned(tmp_path: Path) -> None:
    for v in ("v1", "v2", "v10"):
        _write(tmp_path, v)
    assert _registry(tmp_path).select().version == "v10", "natural order: v10 is newer than v2"
    assert _registry(tmp_path, pin="v2").select().version == "v2"
    with pytest.raises(PromptError, match="pinned version 'v7' has no file"):
        _registry(tmp_path, pin="v7")


def test_explicit_request_wins(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    _write(tmp_path, "v2")
    reg = _registry(tmp_path, pin="v2", ab={"v1": 1.0, "v2": 1.0})
    assert reg.select("answer@v1", user="u").version == "v1"
    with pytest.raises(PromptError, match="no version 'v9'"):
        reg.select("answer@v9")
    with pytest.raises(PromptError, match="NAME@VERSION"):
        parse_prompt_ref("answer@")
    assert parse_prompt_ref("answer@v3") == ("answer", "v3")


def test_ab_split_is_deterministic_and_weighted(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    _write(tmp_path, "v2")
    reg = _registry(tmp_path, pin="v1", ab={"v1": 0.8, "v2": 0.2})
    picks = {u: reg.select(user=f"user-{u}").version for u in range(2000)}
    assert all(reg.select(user=f"user-{u}").version == v for u, v in list(picks.items())[:200]), (
        "same user, same version"
    )
    share = Counter(picks.values())["v2"] / len(picks)
    assert 0.16 < share < 0.24, share
    # The session is the key when there is no user; no key at all gets the pin.
    assert reg.select(session="s-1").version == ab_choice({"v1": 0.8, "v2": 0.2}, "answer:s-1")
    assert reg.select().version == "v1"
    with pytest.raises(PromptError, match="has no file"):
        _registry(tmp_path, ab={"v1": 1.0, "v3": 1.0})


def test_rollback_by_deploy_file_without_restart(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    _write(tmp_path, "v2")
    reg = _registry(tmp_path)
    assert reg.select().version == "v2"
    deploy = tmp_path / "answer" / "deploy.yaml"
    deploy.write_text("pin: v1\n", encoding="utf-8")
    assert reg.select().version == "v1", "the pin change is picked up by the running registry"
    deploy.write_text("pin: v2\nab: {v1: 0.0, v2: 1.0}\n", encoding="utf-8")
    _touch_later(deploy)
    assert reg.select(user="anyone").version == "v2"


def test_broken_edit_keeps_serving_the_last_good_prompts(tmp_path: Path) -> None:
    path = _write(tmp_path, "v1")
    reg = _registry(tmp_path)
    path.write_text(
        yaml.safe_dump({**GOOD, "version": "v1", "variables": ["context"]}), encoding="utf-8"
    )
    _touch_later(path)
    prompt = reg.select()
    assert prompt.version == "v1" and "question" in prompt.variables
    assert reg.last_error is not None and "undeclared variable(s) ['question']" in reg.last_error
    # Fixing the file is picked up again.
    _write(tmp_path, "v1", template={"user": "NEW ${context} ${question}"})
    _touch_later(path)
    assert reg.select().user.startswith("NEW") and reg.last_error is None


def test_new_version_file_is_picked_up_without_restart(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    reg = PromptRegistry(PromptSettings(directory=str(tmp_path), reload_seconds=0.2))
    reg.load()
    _write(tmp_path, "v2")
    assert reg.select().version == "v1", "not re-checked before reload_seconds"
    time.sleep(0.25)
    assert reg.select().version == "v2"


def test_missing_prompt_folder_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"no prompt named 'answer'.*v1\.yaml"):
        _registry(tmp_path)
