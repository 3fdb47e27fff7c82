"""API keys and roles, as ASGI middleware (BentoML 1.4 has no built-in auth).

Keys come from `ABETA_API_KEYS="trader:KEY,compliance:KEY,feeder:KEY,admin:KEY"` (role:key, or
`name@role:key` to give the key an id) and/or a file `ABETA_API_KEYS_FILE` with one such entry
per line (`#` comments).  Only sha256 hashes stay in memory; a presented key is hashed and
compared with `hmac.compare_digest` against every stored hash (no early exit on a match, so the
time does not depend on which key matched).  The key id (never the key) is what the audit log
records as the caller: `name` if given, else `role-<first 8 hex of the hash>`.

Roles: trader (forecast, explain, hedge, model), compliance (audit read endpoints, /compliance),
feeder (POST /bars only: a market-data feed holds a key that can append bars and read nothing),
admin (everything).  Probes (/healthz, /readyz, /livez, /metrics) are open.  Missing or unknown
key -> 401; known key, wrong role -> 403.  The authenticated caller is put in the ASGI scope
under `abeta.caller`.

Failed authentication (an unknown bearer key here, an unknown key at the compliance login) is
logged, one line per failure with the client address and path (never the key), and counted per
client address by `FailedAuthLimiter`: after `ABETA_AUTH_MAX_FAILURES` failures within
`ABETA_AUTH_WINDOW_S` seconds the client gets 429 with Retry-After on every route that needs a key,
right key or not, until the oldest failure leaves the window.  The address is the TCP peer: behind
a proxy every client shares the proxy's address (and its budget).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROLES = ("trader", "compliance", "feeder", "admin")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
# Mounted browser apps that authorise by their own session cookie (serving/compliance/session.py):
# no Bearer header is required under these prefixes; the app itself checks the role.
OPEN_PREFIXES: tuple[str, ...] = ("/compliance",)
# path prefix -> roles allowed (admin always allowed)
ROUTE_ROLES: dict[str, frozenset[str]] = {
    "/forecast": frozenset({"trader"}),
    "/bars": frozenset({"feeder"}),  # market-data feeds append bars; they may call nothing else
    "/explain": frozenset({"trader"}),
    "/hedge": frozenset({"trader"}),
    "/stress": frozenset({"trader"}),
    "/backtest": frozenset({"trader"}),
    "/monitor": frozenset({"compliance"}),
    "/model": frozenset({"trader", "compliance"}),
    "/audit": frozenset({"compliance"}),
    "/compliance": frozenset({"compliance"}),
    "/openapi.json": frozenset({"trader", "compliance"}),  # the API's OpenAPI document
}
log = logging.getLogger("abeta.auth")
_ENTRY = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.\-]+)@)?(?P<role>[a-z]+):(?P<key>\S+)$")


class AuthConfigError(ValueError):
    """A malformed key entry; says which entry (position, never the key) is wrong."""


@dataclass(frozen=True)
class Caller:
    key_id: str
    role: str


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyStore:
    """sha256(key) -> Caller; see the module docstring for the formats."""

    def __init__(self, entries: list[tuple[str | None, str, str]]):
        self._items: list[tuple[bytes, Caller]] = []
        for name, role, key in entries:
            if role not in ROLES:
                raise AuthConfigError(
                    f"unknown role {role!r} in API key entry {name or ''}; expected one of {ROLES}"
                )
            if len(key) < 16:
                raise AuthConfigError(
                    f"API key for role {role!r} ({name or 'unnamed'}) is shorter than 16 characters"
                )
            digest = _hash(key)
            key_id = name or f"{role}-{digest.hex()[:8]}"
            self._items.append((digest, Caller(key_id, role)))

    @classmethod
    def parse(cls, text: str, source: str = "ABETA_API_KEYS") -> KeyStore:
        entries = []
        parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(",")]
        for n, part in enumerate(parts, start=1):
            if not part or part.startswith("#"):
                continue
            m = _ENTRY.match(part)
            if not m:
                raise AuthConfigError(f"{source}: entry {n} is not 'role:key' or 'name@role:key'")
            entries.append((m.group("name"), m.group("role"), m.group("key")))
        return cls(entries)

    @classmethod
    def from_env(cls) -> KeyStore:
        """ABETA_API_KEYS and ABETA_API_KEYS_FILE (adaptive_beta.models.settings)."""
        from adaptive_beta.models.settings import get_settings

        settings = get_settings()
        path = settings.api_keys_file
        store = cls.parse(settings.api_keys.get_secret_value())
        if path:
            store._items.extend(cls.parse(Path(path).read_text(), source=path)._items)
        return store

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, key: str) -> Caller | None:
        digest = _hash(key)
        found = None
        for stored, caller in self._items:
            if hmac.compare_digest(stored, digest) and found is None:
                found = caller
        return found


@dataclass(frozen=True)
class AuthLimitConfig:
    """How many failed authentications a client may make per window before 429."""

    max_failures: int = 10  # ABETA_AUTH_MAX_FAILURES
    window_s: float = 60.0  # ABETA_AUTH_WINDOW_S
    max_clients: int = 100_000  # clients tracked at once (the table is bounded; oldest dropped)

    @classmethod
    def from_env(cls) -> AuthLimitConfig:
        """From the validated settings (ABETA_AUTH_MAX_FAILURES, ABETA_AUTH_WINDOW_S)."""
        from adaptive_beta.models.settings import get_settings

        s = get_settings()
        return cls(max_failures=s.auth_max_failures, window_s=s.auth_window_s)


class FailedAuthLimiter:
    """Failed authentications per client address in a sliding window; see the module docstring."""

    def __init__(self, cfg: AuthLimitConfig | None = None, clock=time.monotonic):
        self.cfg = cfg or AuthLimitConfig.from_env()
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.cfg.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may authenticate again, or None if it is not blocked."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self.cfg.max_failures:
                return None
            return max(1, math.ceil(times[-self.cfg.max_failures] + self.cfg.window_s - now))

    def failure(self, client: str, path: str, reason: str) -> None:
        """Count a failed authentication of `client` on `path` and log it (never the key)."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if not times:
                if len(self._failures) >= self.cfg.max_clients:
                    self._evict(now)
                self._failures[client] = times
            times.append(now)
            n = len(times)
        log.warning(
            "authentication failed: %s from %s on %s (%d of %d allowed in %gs)",
            reason,
            client,
            path,
            n,
            self.cfg.max_failures,
            self.cfg.window_s,
        )

    def _evict(self, now: float) -> None:
        """Drop clients with no failure in the window, then the oldest, to stay under max_clients."""
        for client in list(self._failures):
            self._recent(client, now)
        while len(self._failures) >= self.cfg.max_clients:
            del self._failures[next(iter(self._failures))]


def client_address(scope) -> str:
    """The TCP peer's address of an ASGI request ("unknown" without one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many_failures(retry_after: int) -> str:
    return f"too many failed authentication attempts from this client: retry after {retry_after} s"


def allowed(role: str, path: str) -> bool:
    if role == "admin":
        return True
    for prefix, roles in ROUTE_ROLES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return role in roles
    return False  # unknown routes (docs, openapi) are for admins only


async def _reply(send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    """ASGI middleware: 401 without a valid Bearer key, 403 for a role not allowed on the path."""

    def __init__(
        self,
        app,
        store: KeyStore | None = None,
        open_paths: frozenset[str] = OPEN_PATHS,
        limiter: FailedAuthLimiter | None = None,
    ):
        self.app = app
        self.store = store if store is not None else KeyStore.from_env()
        self.open_paths = open_paths
        self.limiter = limiter if limiter is not None else FailedAuthLimiter()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths:
            return await self.app(scope, receive, send)
        if any(path == p or path.startswith(p + "/") for p in OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        client = client_address(scope)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            return await _reply(send, 429, too_many_failures(wait), [(b"retry-after", str(wait).encode())])
        header = ""
        for k, v in scope.get("headers", []):
            if k == b"authorization":
                header = v.decode("latin-1")
                break
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return await _reply(
                send,
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                [(b"www-authenticate", b"Bearer")],
            )
        caller = self.store.lookup(key.strip())
        if caller is None:
            self.limiter.failure(client, path, "unknown API key")
            return await _reply(send, 401, "invalid API key", [(b"www-authenticate", b"Bearer")])
        if not allowed(caller.role, scope["path"]):
            return await _reply(send, 403, f"role {caller.role!r} may not call {scope['path']}")
        scope["abeta.caller"] = caller
        return await self.app(scope, receive, send)
