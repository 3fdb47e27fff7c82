"""Issue 11 item 6: bad input is a 4xx with a JSON body, never a 5xx; the OpenAPI document is served."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import KEYS, auth, request_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


def post(server, path, payload, role="trader", **kw):
    return httpx.post(server.url + path, json=payload, headers=auth(role), timeout=60, **kw)


def hedge_body(body, **extra):
    return {
        **copy.deepcopy(body),
        "positions": {"SOLUSDT": 1e6, "DOGEUSDT": 5e5},
        "target": {"BTCUSDT": 0.0},
        "instruments": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}],
        **extra,
    }


def audit_record(server, rid):
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(server.audit_db) as r:
        return r.get(rid)


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


# ----------------------------------------------------------------------------- schemathesis
SCHEMATHESIS_EXAMPLES = int(os.environ.get("ABETA_SCHEMATHESIS_EXAMPLES", "200"))


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch_on_any_operation(server, tmp_path):
    """Every operation of /openapi.json, examples + coverage + fuzzing + stateful phases, as admin.

    Bounded: ABETA_SCHEMATHESIS_EXAMPLES examples per operation (200 by default, as issue 11 asks:
    about 980 cases in 30 s on a loaded 2-core machine; the stateful phase is requested but
    schemathesis skips it, as the document declares no links).  Runs in tmp_path so its reports
    never land in the work tree.
    """
    st = Path(sys.executable).parent / "st"
    cmd = [
        str(st),
        "run",
        server.url + "/openapi.json",
        "-H",
        f"Authorization: Bearer {KEYS['admin']}",
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
    ]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
