"""`abeta serve` dies with its workers (issue 11 item 4): SIGTERM to its pid (`abeta serve ... & kill $!`)
or SIGKILL to its process group leaves no process holding the port (BentoML starts each worker in
its own session, so the group kill alone used to leave the worker answering)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from adaptive_beta.serving.client import process_tree
from tests.serving.conftest import API_KEYS_ENV, _free_port

pytestmark = pytest.mark.slow

GONE_WITHIN_S = 20.0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["sigterm-pid", "sigkill-group"])
def test_killing_abeta_serve_frees_the_port(tiny_bundle, tmp_path, how):
    port = _free_port()
    env = {
        **os.environ,
        "ABETA_API_KEYS": API_KEYS_ENV,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(tmp_path / "bentoml-home"),
    }
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "serve", "--model", str(tiny_bundle["path"])]
    cmd += ["--audit-db", str(tmp_path / "audit.db"), "--port", str(port)]
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )  # noqa: SIM115
    pids: list[int] = []
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("not ready: " + log.read_text()[-3000:])
        pids = process_tree(proc.pid)
        assert len(pids) >= 2  # the server and at least one worker
        if how == "sigterm-pid":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(GONE_WITHIN_S)
        deadline = time.time() + GONE_WITHIN_S
        while time.time() < deadline and not (_port_free(port) and not any(_alive(p) for p in pids)):
            time.sleep(0.2)
        survivors = [p for p in pids if _alive(p)]
        assert survivors == [] and _port_free(port), f"{survivors} still alive / port {port} still held"
    finally:
        for p in [proc.pid, *pids]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
