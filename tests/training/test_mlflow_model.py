"""The registered version is a real MLflow Model (issue 13 item 1), on a bundle made by `train()`.

One tiny training run (one fold, one epoch) logs the bundle as a pyfunc model and registers it;
the tests then load it as MLflow users do (`mlflow.pyfunc.load_model`, in a fresh process: no
torch), compare its forecasts with the bundle's batch path (`predict_every_bar`) and with the
service started by `abeta serve --model models:/adaptive-beta@champion`, and read the run's
dataset record; `mlflow models serve` answers the stored serving example.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import write_simulation
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.splits import WalkForwardConfig
from adaptive_beta.training.train_config import TrainConfig

NAME = "adaptive-beta"
ATOL = 1e-6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-model")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("ABETA_MLRUNS", str(root / "mlruns"))
    data = write_simulation(simulate(SimConfig(seed=5, n_assets=4, days=760)), root / "sim")
    cfg = TrainConfig(
        data=str(data),
        model=ModelConfig(epochs=1, hidden=8, max_train_samples=800, lookback="32d", max_steps=8),
        walk_forward=WalkForwardConfig(train_min="300d", val="60d", test="120d", max_folds=1),
        n_boot=50,
        attribution_windows=8,
        progress=False,
    )
    from adaptive_beta.training.train_run import train

    result = train(cfg)
    client = mlflow.MlflowClient()
    # A one-epoch model rarely wins the gate; the alias stands in for a won gate.
    client.set_registered_model_alias(NAME, "champion", result.version)
    yield {"root": root, "data": data, "result": result, "uri": uri}
    mp.undo()


@pytest.fixture(autouse=True)
def _same_store(trained, monkeypatch):
    """tests/conftest.py points every test at its own store: use the module's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.setenv("ABETA_MLRUNS", str(trained["root"] / "mlruns"))
    mlflow.set_tracking_uri(trained["uri"])


def _panel_frame(trained):
    """The panel frame of the last `min_periods` bars of every non-benchmark asset."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.panel_frame import panel_frame_from_panel
    from adaptive_beta.models.data.loaders import factor_observations, load_dataset

    bundle = load_bundle(trained["result"].bundle_dir)
    panel = load_dataset(trained["data"])
    raw = {n: fs.values for n, fs in factor_observations(trained["data"]).items()}
    return panel, bundle, panel_frame_from_panel(panel, bundle.meta.required_history, raw_factors=raw)


def test_registered_version_is_a_pyfunc_model_with_signature_and_input_example(trained):
    from mlflow.models import Model

    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias(NAME, "challenger")
    assert str(mv.version) == trained["result"].version
    assert mv.source.startswith("models:/m-") and mv.run_id == trained["result"].run_id
    info = Model.load(f"models:/{NAME}@challenger")
    assert "python_function" in info.flavors
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert list(inputs) == ["timestamp", "symbol", "close", "volume", "funding_rate", "open_interest"]
    assert inputs["timestamp"]["type"] == "datetime" and inputs["close"]["required"]
    assert not inputs["open_interest"]["required"]
    outputs = [c["name"] for c in info.signature.outputs.to_dict()]
    assert outputs[:4] == ["symbol", "as_of", "BTCUSDT", "CRYPTO_EW"] and "regime_crash" in outputs
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@challenger"))
    assert (local / "pyfunc_code.py").is_file() and not (local / "python_model.pkl").exists()  # no pickle
    example = info.load_input_example(str(local))
    assert set(example["symbol"]) >= {"BTCUSDT", "CRYPTO_EW"} and len(set(example["symbol"])) >= 4


def test_pyfunc_without_torch_equals_the_bundle_batch_forecast(trained, tmp_path):
    """`mlflow.pyfunc.load_model(...).predict(panel_frame)` in a fresh process: torch never
    imported, forecasts equal `predict_every_bar` on the same history within 1e-6."""
    panel, bundle, frame = _panel_frame(trained)
    frame.to_parquet(tmp_path / "frame.parquet")
    code = textwrap.dedent(
        f"""
        import sys, mlflow, pandas as pd
        mlflow.set_tracking_uri({trained["uri"]!r})
        model = mlflow.pyfunc.load_model("models:/{NAME}@challenger")
        out = model.predict(pd.read_parquet({str(tmp_path / "frame.parquet")!r}))
        out.to_parquet({str(tmp_path / "out.parquet")!r})
        print("torch" in sys.modules)
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "False"
    got = pd.read_parquet(tmp_path / "out.parquet").set_index("symbol")
    assets = sorted(set(frame["symbol"]) - set(bundle.meta.required_history.series))
    assert sorted(got.index) == assets and len(assets) == 3
    from adaptive_beta.models.bundle.inference import predict_every_bar

    first = pd.Timestamp(frame.loc[frame["symbol"].isin(assets), "timestamp"].min(), tz="UTC")
    cut = panel.slice(first, panel.index[-1]).select(assets)
    want, _ = predict_every_bar(cut, bundle, rows=[len(cut.index) - 1])
    want = want.xs(panel.index[-1], level="timestamp")
    assert (got["as_of"] == panel.index[-1]).all()
    cols = [f"{b}{s}" for s in ("", "_lo", "_hi") for b in bundle.benchmarks]
    diff = np.abs(got.loc[assets, cols].to_numpy() - want.loc[assets, cols].to_numpy(dtype=float))
    assert diff.max() <= ATOL, diff
    assert np.allclose(got.filter(like="regime_").sum(axis=1), 1.0, atol=1e-5)


def test_training_run_records_its_dataset(trained):
    run = mlflow.get_run(trained["result"].run_id)
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == "sim" and json.loads(ds.source)["uri"].endswith("sim")
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert (
        tags["panel_sha256"] == run.data.tags["data_fingerprint"] and ds.digest == tags["panel_sha256"][:16]
    )
    assert json.loads(ds.profile)["num_rows"] == 760


def test_abeta_serve_on_the_champion_serves_the_registered_bundle(trained, tmp_path):
    """`abeta serve --model models:/adaptive-beta@champion` loads the version the registry names
    (same bundle sha256) and its /forecast (body from `client.forecast_request`, which writes the
    same panel frame as JSON) equals the pyfunc model's predictions."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.serving.client import forecast_request, free_port, process_tree, raw_factor_series

    panel, bundle, frame = _panel_frame(trained)
    assets = [s for s in panel.symbols if s not in bundle.meta.required_history.series]
    port, key = free_port(), "trader-key-0123456789abcdef"
    env = {**os.environ, "ABETA_API_KEYS": f"desk@trader:{key}", "BENTOML_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "serve", "--model", f"models:/{NAME}@champion"]
    cmd += ["--port", str(port), "--audit-db", str(tmp_path / "audit.db")]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    try:
        _wait_ready(proc, url, tmp_path / "serve.log")
        info = httpx.get(url + "/model", headers=headers, timeout=30).json()
        assert info["version"] == trained["result"].version and info["alias"] == "champion"
        assert info["bundle_sha256"] == load_bundle(trained["result"].bundle_dir).sha256
        body = forecast_request(panel, info["required_history"], assets, raw_factor_series(trained["data"]))
        r = httpx.post(url + "/forecast", json=body, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
    finally:
        for pid in reversed(process_tree(proc.pid)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        proc.wait(30)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    want = model.predict(frame).set_index("symbol")
    assert [f["symbol"] for f in r.json()["forecasts"]] == assets
    for f in r.json()["forecasts"]:
        for b in bundle.benchmarks:
            assert abs(f["betas"][b]["beta"] - want.at[f["symbol"], b]) <= ATOL


def _wait_ready(proc, url: str, log, path: str = "/readyz") -> None:
    import time

    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("service not ready: " + log.read_text()[-3000:])
