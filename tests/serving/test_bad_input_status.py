"""Issue 11 item 6: bad input is a 4xx with a JSON body, never a 5xx; the OpenAPI document is served."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import KEYS, Server, auth, request_body
from tests.serving.conftest import json_post as post

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


# ----------------------------------------------------------------------------- 6. no 5xx on bad input
def test_backtest_with_a_zero_rebalance_is_422_naming_rebalance(server, body):
    r = post(server, "/backtest", {**copy.deepcopy(body), "portfolio": {"SOLUSDT": 1.0}, "rebalance": "0d"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "rebalance"


@pytest.mark.parametrize("path", ["/forecast", "/explain", "/hedge", "/stress", "/backtest"])
def test_a_multipart_body_on_every_post_is_a_json_415(server, path):
    files = {"file": ("a.json", b'{"assets": []}', "application/json")}
    r = httpx.post(server.url + path, files=files, headers=auth("admin"), timeout=30)
    assert r.status_code == 415, (r.status_code, r.text)
    assert "application/json" in r.json()["error"]


def test_a_huge_compliance_page_number_is_not_a_500(server, body):
    assert post(server, "/forecast", body).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/compliance/login", data={"api_key": KEYS["compliance"]}).status_code in (200, 303)
        r = c.get("/compliance/?page=99999999999999999999999")
        assert r.status_code in (200, 400), r.status_code
        r = c.get("/compliance/?page=9223372036854775807")
        assert r.status_code in (200, 400), r.status_code


def test_a_400_body_matches_the_declared_error_schema(server):
    r = post(server, "/forecast", {"assets": "nope"})
    assert r.status_code == 400
    out = r.json()
    assert isinstance(out["error"], str) and out["error"]
    assert isinstance(out["field"], str)
    spec = httpx.get(server.url + "/openapi.json", headers=auth("admin"), timeout=30).json()
    declared = spec["paths"]["/forecast"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    schema = _resolve(spec, declared)
    assert set(schema["required"]) <= set(out)


def _resolve(spec, schema):
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("role", ["trader", "compliance", "admin"])
def test_openapi_document_is_served_to_every_authenticated_role(server, role):
    r = httpx.get(server.url + "/openapi.json", headers=auth(role), timeout=30)
    assert r.status_code == 200, r.text
    assert {"/forecast", "/hedge", "/backtest"} <= set(r.json()["paths"])
    assert httpx.get(server.url + "/openapi.json", timeout=30).status_code == 401


def served_operations() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the service's ASGI app serves (HEAD aside)."""
    from adaptive_beta.serving.openapi import service_operations
    from adaptive_beta.serving.service import AdaptiveBeta

    ops = service_operations(AdaptiveBeta.to_asgi())
    assert {("GET", "/model"), ("GET", "/monitor"), ("GET", "/compliance/records/{request_id}")} <= ops
    return ops


def test_every_route_of_the_service_is_an_operation_of_openapi_json(server):
    spec = httpx.get(server.url + "/openapi.json", headers=auth("admin"), timeout=30).json()
    declared = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served_operations() - declared == set()
    model = spec["paths"]["/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    card = httpx.get(server.url + "/model", headers=auth("admin"), timeout=30).json()
    assert set(_resolve(spec, model)["required"]) == set(card)


def test_every_audited_answer_links_to_its_record_page(server):
    """OpenAPI links: the request_id of a 200 from each POST names its compliance record page."""
    spec = httpx.get(server.url + "/openapi.json", headers=auth("admin"), timeout=30).json()
    target = spec["paths"]["/compliance/records/{request_id}"]["get"]["operationId"]
    for path in ("/forecast", "/explain", "/hedge", "/stress", "/backtest"):
        link = spec["paths"][path]["post"]["responses"]["200"]["links"]["AuditRecordPage"]
        assert link["operationId"] == target
        assert link["parameters"] == {"request_id": "$response.body#/request_id"}


# ----------------------------------------------------------------------------- schemathesis
SCHEMATHESIS_EXAMPLES = int(os.environ.get("ABETA_SCHEMATHESIS_EXAMPLES", "200"))


SCHEMATHESIS_TOML = """
headers = {{ Authorization = "Bearer {admin}" }}

[[operations]]
include-path-regex = "^/compliance/(?!logout)"
headers = {{ Authorization = "Bearer {admin}", Cookie = "{pages}" }}

[[operations]]
include-path = "/compliance/logout"
headers = {{ Authorization = "Bearer {admin}", Cookie = "{logout}" }}
"""


def _session_cookie(url: str) -> str:
    """A fresh admin session of the compliance pages, as a Cookie header value."""
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/compliance/login", data={"api_key": KEYS["admin"]}).status_code in (200, 303)
        return "; ".join(f"{k}={v}" for k, v in c.cookies.items())


def _operations_run(junit: Path) -> set[tuple[str, str]]:
    """(METHOD, path) of every test case in schemathesis's JUnit report ("GET /model")."""
    import xml.etree.ElementTree as ET

    names = {case.get("name", "") for case in ET.parse(junit).iter("testcase")}
    return {tuple(n.split(" ", 1)) for n in names if " " in n}


@pytest.fixture(scope="module")
def fuzz_server(tiny_bundle, tmp_path_factory):
    """A server for schemathesis alone: the wrong keys it sends to /compliance/login would otherwise
    trip the failed-login limit (tests/serving/test_auth_failures.py) and turn the rest of its run
    into 429s, so the limit is raised here."""
    d = tmp_path_factory.mktemp("fuzz-server")
    srv = Server(
        tiny_bundle["path"], d / "audit.db", d / "server.log", {"ABETA_AUTH_MAX_FAILURES": "1000000"}
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch_on_any_operation(fuzz_server, body, tmp_path):
    """Every operation of /openapi.json, examples + coverage + fuzzing + stateful phases, as admin.

    Bounded: ABETA_SCHEMATHESIS_EXAMPLES examples per operation (200 by default, as issue 11 asks;
    about 90 s here).  The compliance pages get an admin session cookie (a second one for
    /compliance/logout, so the logout it fuzzes does not end the pages' session).  The operations
    schemathesis ran (its JUnit report) must include every route the service serves.  Runs in
    tmp_path so its reports never land in the work tree.

    Stateful phase: it runs (the document links each POST's `request_id` to its record page,
    /compliance/records/{request_id}) but, measured with schemathesis 4.32.5 (stateful phase alone,
    50 examples): 82 cases, 0 of 5 links covered, because a link is followed only from a 200 and
    no generated body fits the model (history length, bar grid, plausibility: every POST got 400);
    the stateful phase never uses the document's examples.  The API is stateless apart from its
    append-only audit log, and that one relation (an answered request's record page renders) is
    tested directly with real answers in test_compliance_pages.py and
    test_compliance_trained_bundle.py, so the phase adds nothing here beyond the fuzzing phase.
    """
    server = fuzz_server
    assert post(server, "/forecast", body).status_code == 200  # a record for the compliance pages
    config = SCHEMATHESIS_TOML.format(
        admin=KEYS["admin"], pages=_session_cookie(server.url), logout=_session_cookie(server.url)
    )
    (tmp_path / "schemathesis.toml").write_text(config)
    st = Path(sys.executable).parent / "st"
    cmd = [
        str(st),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        server.url + "/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        str(SCHEMATHESIS_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "11",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert served_operations() - _operations_run(tmp_path / "junit.xml") == set()
