"""Browser sessions for the compliance pages: a signed, expiring cookie instead of a Bearer header.

Browsers cannot attach `Authorization: Bearer` to page loads, and an API key must never appear in
a URL, so the login form takes the key once (POST), checks it against the service's key store and
answers with a cookie holding only the key *id* and role, signed (HMAC, itsdangerous) and
time-stamped.  The signing secret is `ABETA_SESSION_SECRET` if set (required when several workers
or restarts must share sessions), else random per process (a restart logs everyone out).

On every request the id and role are looked up again in the key store, so removing a key from
`ABETA_API_KEYS` ends its sessions at the next restart even before they expire.

Each cookie also carries a random session id; logging out revokes that id on the server, so a
copy of the cookie kept by anyone stops working at once (the revocations are kept until the
cookie would have expired anyway).  They live in the worker's memory: with several workers
(`ABETA_WORKERS` > 1, sessions shared through `ABETA_SESSION_SECRET`) a logout is only known to
the worker that answered it, and a restart forgets it, as it forgets nothing else a random
per-process secret would not.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from adaptive_beta.serving.auth import Caller, KeyStore

COOKIE = "abeta_session"
PAGE_ROLES = frozenset({"compliance", "admin"})


@dataclass(frozen=True)
class SessionConfig:
    """How sessions are signed and how long they last."""

    secret: str = ""  # ABETA_SESSION_SECRET; empty = random per process
    max_age_s: int = 8 * 3600  # ABETA_SESSION_MAX_AGE_S: a working day
    cookie: str = COOKIE

    @classmethod
    def from_env(cls) -> SessionConfig:
        from adaptive_beta.models.settings import get_settings

        settings = get_settings()
        return cls(secret=settings.session_secret.get_secret_value(), max_age_s=settings.session_max_age_s)


class Sessions:
    """Issue and check session cookies against a KeyStore."""

    def __init__(self, store: KeyStore, cfg: SessionConfig | None = None):
        self.store = store
        self.cfg = cfg or SessionConfig()
        secret = self.cfg.secret or secrets.token_urlsafe(32)
        self._serializer = URLSafeTimedSerializer(secret, salt="abeta-compliance-session")
        self._ended: dict[str, float] = {}  # revoked session id -> when its cookie would expire
        self._lock = threading.Lock()

    def login(self, api_key: str) -> Caller | None:
        """The caller owning `api_key`, or None for an unknown key."""
        key = (api_key or "").strip()
        return self.store.lookup(key) if key else None

    def issue(self, caller: Caller) -> str:
        sid = secrets.token_urlsafe(16)
        return self._serializer.dumps({"kid": caller.key_id, "role": caller.role, "sid": sid})

    def _load(self, token: str | None) -> tuple[dict, float] | None:
        """(cookie data, issue time) of a genuine, unexpired cookie with a session id, else None."""
        if not token:
            return None
        try:
            data, issued = self._serializer.loads(token, max_age=self.cfg.max_age_s, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        return data, issued.timestamp()

    def check(self, token: str | None) -> Caller | None:
        """The session's caller if the cookie is genuine, unexpired, not logged out and its key
        still configured."""
        loaded = self._load(token)
        if loaded is None:
            return None
        data = loaded[0]
        with self._lock:
            if data["sid"] in self._ended:
                return None
        caller = Caller(str(data.get("kid")), str(data.get("role")))
        return caller if self._configured(caller) else None

    def end(self, token: str | None) -> Caller | None:
        """Log the cookie's session out on the server; returns its caller (None for no session)."""
        loaded = self._load(token)
        if loaded is None:
            return None
        data, issued = loaded
        now = time.time()
        with self._lock:
            self._ended = {sid: t for sid, t in self._ended.items() if t > now}  # drop expired ones
            self._ended[data["sid"]] = issued + self.cfg.max_age_s + 1
        return Caller(str(data.get("kid")), str(data.get("role")))

    def _configured(self, caller: Caller) -> bool:
        # KeyStore keeps (hash, Caller) pairs; a session stays valid only while its key is configured
        return any(c == caller for _, c in getattr(self.store, "_items", []))


def may_review(caller: Caller | None) -> bool:
    return caller is not None and caller.role in PAGE_ROLES
