"""Fuzzing every route: no 5xx, no request left unanswered, every response as documented.

The fuzzers live in ``tests/api/fuzzing.py`` (``scripts/fuzz_routes.py`` runs them longer and
reports per route); here each runs a few examples per route against the live server, with
keys of tenants of their own ("fuzz", "fuzz-hostile", "fuzz-docs"), so the uploads and deletes
they make touch nobody else's documents. Examples are derandomized: CI sees the ones that passed
here (a new failure comes from a code or schema change, not from luck).

- schemathesis over the served ``/openapi.json``, positive and negative data per operation,
  through its checks (no server error; status, content type, headers and body as documented;
  invalid data rejected);
- hostile requests for every route, those left out of the schema included;
- the daemon's control API (``http.server``, no schema): raw requests with its token;
- the documents state machine: uploads under hostile names, then reads, queries and deletes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

import app.control
from app.control import ControlServer
from rag.indexing.status import collect_status, export_chunks
from tests.api import fuzzing
from tests.api.conftest import Deployment

MAX_EXAMPLES = 10
# Hostile examples are large on purpose: hypothesis warns about printing them.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


def _schema_paths(deployment: Deployment) -> list[str]:
    return list(httpx.get(deployment.server.url + "/openapi.json", timeout=30).json()["paths"])


def test_every_route_is_fuzzed(deployment: Deployment) -> None:
    # A route added outside the schema (include_in_schema=False, a mount) must be listed in
    # fuzzing.APP_ROUTES_OUTSIDE_SCHEMA; a control route in fuzzing.CONTROL_ROUTES.
    paths = dict.fromkeys(_schema_paths(deployment))
    assert fuzzing.unfuzzed_app_routes(deployment.server.app, paths) == []
    assert len(paths) >= 12, paths
    documented = fuzzing.control_routes_documented(app.control.__doc__ or "")
    assert documented == set(fuzzing.CONTROL_ROUTES)


def test_api_conforms_to_its_schema(deployment: Deployment) -> None:
    key = deployment.store.create("fuzz", "schemathesis")[1]
    tally = fuzzing.Tally()
    tested = fuzzing.fuzz_schema(deployment.server.url, key, tally, MAX_EXAMPLES, derandomize=True)
    assert len(tested) >= 26, tested  # every operation, both modes
    assert tally.requests() >= 200, tally.report()
    assert not tally.failures and not tally.server_errors(), tally.report()


def test_every_route_survives_hostile_requests(deployment: Deployment) -> None:
    key = deployment.store.create("fuzz-hostile", "hostile")[1]
    tally = fuzzing.Tally()
    fuzzing.fuzz_hostile(
        deployment.server.url, key, _schema_paths(deployment), tally, 40, derandomize=True
    )
    assert tally.requests() >= 100, tally.report()
    assert not tally.failures and not tally.server_errors(), tally.report()


@pytest.fixture()
def control(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlServer]:
    # The session's index and the live app's query pipeline (real); reindex and sync are
    # stand-ins: a rebuild of the shared index would change it under the other tests, and the
    # fuzz is about how the server takes requests (those two read no body).
    index = deployment.index
    server = ControlServer(
        tmp_path_factory.mktemp("control"),
        status=lambda: collect_status(index),
        export=lambda: export_chunks(index),
        reindex=lambda force=False: {"collection": index.collection, "force": force},
        sync=lambda: {"requested": True},
        pipeline=deployment.server.app.state.rag.service.pipeline,
    )
    server.start()
    yield server
    server.stop()


def test_the_control_api_survives_hostile_requests(
    control: ControlServer, caplog: pytest.LogCaptureFixture
) -> None:
    tally = fuzzing.Tally()
    fuzzing.fuzz_control(control.port, control.token, tally, 60, derandomize=True)
    assert tally.requests() >= 60, tally.report()
    assert not tally.failures and not tally.server_errors(), tally.report()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged == [], logged


def test_documents_under_hostile_names_keep_their_invariants(deployment: Deployment) -> None:
    key = deployment.store.create("fuzz-docs", "state machine")[1]
    tally = fuzzing.Tally()
    fuzzing.fuzz_documents(
        deployment.server.url, key, "fuzz-docs", tally, 6, steps=8, derandomize=True
    )
    assert tally.requests("STATEFUL POST /v1/documents") >= 6, tally.report()
    assert not tally.failures and not tally.server_errors(), tally.report()
