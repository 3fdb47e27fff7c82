"""Fixtures for the service tests: a tiny real bundle and a real `bentoml serve` subprocess.

The bundle's ONNX graph is written with `onnx.helper` (no torch, no training: seconds), over the
feature columns that `adaptive_beta.models.features.compute.compute_features` really produces for a short-window spec
on a small synthetic market, so requests go through the production feature path:

    beta        = x[:, -1, base_col(b)] + 0.3 * tanh(mean_t(x) @ W[:, b])     (NaN -> 0 first)
    beta_lo/hi  = beta -/+ 0.2
    regime_prob = softmax(mean_t(x) @ V)
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from adaptive_beta.training.toy_bundle import E2E_SPEC, build_real_bundle  # noqa: F401 (shared with benchmarks)

KEYS = {
    "trader": "trader-key-0123456789abcdef",
    "compliance": "compliance-key-0123456789abcdef",
    "admin": "admin-key-0123456789abcdef",
    "feeder": "feeder-key-0123456789abcdef",
}
API_KEYS_ENV = ",".join(f"{role}-desk@{role}:{key}" for role, key in KEYS.items())
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]
N_BARS = 60
LOOKBACK = 5
SPEC = {
    "return_horizons": ["1d", "3d"],
    "vol_windows": ["5d", "10d"],
    "beta_windows": ["10d", "20d"],
    "ewma_halflives": ["10d"],
    "welch_halflife": "10d",
    "downside_window": "20d",
    "volume_z_window": "10d",
    "funding_windows": ["1d", "3d"],
    "oi_windows": ["1d"],
    "factor_windows": ["5d"],
    "factor_beta_windows": ["10d"],
    "drawdown_window": "20d",
}


def synthetic_market(seed: int = 7, n: int = N_BARS):
    """Daily closes for SYMBOLS (true betas to BTC 1, 1.2, 1.5, 0.8), volumes, funding, and SPY."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-01-01", periods=n, freq="1D", tz="UTC")
    btc = rng.normal(0.0, 0.03, n)
    out = {}
    for sym, beta in zip(SYMBOLS, [1.0, 1.2, 1.5, 0.8], strict=True):
        r = btc if sym == "BTCUSDT" else beta * btc + rng.normal(0, 0.02, n)
        out[sym] = pd.DataFrame(
            {
                "close": 100.0 * np.exp(np.cumsum(r)),
                "volume": rng.uniform(1e5, 2e5, n),
                "funding_rate": rng.normal(1e-4, 5e-5, n),
            },
            index=idx,
        )
    days = pd.bdate_range("2024-12-20", "2025-03-15", tz="UTC")
    spy = pd.Series(500.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), index=days)
    return out, spy


def request_body(assets, spy, composite, symbols=None, n_last=None):
    """A /forecast body from frames (the last `n_last` bars of each)."""
    symbols = symbols or list(assets)
    body = {"assets": [], "series": {}}
    for s in symbols:
        df = assets[s] if n_last is None else assets[s].iloc[-n_last:]
        body["assets"].append(
            {
                "symbol": s,
                "history": [
                    {
                        "timestamp": t.isoformat(),
                        "close": float(r.close),
                        "volume": float(r.volume),
                        "funding_rate": float(r.funding_rate),
                    }
                    for t, r in df.iterrows()
                ],
            }
        )
    comp = composite if n_last is None else composite.iloc[-n_last:]
    body["series"]["CRYPTO_EW"] = [{"timestamp": t.isoformat(), "close": float(v)} for t, v in comp.items()]
    body["series"]["SPY"] = [{"timestamp": t.strftime("%Y-%m-%d"), "close": float(v)} for t, v in spy.items()]
    return body


def _onnx_model(n_features: int, base_idx: list[int], n_regimes: int, seed: int = 0) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    k = len(base_idx)
    w = (rng.normal(0, 0.5, (n_features, k))).astype(np.float32)
    v = (rng.normal(0, 0.5, (n_features, n_regimes))).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(v, "V"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(0.3, np.float32), "scale"),
        numpy_helper.from_array(np.array(0.2, np.float32), "half"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(base_idx, np.int64), "base_idx"),
    ]
    nodes = [
        helper.make_node("IsNaN", ["x"], ["isnan"]),
        helper.make_node("Where", ["isnan", "zero", "x"], ["xc"]),
        helper.make_node("ReduceMean", ["xc", "axis1"], ["m"], keepdims=0),  # [B, F]
        helper.make_node("Gather", ["xc", "last"], ["xl3"], axis=1),  # [B, 1, F]
        helper.make_node("Squeeze", ["xl3", "axis1"], ["xl"]),  # [B, F]
        helper.make_node("Gather", ["xl", "base_idx"], ["base"], axis=1),  # [B, K]
        helper.make_node("MatMul", ["m", "W"], ["mw"]),
        helper.make_node("Tanh", ["mw"], ["t"]),
        helper.make_node("Mul", ["t", "scale"], ["corr"]),
        helper.make_node("Add", ["base", "corr"], ["beta"]),
        helper.make_node("Sub", ["beta", "half"], ["beta_lo"]),
        helper.make_node("Add", ["beta", "half"], ["beta_hi"]),
        helper.make_node("MatMul", ["m", "V"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["regime_prob"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_beta",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", n_features])],
        [
            helper.make_tensor_value_info("beta", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("beta_lo", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("beta_hi", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("regime_prob", TensorProto.FLOAT, ["batch", n_regimes]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def published_spy(spy: pd.Series):
    """SPY closes as the data layer publishes them (US close, 16:00 New York) for build_panel."""
    from adaptive_beta.models.data.publication import publication_times
    from adaptive_beta.models.data.schema import FactorSeries

    values = pd.Series(spy.to_numpy(), index=publication_times(spy.index, "us_close"))
    return FactorSeries(values, "equity", "us_close")


def build_tiny_bundle(out: Path) -> dict:
    """Write the bundle into `out`; return facts the tests need (columns, composite, data)."""
    from adaptive_beta.models.bundle.folder import write_manifest
    from adaptive_beta.models.bundle.meta import SCHEMA_VERSION, BundleMeta
    from adaptive_beta.models.data.schema import build_panel
    from adaptive_beta.models.features.compute import FeatureSpec, compute_features

    assets, spy = synthetic_market()
    spec = FeatureSpec(**SPEC)
    panel = build_panel(assets, {"SPY": published_spy(spy)}, freq="1d")
    table = compute_features(panel, spec)
    columns = list(table.frame.columns)
    benches = list(panel.benchmark_names)
    base_idx = [columns.index(table.base_columns[b]) for b in benches]
    values = table.frame.to_numpy(dtype=np.float64, na_value=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (e.g. open interest)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(_onnx_model(len(columns), base_idx, 3))
    (out / "feature_spec.json").write_text(spec.to_json())
    norm = {
        "columns": columns,
        "mean": np.nan_to_num(mean).tolist(),
        "std": np.nan_to_num(std, nan=1.0).tolist(),
    }
    (out / "normalization.json").write_text(json.dumps(norm))
    warm = spec.min_history("1d")
    meta = {
        "schema_version": SCHEMA_VERSION,
        "created_at": "2025-03-02T00:00:00+00:00",
        "model_name": "adaptive-beta-test",
        "model_version": "test-1",
        "arch": "hand-written-onnx",
        "benchmarks": benches,
        "regimes": ["calm", "volatile", "crash"],
        "interval_level": 0.9,
        "calib_scale": [1.0] * len(benches),
        "inputs": {
            **{b: {"kind": "bar", "category": "crypto_benchmark"} for b in benches},
            "SPY": {"kind": "factor", "category": "equity", "calendar": "us_close"},
        },
        "max_staleness": "5d",
        "feature_columns": columns,
        "feature_groups": {c: table.groups[c] for c in columns},
        "base_columns": dict(table.base_columns),
        "feature_spec_hash": spec.hash(),
        "lookback": f"{LOOKBACK}d",
        "lookback_bars": LOOKBACK,
        "stride": 1,
        "steps": LOOKBACK,
        "freq": "1d",
        "required_history": {
            "frequency": "1d",
            "min_periods": warm + LOOKBACK,
            "feature_warmup_bars": warm,
            "window_bars": LOOKBACK,
            "series": [*benches, "SPY"],
        },
        "training_period": {"start": "2025-01-01", "end": "2025-02-15"},
        "validation_period": {"start": "2025-02-16", "end": "2025-03-01"},
        "n_train_windows": 0,
        "n_val_windows": 0,
        "best_epoch": 0,
        "fit_config": {},
        "onnx": {"opset": 18, "input": "x", "outputs": ["beta", "beta_lo", "beta_hi", "regime_prob"]},
        "parity_max_abs_diff": 0.0,
    }
    (out / "meta.json").write_text(BundleMeta.model_validate(meta).to_json())
    (out / "model_card.md").write_text("# tiny test model\n\nA hand-written ONNX graph for service tests.\n")
    write_manifest(out)
    return {
        "assets": assets,
        "spy": spy,
        "composite": panel.benchmarks["CRYPTO_EW"],
        "meta": meta,
        "mean": mean,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bundle: Path, audit_db: Path, log: Path, extra_env: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "ABETA_MODEL": str(bundle),
                "ABETA_AUDIT_DB": str(audit_db),
                "ABETA_API_KEYS": API_KEYS_ENV,
                "ABETA_MAX_BODY_BYTES": str(2 * 1024 * 1024),
                "BENTOML_DO_NOT_TRACK": "true",
                # BentoML keeps Prometheus' multiprocess files under BENTOML_HOME: servers sharing
                # one home mix their /metrics (seen as another test server's model_version label)
                "BENTOML_HOME": str(log.parent / f"bentoml-home-{self.port}"),
                **(extra_env or {}),
            }
        )
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "adaptive_beta.serving.service:AdaptiveBeta",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        """The serve process and its descendants."""
        pids, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            p = frontier.pop()
            try:
                kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except OSError:
                kids = []
            pids += [int(k) for k in kids]
            frontier += [int(k) for k in kids]
        return pids

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            pids = self.worker_pids()  # workers run in their own sessions: kill their groups too
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for pgid in {os.getpgid(p) for p in pids if Path(f"/proc/{p}").exists()}:
                    os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    facts = build_tiny_bundle(out)
    facts["path"] = out
    return facts


@pytest.fixture(scope="module")
def tiny_body(tiny_bundle):
    """A /forecast body with every asset and series of the tiny bundle's market (all bars)."""
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


@pytest.fixture
def inproc_state(tiny_bundle, tmp_path):
    """An AppState on the tiny bundle with its own audit log and market-data store (in-process)."""
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.market_stores import close_stores

    cfg = ServeConfig(
        model=str(tiny_bundle["path"]),
        audit_db=str(tmp_path / "audit.db"),
        market_db=str(tmp_path / "market.db"),
    )
    st = AppState.load(cfg)
    yield st
    close_stores()
    st.audit.close()


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("server")
    srv = Server(tiny_bundle["path"], d / "audit" / "audit.db", d / "server.log")
    srv.audit_db = d / "audit" / "audit.db"
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def auth(role: str = "trader") -> dict:
    return {"Authorization": f"Bearer {KEYS[role]}"}


# --- a REAL bundle (simulated market -> features -> fit_model -> export_bundle, as the main job):
# `E2E_SPEC` and `build_real_bundle` live in adaptive_beta.training.toy_bundle, imported above.

# --- a bundle made by the REAL `abeta train` command (subprocess), for pages that read bundle meta ----

TRAIN_TOML = """
n_boot = 50
attribution_windows = 8

[model]
epochs = 1
hidden = 8
max_train_samples = 400
lookback = "32d"
max_steps = 4

[walk_forward]
train_min = "300d"
val = "60d"
test = "120d"
max_folds = 1
"""


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> dict:
    """`abeta data simulate` + `abeta train --config` (one fold, one epoch) in a temporary folder,
    as a user runs them; returns {"root", "data", "bundle"} with the bundle the run logged to
    MLflow.  Everything (MLflow store, artifacts) stays under the temporary folder."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("abeta-train")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "ABETA_MLRUNS": str(root / "mlruns"),
        "TMPDIR": str(root),
    }
    abeta = [sys.executable, "-m", "adaptive_beta.cli.main"]
    (root / "train.toml").write_text(TRAIN_TOML)
    sim = [*abeta, "data", "simulate", "--out", "sim", "--seed", "5", "--assets", "4", "--days", "760"]
    train = [*abeta, "train", "--config", "train.toml", "--data", "sim", "--quiet"]
    for cmd in (sim, train):
        res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    metas = [  # the run's logged bundle (not the export scratch copy, not the MLflow model's copy)
        p
        for p in root.rglob("bundle/meta.json")
        if "abeta-bundle-" not in str(p) and "/models/m-" not in str(p)
    ]
    assert len(metas) == 1, metas
    return {"root": root, "data": root / "sim", "bundle": metas[0].parent}


# ------------------------------------------------------------- helpers of the bad-input test modules
def json_post(server, path, payload, role="trader", **kw):
    """POST a JSON body with a role's key (60 s: the first call on a cold worker)."""
    return httpx.post(server.url + path, json=payload, headers=auth(role), timeout=60, **kw)


def hedge_body(body, **extra):
    """A valid /hedge request on the tiny bundle's market, with fields overridden."""
    return {
        **copy.deepcopy(body),
        "positions": {"SOLUSDT": 1e6, "DOGEUSDT": 5e5},
        "target": {"BTCUSDT": 0.0},
        "instruments": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}],
        **extra,
    }


def audit_record(server, rid):
    """The audit record of request `rid`, read from the server's database."""
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(server.audit_db) as r:
        return r.get(rid)
