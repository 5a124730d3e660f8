"""Document groups from ``access.rules`` and ``.access.yaml`` sidecars, written on every chunk
and changed in place by the next sync when the rules or a sidecar change (real store, real
embedder: a relabel must embed nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.core.access import ALL, Labeller, Reader, can_read, label_payload, read_filter
from rag.core.config import AccessSettings
from rag.core.errors import QueryError
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.query.retrieve import Retriever

FILES = {
    "hr/salaries.md": "# Salaries\n\nThe staff engineer salary band is 187,000 zorkmids.\n",
    "hr/handbook.md": "# Handbook\n\nEvery employee gets twenty-five vacation days.\n",
    "eng/runbook.md": "# Runbook\n\nDeploys happen on Tuesdays after the advisory meeting.\n",
    "board/.access.yaml": "groups: [board]\n",
    "board/minutes.md": "# Minutes\n\nThe board approved the Heron acquisition in May.\n",
}
RULES = [{"path": "hr/", "groups": ["hr"]}, {"path": "hr/handbook.md", "groups": ["all"]}]


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def labeller(tmp_path: Path, rules: list[dict[str, Any]], default: str = "tenant") -> Labeller:
    return Labeller(AccessSettings.model_validate({"rules": rules, "default": default}))


def test_the_last_matching_rule_wins_then_sidecars_deepest_first(tmp_path: Path) -> None:
    write(tmp_path, FILES)
    label = labeller(tmp_path, RULES)
    assert label.groups_for(tmp_path, "hr/salaries.md") == ("hr",)
    assert label.groups_for(tmp_path, "hr/handbook.md") == (ALL,)
    assert label.groups_for(tmp_path, "eng/runbook.md") == (ALL,)  # access.default: tenant
    assert label.groups_for(tmp_path, "board/minutes.md") == ("board",)
    write(tmp_path, {"board/closed/.access.yaml": "groups: [chair]\nfiles: {x.md: [audit]}\n"})
    assert label.groups_for(tmp_path, "board/closed/y.md") == ("chair",)
    assert label.groups_for(tmp_path, "board/closed/x.md") == ("audit",)
    assert labeller(tmp_path, [], default="none").groups_for(tmp_path, "eng/runbook.md") == ()


def test_a_broken_sidecar_opens_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"board/.access.yaml": "groups: [board\n", "board/m.md": "x"})
    assert labeller(tmp_path, []).groups_for(tmp_path, "board/m.md") == ()
    write(tmp_path, {"board/.access.yaml": "groups: ['no spaces allowed']\n"})
    assert labeller(tmp_path, []).groups_for(tmp_path, "board/m.md") == ()


def test_the_read_filter_and_can_read_agree() -> None:
    eng = Reader("t", frozenset({"eng"}))
    assert read_filter(eng) == {"readers": ["t/all", "t/eng"]}  # one condition in the store
    assert read_filter(Reader("t")) == {"tenant": "t"}  # every group

    def chunk(tenant: str, groups: list[str]) -> dict[str, Any]:
        return {"tenant": tenant, **label_payload(tenant, groups)}

    assert can_read(eng, chunk("t", ["eng", "hr"]))
    assert can_read(eng, chunk("t", ["all"]))
    assert not can_read(eng, chunk("t", ["hr"]))
    assert not can_read(eng, chunk("t", []))
    assert not can_read(eng, chunk("u", ["all"]))
    assert not can_read(eng, {"tenant": "t"})  # unlabelled: nobody restricted reads it
    assert can_read(Reader("t"), chunk("t", []))  # every group


def sources(index: Index, question: str, groups: set[str]) -> set[str]:
    hits = Retriever(index).run(question, top_k=10, reader=Reader("default", frozenset(groups)))
    return {h.payload["source"] for h in hits}


def test_changed_rules_and_sidecars_relabel_on_the_next_sync_without_embedding(
    tmp_path: Path, tmp_settings: Any, embedder: Any
) -> None:
    docs = tmp_path / "docs"
    write(docs, FILES)
    settings = tmp_settings(access={"rules": RULES})
    index = Index(settings, embedder=embedder)
    try:
        first = Ingestor(index).sync_folder(docs)
        assert first.embedded > 0
        question = "What is the staff engineer salary band?"
        assert "hr/salaries.md" in sources(index, question, {"hr"})
        assert "hr/salaries.md" not in sources(index, question, {"eng"})
        payloads = {
            p.payload["source"]: p.payload["groups"] for p in index.store.scroll(index.open())
        }
        assert payloads["hr/salaries.md"] == ["hr"] and payloads["board/minutes.md"] == ["board"]
        # A sidecar change: that folder relabelled, in place.
        (docs / "board" / ".access.yaml").write_text("groups: [board, exec]\n", encoding="utf-8")
        report = Ingestor(index).sync_paths(docs, ["board"])
        assert report.relabelled == 1 and report.embedded == 0 and report.ingested == 0
        assert "board/minutes.md" in sources(index, "Heron acquisition", {"exec"})
    finally:
        index.close()
    # The hr rule removed from the config: the next sync gives the salaries to everyone.
    widened = tmp_settings(access={"rules": RULES[1:]})  # the same data dir
    index = Index(widened, embedder=embedder)
    try:
        report = Ingestor(index).sync_folder(docs)
        assert report.relabelled == 1 and report.embedded == 0 and report.ingested == 0
        assert "hr/salaries.md" in sources(index, question, {"eng"})
        again = Ingestor(index).sync_folder(docs)
        assert again.relabelled == 0  # nothing left to change
    finally:
        index.close()


@pytest.mark.parametrize("default", ["tenant", "none"])
def test_access_default_labels_what_nothing_else_does(
    tmp_path: Path, tmp_settings: Any, embedder: Any, default: str
) -> None:
    docs = tmp_path / "docs"
    write(docs, {"eng/runbook.md": FILES["eng/runbook.md"]})
    index = Index(tmp_settings(access={"default": default}), embedder=embedder)
    try:
        Ingestor(index).sync_folder(docs)
        found = sources(index, "When do deploys happen?", set())
        assert found == ({"eng/runbook.md"} if default == "tenant" else set())
        everyone = Retriever(index).run("When do deploys happen?", top_k=5)  # every group
        assert {h.payload["source"] for h in everyone} == {"eng/runbook.md"}
        # Nobody reads more by naming groups in filters (the control API passes them on).
        for key, value in (("groups", ["hr"]), ("readers", "default/hr"), ("tenant", "x")):
            with pytest.raises(QueryError, match=f"cannot choose the {key}"):
                Retriever(index).run("deploys", filters={key: value}, reader=Reader("default"))
    finally:
        index.close()
