"""Fuzzing our own OpenAPI schema with schemathesis: no 5xx, and every response conforms.

Requests are generated from the served ``/openapi.json`` — schema-valid data (positive) and
schema-violating data (negative) for every operation — and sent to the live server with a
key of a tenant of its own ("fuzz"), so the uploads and deletes it makes touch nobody else's
documents. Every response goes through schemathesis' checks (no server error; status code,
content type, headers and body as documented; invalid data rejected). Examples are bounded
per operation and mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.api.conftest import Deployment

MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_key(deployment: Deployment) -> str:
    return deployment.store.create("fuzz", "schemathesis")[1]


def excluded(case: Any) -> list[Any]:
    # An upload's accepted type comes from the uploaded file's *name* (415 otherwise), which
    # OpenAPI cannot constrain: "schema-valid but refused" is right for that one operation.
    # Likewise "the last user message has text" for chat completions (422 otherwise).
    if case.operation.label in ("POST /v1/documents", "POST /v1/chat/completions"):
        return [schemathesis.checks.positive_data_acceptance]
    return []


def test_api_conforms_to_its_schema(deployment: Deployment, fuzz_key: str) -> None:
    schema = schemathesis.openapi.from_url(deployment.server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    failures: list[str] = []
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            # derandomize: the same examples on every run, so CI sees what passed here (a new
            # failure comes from a code or schema change, not from luck); seeds vary per operation.
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Any) -> None:
                case.call_and_validate(headers=headers, excluded_checks=excluded(case))

            try:
                fuzz()
            except Unsatisfiable:
                # An operation without parameters or body (GET /healthz) has no invalid input.
                if mode is not GenerationMode.NEGATIVE:
                    failures.append(
                        f"{operation.label} [{mode.value}]: no valid input could be generated"
                    )
            except Exception as exc:  # noqa: BLE001 - collected: one report for all operations
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
            tested.append(f"{operation.label} [{mode.value}]")
    assert len(tested) >= 20, tested  # every operation, both modes
    assert not failures, "\n\n".join(failures)
