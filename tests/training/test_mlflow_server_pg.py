"""Issue 14 item 4: a team's tracking server.  The user's commands (`abeta data simulate`,
`abeta train`, `abeta promote`, `abeta serve`, the request-building client) run unchanged with
`MLFLOW_TRACKING_URI=http://...` pointing at a real `mlflow server` whose metadata lives in a
throwaway PostgreSQL and whose artifacts live in a separate folder (`--artifacts-destination`,
proxied by the server).  Checked: a /forecast is answered 200 by the model resolved through the
server, the runs, versions and aliases are rows in PostgreSQL, the bundle files are in the
artifact folder, and nothing was written to a local MLflow store.

Skips with the reason where the PostgreSQL server binaries or the driver are missing (see
tests/serving/test_audit_pg.py, whose throwaway-server fixture this module reuses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import API_KEYS_ENV, KEYS, TRAIN_TOML
from tests.serving.test_audit_pg import _free_port, pg_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

ABETA = [sys.executable, "-m", "adaptive_beta.cli.main"]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout}s: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group the test started (start_new_session), SIGKILL it if it lingers."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def tracking_server(pg_server, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """`mlflow server` on a fresh PostgreSQL database `mlflow`, artifacts in their own folder."""
    import psycopg

    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts, cwd = root / "artifacts", root / "cwd"
    cwd.mkdir()
    port = _free_port()
    backend = pg_server.replace("postgresql://", "postgresql+psycopg://") + "/mlflow"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    cmd += ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1"]
    log = root / "mlflow-server.log"
    # job execution (GenAI scorers, which we do not use) would start seven huey worker processes
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = _start(cmd, cwd, env, log)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        yield {"url": f"http://127.0.0.1:{port}", "db": f"{pg_server}/mlflow", "artifacts": artifacts}
    finally:
        _stop(proc)


def _run(cmd: list[str], cwd: Path, env: dict, ok=(0,), timeout: float = 900) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode in ok, f"{cmd[3:]} exit {res.returncode}: {res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def team_run(tracking_server, tmp_path_factory) -> dict:
    """simulate, train, promote and serve as a user of the team server does; one /forecast."""
    root = tmp_path_factory.mktemp("team-user")
    home = root / "home"  # ABETA_HOME: where a local store would appear if anything made one
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_server["url"],
        "ABETA_HOME": str(home),
        "ABETA_API_KEYS": API_KEYS_ENV,
        "TMPDIR": str(root),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(root / "bentoml-home"),
    }
    env.pop("ABETA_MLRUNS", None)  # the autouse fixture's; the default HOME/mlruns must stay absent
    (root / "train.toml").write_text(TRAIN_TOML)
    _run(
        [*ABETA, "data", "simulate", "--out", "sim", "--seed", "5", "--assets", "4", "--days", "760"],
        root,
        env,
    )
    train = _run([*ABETA, "train", "--config", "train.toml", "--data", "sim", "--quiet"], root, env)
    promote = _run([*ABETA, "promote"], root, env, ok=(0, 1))  # 1: the gate refused (or train promoted)
    listed = _run([*ABETA, "models", "list"], root, env)
    row = [ln.split() for ln in listed.stdout.splitlines() if ln.strip().startswith("1 ")]
    assert row, listed.stdout
    aliases = row[0][1].split(",")
    alias = "champion" if "champion" in aliases else "challenger"  # what the CLI offers when refused
    port = _free_port()
    serve = [*ABETA, "serve", "--model", f"models:/adaptive-beta@{alias}", "--port", str(port)]
    serve += ["--audit-db", str(root / "audit" / "audit.db")]
    log = root / "serve.log"
    proc = _start(serve, root, env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/readyz", proc, log, timeout=180)
        client = [sys.executable, "-m", "adaptive_beta.serving.client", "--data", "sim", "--url", url]
        _run([*client, "--key", KEYS["trader"], "--out", "request.json"], root, env)
        auth = {"Authorization": f"Bearer {KEYS['trader']}"}
        body = json.loads((root / "request.json").read_text())
        forecast = httpx.post(url + "/forecast", json=body, headers=auth, timeout=120)
        model = httpx.get(url + "/model", headers=auth, timeout=30)
    finally:
        _stop(proc)
    return {
        "root": root,
        "home": home,
        "alias": alias,
        "train": train.stdout,
        "promote": promote.stdout,
        "list": listed.stdout,
        "aliases": aliases,
        "forecast": forecast,
        "model": model,
    }


def test_train_promote_and_serve_through_the_tracking_server(team_run, tracking_server):
    assert "registered adaptive-beta v1 (challenger)" in team_run["train"], team_run["train"][-2000:]
    said = [
        ln for ln in team_run["promote"].splitlines() if ln.startswith(("promoted v1", "not promoted v1"))
    ]
    assert len(said) == 1, team_run["promote"]  # (MLflow also prints a "View run" link)
    assert f"look at it: open {tracking_server['url']} in a browser" in team_run["train"]  # not `mlflow ui`
    assert f"store: {tracking_server['url']}" in team_run["list"]
    assert "challenger" in team_run["aliases"], team_run["list"]
    r, model = team_run["forecast"], team_run["model"]
    assert r.status_code == 200, r.text[:2000]
    assert model.status_code == 200, model.text[:2000]
    assert model.json()["alias"] == team_run["alias"]
    out = r.json()
    assert out["model"]["version"] == "1"  # the registered version, resolved through the server
    assert len(out["forecasts"]) == 2
    for f in out["forecasts"]:
        assert f["betas"], f
        for b in f["betas"].values():
            assert b["lo"] <= b["beta"] <= b["hi"] and -10 < b["beta"] < 10, f


def test_runs_versions_and_aliases_are_rows_in_postgresql(team_run, tracking_server):
    import psycopg

    with psycopg.connect(tracking_server["db"]) as conn:
        runs = conn.execute(
            "SELECT e.name, r.status, r.artifact_uri FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id"
        ).fetchall()
        versions = conn.execute("SELECT name, version, source FROM model_versions").fetchall()
        aliases = dict(
            conn.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'adaptive-beta'")
        )
    train_runs = [r for r in runs if r[0] == "adaptive-beta"]
    assert train_runs and all(r[1] == "FINISHED" for r in train_runs), runs
    assert all(r[2].startswith("mlflow-artifacts:/") for r in runs), runs  # proxied, not a local path
    assert [(n, v) for n, v, _ in versions] == [("adaptive-beta", 1)], versions
    assert aliases == dict.fromkeys(team_run["aliases"], 1)  # what `abeta models list` showed
    assert [r for r in runs if r[0] == "adaptive-beta-promotions"], runs  # the gate's decision run


def test_artifacts_are_in_the_artifact_root_and_nothing_is_stored_locally(team_run, tracking_server):
    manifests = list(tracking_server["artifacts"].rglob("manifest.json"))
    assert manifests, "no bundle manifest under the artifact root"
    onnx = list(tracking_server["artifacts"].rglob("*.onnx"))
    assert onnx and all(p.stat().st_size > 1000 for p in onnx), onnx
    decisions = list(tracking_server["artifacts"].rglob("decision.json"))
    assert len(decisions) == 2, decisions  # the gate run by `abeta train`, then by `abeta promote`
    local = [
        p
        for p in team_run["root"].rglob("*")
        if p.name in {"mlruns", "mlartifacts"}
        or (p.suffix == ".db" and not {"audit", "bentoml-home"} & set(p.parts))
    ]
    assert local == [], local
    assert not (team_run["home"] / "mlruns").exists()


@pytest.mark.parametrize(
    "args",
    [["promote"], ["models", "list"], ["serve", "--port", "0"], ["train", "--quiet"], ["tune", "--quiet"]],
    ids=lambda a: a[0] if a[0] != "models" else "models-list",
)
def test_an_unreachable_tracking_server_is_one_line_and_exit_2_at_once(args, tmp_path):
    """Without the check, MLflow retried for minutes and `promote` then said "no challenger"."""
    port = _free_port()  # nothing listens there
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "ABETA_HOME": str(tmp_path)}
    env["ABETA_API_KEYS"] = API_KEYS_ENV
    if args[0] == "serve":
        args = ["serve", "--port", str(_free_port())]
    t0 = time.perf_counter()
    res = subprocess.run([*ABETA, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert (
        len(lines) == 1 and f"cannot reach the MLflow tracking server http://127.0.0.1:{port}" in lines[0]
    ), res.stderr
    assert "Traceback" not in res.stderr
    assert took < 60, took  # the interpreter start and imports; no retries with backoff
    assert not (tmp_path / "mlruns").exists()
