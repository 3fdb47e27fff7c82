"""Issue 11 item 1: /metrics stays bounded whatever paths clients send (real `bentoml serve`, loopback)."""

from __future__ import annotations

import random
import re

import httpx
import pytest

from tests.serving.conftest import auth

pytestmark = pytest.mark.slow


_LABEL = re.compile(r'(?:endpoint|path|route)="([^"]*)"')


def _path_labels(server) -> tuple[set[str], int]:
    r = httpx.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200
    return set(_LABEL.findall(r.text)), len(r.content)


def test_random_paths_leave_the_metrics_path_labels_bounded_and_metrics_small(server):
    """2,000 distinct random paths (401 without a key, 403 for a trader, 404 for an admin) add at most
    one shared label to /metrics, not one per path, and /metrics stays under 1 MB."""
    rng = random.Random(11)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.get("/no-such-route-warm-up", headers=auth("admin"))
        before, _ = _path_labels(server)
        statuses = {}
        for i in range(2000):
            path = "/" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=40)) + f"/{i}"
            headers = [{}, auth("trader"), auth("admin")][i % 3]
            st = c.get(path, headers=headers).status_code
            statuses[st] = statuses.get(st, 0) + 1
    assert set(statuses) == {401, 403, 404}, statuses
    after, size = _path_labels(server)
    assert len(after) <= len(before) + 1, sorted(after - before)[:5]
    assert not any(len(lbl) >= 40 for lbl in after), "a raw random path became a label"
    assert size < 1_000_000
