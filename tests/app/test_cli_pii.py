"""`rag pii scan FILE` and `rag pii scan --text`: JSONL of detected entities, with offsets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RagCli


def test_scan_file_and_text(tmp_path: Path, rag_cli: RagCli) -> None:
    texts = {
        "a": "Mail John Miller at john.miller@gmail.com or call +44 20 7946 0958.",
        7: "Backups are kept for 35 days.",
    }
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(json.dumps({"id": k, "text": v}) for k, v in texts.items()) + "\n\n",
        encoding="utf-8",
    )
    env = {"TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""}
    out = rag_cli.run("pii", "scan", str(src), data_dir=tmp_path / "data", env=env).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["a", 7]
    first = rows[0]["entities"]
    found = {texts["a"][e["start"] : e["end"]]: e["type"] for e in first}
    assert found == {
        "John Miller": "PERSON",
        "john.miller@gmail.com": "EMAIL_ADDRESS",
        "+44 20 7946 0958": "PHONE_NUMBER",
    }
    assert all(set(e) == {"type", "start", "end", "score"} and 0 < e["score"] <= 1 for e in first)
    assert rows[1]["entities"] == []

    one = rag_cli.run(
        "pii", "scan", "--text", "card 4111 1111 1111 1111", data_dir=tmp_path / "data", env=env
    ).stdout
    assert json.loads(one) == {
        "id": None,
        "entities": [{"type": "CREDIT_CARD", "start": 5, "end": 24, "score": 1.0}],
    }

    # The configured policy applies: an allow list entry is not reported.
    allowed = rag_cli.run(
        "pii", "scan", "--text", "Mail John Miller", data_dir=tmp_path / "data",
        env={**env, "RAG_PII__ALLOW_LIST": '["John Miller"]'},
    ).stdout  # fmt: skip
    assert json.loads(allowed)["entities"] == []


def test_scan_errors_say_what_to_do(tmp_path: Path, rag_cli: RagCli) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    proc = rag_cli.run("pii", "scan", str(bad), data_dir=tmp_path / "data", check=False)
    assert proc.returncode == 1 and 'bad.jsonl:1: expected a JSON object with "id"' in proc.stderr
    proc = rag_cli.run("pii", "scan", data_dir=tmp_path / "data", check=False)
    assert proc.returncode == 2 and "--text" in proc.stderr
