"""Issue 11 item 11: logging out ends the session on the server, /logout is same-origin only, and
every compliance response carries Content-Security-Policy and X-Content-Type-Options.

In-process (starlette TestClient on the compliance app), on the seeded audit log of
test_compliance_pages."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.serving.test_compliance_pages import login, make_client, seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return seed(tmp_path_factory.mktemp("session-end"))


def _logged_in(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    assert login(c).status_code == 303
    return c


def test_the_old_cookie_no_longer_works_after_logout(seeded):
    c = _logged_in(seeded)
    cookie = c.cookies.get("abeta_session")
    assert c.get("/", follow_redirects=False).status_code == 200
    assert c.post("/logout", follow_redirects=False).status_code == 303
    replay = TestClient(c.app, base_url="http://testserver")  # same app and secret, kept the old cookie
    replay.cookies.set("abeta_session", cookie)
    r = replay.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # logging in again gives a new session that works
    assert login(c).status_code == 303 and c.get("/", follow_redirects=False).status_code == 200


def test_logging_out_one_session_leaves_the_others(seeded):
    a = _logged_in(seeded)
    b = TestClient(a.app, base_url="http://testserver")
    assert login(b).status_code == 303
    a.post("/logout", follow_redirects=False)
    assert b.get("/", follow_redirects=False).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}],
)
def test_cross_site_logout_is_refused_and_the_session_survives(seeded, headers):
    c = _logged_in(seeded)
    r = c.post("/logout", headers=headers, follow_redirects=False)
    assert r.status_code == 403
    assert c.get("/", follow_redirects=False).status_code == 200


def test_same_origin_logout_is_accepted(seeded):
    c = _logged_in(seeded)
    r = c.post("/logout", headers={"origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/", follow_redirects=False).status_code == 303


def test_every_compliance_response_has_csp_and_nosniff(seeded):
    c = _logged_in(seeded)
    rid = seeded["calls"][0]["request_id"]
    anon = make_client(seeded["db"], seeded["bundle"])
    responses = {
        "records": c.get("/"),
        "record": c.get(f"/records/{rid}"),
        "timeline": c.get("/timeline"),
        "login": anon.get("/login"),
        "redirect": anon.get("/", follow_redirects=False),
        "static": anon.get("/static/pages.js"),
        "export": c.get("/export?fmt=csv"),
        "404": c.get("/records/nope"),
    }
    for name, r in responses.items():
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, name
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp, name
        script = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "unsafe" not in script, name
        assert r.headers.get("x-content-type-options") == "nosniff", name
