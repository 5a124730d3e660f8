"""Golden sets: a person's own questions about their knowledge base, with the files that answer them.

One question per JSON line (``.jsonl``), or a YAML list (``.yaml``/``.yml``, optionally under a
``questions:`` key)::

    {"id": "backup-retention", "question": "How long are nightly backups kept?",
     "sources": ["policies/backup-policy.md"], "answers": ["35 days"]}

- ``question`` (required); ``id`` (optional, defaults to the line number);
- ``sources``: paths relative to the watched folder, the same ``source`` that ``rag export``
  shows. Any of them counts as a hit. An empty list marks a question the knowledge base does
  not answer: the answer eval then expects an abstention;
- ``answers`` (optional): strings a correct answer contains (case, punctuation and articles
  are ignored).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evals.datasets import AnswerKey, Dataset, DatasetError
from rag.core.resources import package_path

__all__ = ["GoldenItem", "default_golden_path", "golden_dataset", "load_golden"]


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    sources: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


def _as_list(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DatasetError(f"{where}: '{key}' must be a string or a list of strings")


def _item(raw: Any, where: str, default_id: str) -> GoldenItem:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected an object with 'question' and 'sources'")
    unknown = set(raw) - {"id", "_id", "question", "sources", "answers"}
    if unknown:
        raise DatasetError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: id, question, sources, answers"
        )
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: 'question' is missing or empty")
    sources = [s.strip().removeprefix("./") for s in _as_list(raw.get("sources"), where, "sources")]
    return GoldenItem(
        id=str(raw.get("id") or raw.get("_id") or default_id),
        question=question.strip(),
        sources=sources,
        answers=_as_list(raw.get("answers"), where, "answers"),
    )


def load_golden(path: Path) -> list[GoldenItem]:
    if not path.is_file():
        raise DatasetError(
            f"golden set {path} does not exist: set evals.suite to a .jsonl or .yaml file"
        )
    text = path.read_text(encoding="utf-8")
    items: list[GoldenItem] = []
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: not valid YAML: {exc}") from exc
        if isinstance(data, dict):
            data = data.get("questions")
        if not isinstance(data, list):
            raise DatasetError(
                f"{path}: expected a list of questions (or a 'questions:' key holding one)"
            )
        items = [_item(raw, f"{path} item {i}", str(i)) for i, raw in enumerate(data, start=1)]
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            items.append(_item(raw, f"{path}:{lineno}", str(lineno)))
    ids = [i.id for i in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise DatasetError(f"{path}: duplicate id(s) {', '.join(dupes)}")
    if not items:
        raise DatasetError(f"{path}: no questions in the golden set")
    return items


def golden_dataset(items: list[GoldenItem], path: Path) -> Dataset:
    """A golden set as a dataset over the live index (corpus ids are source paths)."""
    digest = hashlib.sha256(
        json.dumps([[i.id, i.question, i.sources, i.answers] for i in items]).encode("utf-8")
    ).hexdigest()
    with_answers = {i.id: AnswerKey(answerable=bool(i.sources), answers=i.answers) for i in items}
    return Dataset(
        name=path.stem,
        split="golden",
        queries={i.id: i.question for i in items},
        qrels={i.id: {s: 1 for s in i.sources} for i in items if i.sources},
        root=path.parent,
        answers=with_answers,
        content_hash=digest[:16],
    )


def default_golden_path(configured: str | None) -> Path | None:
    """``evals.suite`` when set; else ``evals/golden.jsonl`` in the working directory or this package."""
    if configured:
        return Path(configured).expanduser()
    for candidate in (
        Path.cwd() / "evals" / "golden.jsonl",
        package_path("evals", "golden.jsonl"),  # package data: the example docs' golden set
    ):
        if candidate.is_file():
            return candidate
    return None
