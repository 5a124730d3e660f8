"""A model that obeys (issue 24), through ``/v1/chat/completions`` with the official ``openai``
client: the chain ``[openai, extractive]``, ``openai`` the scripted stand-in that follows
every instruction it finds (``evals.chat_server.obey``), fenced passages so that it is
handed the planted orders. Nothing it obeyed reaches the client, streamed or not; the
extractive spare answers. (tests/rag/guards/test_injection_obey.py has the layers one by one.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from api.app import create_app
from api.auth import KeyStore
from evals.chat_server import ChatServer, obey
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from tests.api.conftest import EXAMPLES, LiveServer, settings_for
from tests.rag.guards.test_injection_obey import OBEYED, ORDERS, QUESTION


@dataclass
class Served:
    client: openai.OpenAI
    model_name: str
    model: ChatServer  # the stand-in the chain's openai backend asks


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("obey-api")
    docs = root / "docs"
    shutil.copytree(EXAMPLES, docs)
    (docs / "backup-update.md").write_text(ORDERS, encoding="utf-8")
    model = ChatServer(respond=obey())
    settings = settings_for(
        root / "data",
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": model.base_url, "max_retries": 0},
        },
        injection={"flagged": "fence"},
    )
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    Ingestor(index).sync_folder(docs)
    store = KeyStore(index.data_dir)
    key = store.create("default", "obey test")[1]
    server = LiveServer(create_app(settings, index=index, keys=store)).start()
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        yield Served(client, settings.api.model_name, model)
    finally:
        server.stop()
        model.close()
        index.close()


def _obeyed(text: str) -> list[str]:
    return [o for o in OBEYED if o.lower() in text.lower()]


def test_the_client_never_gets_what_the_model_obeyed(served: Served) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": QUESTION}
    ]
    out = served.client.chat.completions.create(model=served.model_name, messages=messages)
    assert "ZQXOBEYED" in (served.model.last_text or ""), "the stand-in was handed the orders"
    text = out.choices[0].message.content or ""
    assert not _obeyed(out.model_dump_json()), text
    assert "35 days" in text, text
    assert out.model_extra and out.model_extra["rag"]["generator"] == "extractive", out

    served.model.last_text = None
    stream = served.client.chat.completions.create(
        model=served.model_name, messages=messages, stream=True
    )
    chunks = [chunk.model_dump_json() for chunk in stream]
    assert "ZQXOBEYED" in (served.model.last_text or ""), "the stand-in was handed the orders"
    assert not _obeyed("".join(chunks)), "no delta, no extension field carries it"
    assert "35 days" in "".join(chunks)
