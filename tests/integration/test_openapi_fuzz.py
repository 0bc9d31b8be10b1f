"""schemathesis against a real ``roost serve``: every route of the OpenAPI document, fuzzed.

With the admin token: no answer is a 5xx, and every status code and content type an answer
has is documented for its route. Without a token: no write (POST, PUT, PATCH, DELETE) is
accepted, and a route documented as needing a token answers 401. Examples per route are
bounded (``EXAMPLES``) so the whole run stays well under a minute.

Left out: the live event stream (it never ends), and power and boot-device actions, which
would call out to whatever BMC address the fuzzer made up (no traffic leaves this machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from roost.api import create_app
from roost.service import Runtime
from roost.settings import Settings
from tests.integration.security.conftest import Roost, start_roost

pytestmark = pytest.mark.slow

EXAMPLES = 12
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# enrollment presents its own credential (a one-time token in the path or body, a node's
# signature), not an API token: refused without it, but with its own 4xx
OWN_CREDENTIAL = ("/api/v1/enroll", "/api/v1/nodes/self")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roost]:
    roost = start_roost(tmp_path_factory.mktemp("fuzz"))
    try:
        yield roost
    finally:
        roost.stop()


def _document() -> dict[str, Any]:
    """The document as the app builds it (no I/O): schemathesis parametrizes at import, before
    the served process exists; the first test checks the served one is the same."""
    return create_app(Runtime.create(Settings())).openapi()


schema = (
    schemathesis.openapi.from_dict(_document())
    .exclude(path="/api/v1/events", method="GET")
    .exclude(path_regex=r"/(power|boot-device)$")
)


def test_served_document_is_the_one_fuzzed(served: Roost) -> None:
    assert requests.get(f"{served.url}/api/v1/openapi.json", timeout=30).json() == _document()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a failure in CI is reproducible
)
def test_api_conforms_to_its_openapi(case: Any, served: Roost) -> None:
    with requests.Session() as session:
        case.call_and_validate(
            base_url=served.url,
            session=session,
            headers={"Authorization": f"Bearer {served.admin}"},
            checks=[not_a_server_error, status_code_conformance, content_type_conformance],
            timeout=30,
        )
        # the schemathesis probes that change the method (405) are no write of this route
        if case.method.upper() not in WRITES or case.method != case.operation.method:
            return
        anonymous = case.call(base_url=served.url, session=session, timeout=30)
    status, what = anonymous.status_code, f"{case.method} {case.formatted_path} without a token"
    assert not 200 <= status < 400, f"{what}: {status}"
    needs_token = "security" in case.operation.definition.raw
    if needs_token and not case.path.startswith(OWN_CREDENTIAL):
        # FastAPI reads a body before any dependency: one that is not JSON is refused first
        unreadable = status in (400, 422) and anonymous.json()["detail"].startswith("body")
        assert status == 401 or unreadable, f"{what}: {status} {anonymous.text}"


def test_document_says_which_routes_take_no_token() -> None:
    """Exactly these answer without an API token (README's "Using it" lists them)."""
    anonymous = {
        f"{method.upper()} {path}"
        for path, ops in _document()["paths"].items()
        for method, op in ops.items()
        if "security" not in op
    }
    assert anonymous == {
        "GET /healthz",
        "GET /readyz",
        "GET /api/v1/openapi.json",  # not in the document itself; listed for the README
        "GET /api/v1/pki/ca.pem",
        "GET /api/v1/pki/crl.pem",
        "POST /api/v1/enroll",
        "POST /api/v1/enroll/{token}",
        "POST /api/v1/enroll/renew",
        "GET /api/v1/nodes/self",
        "PUT /api/v1/nodes/self/facts",
    } - {"GET /api/v1/openapi.json"}
