"""schemathesis over the app's own OpenAPI document, with the API key, on SQLite and PostgreSQL:
no 5xx, and every response matches what the document says (code, content type, body schema).

Bounded for `make test` (FUZZ_EXAMPLES per operation, default 8); the long run is
`FUZZ_EXAMPLES=400 .venv/bin/pytest -q tests/test_fuzz_api.py` (docs/security.md).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from channels.app import create_app
from status import demo
from status.settings import Settings
from tests.conftest import API_KEY, count_fuzzed, on_both_databases

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DOCUMENT = create_app(Settings(_env_file=None, database_url="sqlite://")).openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


@pytest.fixture
def client(settings, database):
    with database.session() as session:
        demo.seed(session)
    app = create_app(settings.model_copy(update={"metrics_token": "m-token"}), database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_interactive_docs_are_off_unless_docs_is_on(settings, database):
    with TestClient(create_app(settings, database)) as off:
        assert off.get("/docs").status_code == 404
        assert off.get("/openapi.json").status_code == 404
    with TestClient(create_app(settings.model_copy(update={"docs": True}), database)) as on:
        assert on.get("/docs").status_code == 200
        assert on.get("/openapi.json").json()["paths"].keys() == DOCUMENT["paths"].keys()


def test_metrics_want_the_token_when_one_is_set(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert answer.status_code == 200
    assert "ps_outbox_oldest_age_seconds" in answer.text


def test_the_document_names_every_error_code_with_a_body():
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"401", "422"} <= codes or path in {"/healthz", "/metrics", "/events/schema"}, (
                method,
                path,
            )


# What JSON Schema cannot say about an event (a phone number that exists, a real calendar date, a
# time zone this machine knows) makes some schema-valid events a 422, and the document cannot name
# every invalid one either; every response is still checked against the document.
EXCLUDED = {"POST /events": [checks.positive_data_acceptance, checks.negative_data_rejection]}


def _headers(label: str) -> dict[str, str]:
    return {"Authorization": "Bearer m-token"} if label == "GET /metrics" else AUTH


@pytest.mark.fuzz
@on_both_databases
@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_SEED") is None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_no_5xx_and_every_answer_conforms_to_the_document(client, database, label, data):
    operation = OPERATIONS[label]
    case = data.draw(operation.as_strategy())
    kwargs = case.as_transport_kwargs(headers=_headers(label))
    kwargs.pop("url", None)
    response = client.request(url=case.formatted_path, **kwargs)
    count_fuzzed(database, response.status_code)
    assert response.status_code < 500, (label, response.status_code, response.text[:300])
    case.validate_response(response, excluded_checks=EXCLUDED.get(label, []))
