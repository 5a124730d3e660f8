"""Query-path fixtures: one small knowledge base indexed once per session, the local LLM loaded once.

- ``kb``: a ``KnowledgeBase`` (folder of documents + an open ``Index`` over it, real Qdrant
  Edge store and MiniLM embedder). Tests must not write to it; build their own for that.
- ``kb_settings(**overrides)``: settings pointing at that index, with section overrides.
- ``local_generator``: the real SmolLM2-135M (llama.cpp), shared.
- ``chat_server``: a real HTTP server speaking the OpenAI protocol (stands in for vLLM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import DEFAULT_CONFIG, Settings, load_settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor

DOCS: dict[str, str] = {
    "eiffel.md": (
        "# Eiffel Tower\n\n"
        "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineering "
        "company of Gustave Eiffel and built between 1887 and 1889 for the World's Fair. "
        "The tower is 330 metres tall and was the tallest man-made structure in the world until 1930.\n\n"
        "## Visiting\n\n"
        "The tower has three levels for visitors. Tickets can be bought online or at the entrance, "
        "and the top level is reached by lift only.\n"
    ),
    "backups.md": (
        "# Backup policy\n\n"
        "Production databases are backed up every night at 02:00 UTC. Backups are kept for 35 days "
        "and copied to a second region. A restore drill is run every quarter by the on-call engineer.\n"
    ),
    "onboarding/vacation.txt": (
        "Vacation policy\n\n"
        "New employees receive 25 days of paid vacation per year. Unused days can be carried over "
        "until the end of March of the following year. Requests go through the HR portal at least "
        "two weeks in advance.\n"
    ),
    "onboarding/laptops.md": (
        "# Laptops\n\n"
        "Every engineer gets a laptop with 32 GB of memory on the first day. Laptops are replaced "
        "every three years. Lost laptops must be reported to security within 24 hours.\n"
    ),
}


@dataclass
class KnowledgeBase:
    folder: Path
    data_dir: Path
    index: Index
    settings: Settings


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="session")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[KnowledgeBase]:
    root = tmp_path_factory.mktemp("kb")
    folder = root / "docs"
    for rel, text in DOCS.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    settings = load_settings(DEFAULT_CONFIG, {"data_dir": str(root / "data")})
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    report = Ingestor(index).sync_folder(folder)
    assert report.failed == 0, report.failures
    yield KnowledgeBase(folder, root / "data", index, settings)
    index.close()


@pytest.fixture()
def kb_settings(kb: KnowledgeBase) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # The answer cache is off here: the shared index would serve one test's answer to the
        # next test asking the same question (tests/rag/query/test_answer_cache.py turns it on).
        base = {"data_dir": str(kb.data_dir), "cache": {"enabled": False}}
        return load_settings(DEFAULT_CONFIG, _merge(base, overrides))

    return make


@pytest.fixture(scope="session")
def local_generator() -> Any:
    from rag.core.config import GenerationSettings, LocalGeneratorSettings
    from rag.generate.chain import build_generator

    # The same instance the pipeline's chain gets for these settings (one model per process).
    gen = build_generator(
        "local", GenerationSettings(local=LocalGeneratorSettings(threads=1)), scorer=None
    )
    gen.warm_up()
    return gen


@pytest.fixture()
def chat_server() -> Iterator[Any]:
    from tests.rag.chat_server import ChatServer

    server = ChatServer()
    yield server
    server.close()
