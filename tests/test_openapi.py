"""`GET /openapi.json`, and schemathesis run with it against a real gateway: every
documented operation, with a bounded number of generated requests each."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
import schemathesis
from schemathesis import Case, checks

from savegate.api import openapi, routes
from tests.conftest import Service, start_gateway, stop

EXAMPLES = 20  # generated requests per operation, on top of its explicit examples
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> Iterator[Service]:
    """Every model name answered by the fake's `text-basic` recording, for chat, legacy
    completions and embeddings alike."""
    config = {
        "local": {"enabled": False},
        "server": {"max_body_bytes": 256 * 1024},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": [{"name": "*", "upstream": "text-basic"}],
            }
        },
    }
    service = start_gateway(
        tmp_path_factory.mktemp("openapi"), config, env={"FAKE_UPSTREAM_KEY": "sk-fake"}
    )
    yield service
    stop(service.process)


def test_document_is_public_and_lists_every_route(api_gateway: Service) -> None:
    response = httpx.get(api_gateway.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == openapi.DOCUMENT
    document = response.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    documented -= {("PARAMETERS", path) for path in document["paths"]}
    exact = {
        route
        for route in routes.EXACT
        if not route[1].startswith("/v1/v1/") and route[1] not in ("/", "/playground", "/dashboard")
    }
    assert exact <= documented, exact - documented
    prefixed = {(method, prefix) for method, prefix, _ in routes.PREFIXED if prefix != "/static/"}
    for method, prefix in prefixed:
        assert any(m == method and p.startswith(prefix) for m, p in documented), (method, prefix)


# The document the gateway serves is the packaged one (checked above), so the tests are
# built from it at collection, before the gateway starts; each request goes to the gateway.
# (`schemathesis.pytest.from_fixture` would load it from the gateway, but its lazy tests
# read `Function._nodeid`, which pytest 9.2 no longer has.)
schema = schemathesis.openapi.from_dict(
    orjson.loads(openapi.DOCUMENT),
    config=schemathesis.Config.from_dict(
        {
            "seed": 13,
            "request-timeout": 10,  # seconds a request may take: bounds a stuck case
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
def test_gateway_conforms_to_its_document(case: Case, api_gateway: Service) -> None:
    key = api_gateway.keys["admin" if case.path.startswith("/admin") else "default"]
    case.call_and_validate(
        base_url=api_gateway.url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
    )


def test_a_key_keeps_its_name_and_budget_mode(api_gateway: Service) -> None:
    """Both are stored NOT NULL: setting them to null is a 400, not a failed UPDATE."""
    headers = {"Authorization": f"Bearer {api_gateway.keys['admin']}"}
    created = httpx.post(api_gateway.url + "/admin/keys", json={"name": "n"}, headers=headers)
    url = f"{api_gateway.url}/admin/keys/{created.json()['id']}"
    for field in ("name", "budget_mode"):
        response = httpx.patch(url, json={field: None}, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == field
    assert httpx.get(url, headers=headers).json()["name"] == "n"
