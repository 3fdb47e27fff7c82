"""Start-up and operator errors (issue 11), tried as a new user would: each is one line on stderr and
exit 2 before BentoML starts (no traceback, no server left running); a refused promotion exits 1;
read-only registry commands never create a store and say which one they use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.serving.conftest import API_KEYS_ENV

ABETA = [sys.executable, "-m", "adaptive_beta.cli.main"]


def _kill_tree(proc: subprocess.Popen) -> None:
    """The command's session and every process it started (BentoML workers run in their own)."""
    from adaptive_beta.serving.client import process_tree

    for pid in reversed(process_tree(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


def _abeta(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 60) -> tuple[int, str, str]:
    full = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "ABETA_API_KEYS": API_KEYS_ENV, **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    proc = subprocess.Popen(
        [*ABETA, *args], cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise AssertionError(f"`abeta {' '.join(args)}` was still running after {timeout} s") from None
    return proc.returncode, out, err


def _one_line(code: int, err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _register(tmp_path: Path, tag: str, headline=None) -> str:
    from adaptive_beta.training.registry import register_bundle
    from adaptive_beta.training.tracking import setup_mlflow

    setup_mlflow()
    b = tmp_path / f"bundle-{tag}"
    b.mkdir()
    (b / "manifest.json").write_text('{"files": {}}')
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(b), artifact_path="bundle")
    return register_bundle(run.info.run_id, tags=headline.to_tags() if headline else None)


def _losing_headline():
    from adaptive_beta.training.registry import Headline

    return Headline("k1", {"BTCUSDT": 0.2, "CRYPTO_EW": 0.1}, {"BTCUSDT": 0.10, "CRYPTO_EW": 0.05})


def test_serve_without_a_champion_says_the_challenger_exists_and_how_to_promote(tmp_path):
    v = _register(tmp_path, "a")
    code, _, err = _abeta(["serve", "--port", "1"], tmp_path)
    line = _one_line(code, err, "@champion", "@challenger", "abeta promote")
    assert f"v{v}" in line


@pytest.mark.parametrize(
    "model, words",
    [
        ("no/such/bundle", ["no model bundle at no/such/bundle"]),
        ("models:/adaptive-beta@", ["malformed model URI", "models:/NAME@ALIAS"]),
        ("models:/nobody@champion", ["no registered model 'nobody'"]),
    ],
)
def test_serve_with_a_missing_or_malformed_model_is_one_line(tmp_path, model, words):
    _register(tmp_path, "a")  # a store exists
    code, _, err = _abeta(["serve", "--model", model, "--port", "1"], tmp_path)
    _one_line(code, err, *words)


def test_serve_with_a_short_api_key_is_one_line(tiny_bundle, tmp_path):
    env = {"ABETA_API_KEYS": "trader:short"}
    code, _, err = _abeta(["serve", "--model", str(tiny_bundle["path"])], tmp_path, env)
    _one_line(code, err, "shorter than 16")


def test_serve_with_a_bad_setting_is_one_line(tiny_bundle, tmp_path):
    env = {"ABETA_MAX_CONCURRENCY": "lots"}
    code, _, err = _abeta(["serve", "--model", str(tiny_bundle["path"])], tmp_path, env)
    _one_line(code, err, "ABETA_MAX_CONCURRENCY='lots'")


def test_serve_on_a_port_in_use_is_one_line(tiny_bundle, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", "--model", str(tiny_bundle["path"]), "--port", str(port)]
        code, _, err = _abeta(args, tmp_path, {"ABETA_AUDIT_DB": str(tmp_path / "a.db")})
    _one_line(code, err, f"127.0.0.1:{port}", "--port")


def test_promote_a_missing_version_is_one_line(tmp_path):
    _register(tmp_path, "a")
    code, _, err = _abeta(["promote", "--version", "7"], tmp_path)
    _one_line(code, err, "no version 7", "adaptive-beta")


def test_a_refused_promotion_exits_1(tmp_path):
    _register(tmp_path, "a", _losing_headline())
    code, out, err = _abeta(["promote"], tmp_path)
    assert code == 1, out + err
    assert "not promoted v1" in out


def test_models_list_elsewhere_creates_no_store_and_says_which_it_looked_for(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {"ABETA_HOME": str(home), "ABETA_MLRUNS": None, "MLFLOW_TRACKING_URI": None}
    code, _, err = _abeta(["models", "list"], elsewhere, env)
    _one_line(code, err, str(home / "mlruns" / "mlflow.db"), "MLFLOW_TRACKING_URI")
    assert list(elsewhere.iterdir()) == [] and list(home.iterdir()) == []


def test_models_list_names_the_store_it_reads(tmp_path):
    _register(tmp_path, "a")
    code, out, err = _abeta(["models", "list"], tmp_path)
    assert code == 0, err
    assert out.splitlines()[0] == f"store: {os.environ['MLFLOW_TRACKING_URI']}"
