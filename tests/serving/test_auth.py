"""API keys: parsing, hashed storage, role rules and the middleware's 401/403 (no server needed)."""

from __future__ import annotations

import asyncio

import pytest

from adaptive_beta.serving.auth import APIKeyMiddleware, AuthConfigError, KeyStore, allowed

KEY = "k" * 20


def test_parse_role_and_named_entries_and_ids():
    s = KeyStore.parse(f"trader:{KEY},desk-a@admin:{'a' * 16}\n# comment\ncompliance:{'c' * 16}")
    assert len(s) == 3
    assert s.lookup(KEY).role == "trader" and s.lookup(KEY).key_id.startswith("trader-")
    assert s.lookup("a" * 16).key_id == "desk-a"
    assert s.lookup("nope") is None
    assert all(KEY.encode() not in d for d, _ in s._items)  # only hashes kept


def test_bad_entries_name_the_entry_not_the_key():
    with pytest.raises(AuthConfigError, match="entry 2") as exc:
        KeyStore.parse(f"trader:{KEY},garbage")
    assert KEY not in str(exc.value)
    with pytest.raises(AuthConfigError, match="unknown role 'boss'"):
        KeyStore.parse(f"boss:{KEY}")
    with pytest.raises(AuthConfigError, match="shorter than 16"):
        KeyStore.parse("trader:short")


def test_keys_file_is_merged(tmp_path, monkeypatch):
    f = tmp_path / "keys"
    f.write_text(f"ops@admin:{'z' * 16}\n")
    monkeypatch.setenv("ABETA_API_KEYS", f"trader:{KEY}")
    monkeypatch.setenv("ABETA_API_KEYS_FILE", str(f))
    s = KeyStore.from_env()
    assert s.lookup("z" * 16).key_id == "ops" and s.lookup(KEY).role == "trader"


@pytest.mark.parametrize(
    ("role", "path", "ok"),
    [
        ("trader", "/forecast", True),
        ("trader", "/hedge", True),
        ("trader", "/audit/records", False),
        ("compliance", "/audit/records", True),
        ("compliance", "/forecast", False),
        ("compliance", "/model", True),
        ("admin", "/anything", True),
        ("trader", "/docs.json", False),
    ],
)
def test_role_rules(role, path, ok):
    assert allowed(role, path) is ok


def _call(mw, path, header=None):
    sent = []
    scope = {"type": "http", "path": path, "headers": [(b"authorization", header.encode())] if header else []}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(msg):
        sent.append(msg)

    asyncio.run(mw(scope, receive, send))
    return sent, scope


def test_middleware_statuses_and_caller_in_scope():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw = APIKeyMiddleware(app, store=KeyStore.parse(f"desk@trader:{KEY}"))
    assert _call(mw, "/forecast")[0][0]["status"] == 401
    assert _call(mw, "/forecast", "Bearer wrong-key-xxxxxxxx")[0][0]["status"] == 401
    assert _call(mw, "/forecast", f"Basic {KEY}")[0][0]["status"] == 401
    assert _call(mw, "/audit", f"Bearer {KEY}")[0][0]["status"] == 403
    sent, scope = _call(mw, "/forecast", f"Bearer {KEY}")
    assert sent[0]["status"] == 200 and scope["abeta.caller"].key_id == "desk"
    assert _call(mw, "/healthz")[0][0]["status"] == 200  # probes are open
