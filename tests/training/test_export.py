"""export_bundle: ONNX parity for every architecture, the parity gate, meta.json contents."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.meta import InputSeries
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.training.datasets import make_synthetic_task
from adaptive_beta.training.export import ExportParityError, export_bundle, parity_check, warmup_bars
from adaptive_beta.training.fit import fit_model, predict_torch
from adaptive_beta.training.model_config import ModelConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task():
    return make_synthetic_task(n_time=400, n_assets=4, seed=3)


@pytest.fixture(scope="module", params=["gru", "transformer", "mlp"])
def exported(request, task, tmp_path_factory):
    f, y, r = task
    cfg = ModelConfig(
        arch=request.param, lookback="16d", max_steps=8, epochs=2, batch_size=64, hidden=16, layers=2
    )
    fit = fit_model(f, y, r, ("2021-01-01", "2021-09-30"), ("2021-10-15", "2022-01-31"), cfg, progress=False)
    out = tmp_path_factory.mktemp(f"bundle_{request.param}") / "b"
    spec = FeatureSpec()
    inputs = {
        "SPY": InputSeries(kind="factor", category="equity", calendar="us_close"),
        "DXY": InputSeries(kind="factor", category="fx", calendar="us_close", lag="1h"),
    }
    meta = {"inputs": inputs, "max_staleness": "5d", "run_id": "r1"}
    path = export_bundle(fit, spec, meta, out, "# Test model\n")
    return fit, path, spec


def test_onnx_matches_torch_for_batches_1_and_7_and_two_lengths(exported):
    fit, path, _ = exported
    sess = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for b in (1, 7):
        for length in (fit.steps, 3 * fit.steps):
            x = (fit.mean + fit.std * rng.standard_normal((b, length, len(fit.mean)))).astype(np.float32)
            x[:, 0, 4] = np.nan
            ref = predict_torch(fit.net, x)
            got = dict(
                zip(["beta", "beta_lo", "beta_hi", "regime_prob"], sess.run(None, {"x": x}), strict=True)
            )
            for k in ref:
                assert got[k].shape == ref[k].shape
                assert np.max(np.abs(got[k] - ref[k])) <= 1e-5, (k, b, length)
    # and on the real (training-data) windows the fit kept
    ref = predict_torch(fit.net, fit.sample_windows)
    got = sess.run(None, {"x": fit.sample_windows})
    assert np.max(np.abs(got[0] - ref["beta"])) <= 1e-5


def test_meta_records_geometry_history_series_and_calibration(exported):
    fit, path, spec = exported
    meta = json.loads((path / "meta.json").read_text())
    assert meta["benchmarks"] == ["BTCUSDT", "CRYPTO_EW"]
    assert meta["regimes"] == ["calm", "volatile", "crash"]
    assert meta["feature_columns"] == ["welch_BTCUSDT", "welch_CRYPTO_EW", "x1", "x2", "x3", "x4"]
    assert meta["base_columns"] == {"BTCUSDT": "welch_BTCUSDT", "CRYPTO_EW": "welch_CRYPTO_EW"}
    assert (meta["lookback"], meta["lookback_bars"], meta["stride"], meta["steps"], meta["freq"]) == (
        "16d",
        16,
        2,
        8,
        "1d",
    )
    rh = meta["required_history"]
    assert rh["frequency"] == "1d"
    assert (
        rh["min_periods"] == spec.serving_history(pd.Timedelta("1D")) + 15
    )  # EWMA/Welch warm-up + window span
    assert rh["series"] == ["BTCUSDT", "CRYPTO_EW", "SPY", "DXY"]
    assert meta["feature_spec_hash"] == spec.hash()
    assert meta["run_id"] == "r1" and meta["parity_max_abs_diff"] <= 1e-5
    assert meta["calib_scale"] == pytest.approx(list(fit.calib_scale))
    assert meta["training_period"] == {"start": "2021-01-01", "end": "2021-09-30"}
    assert meta["validation_period"] == {"start": "2021-10-15", "end": "2022-01-31"}
    assert meta["schema_version"] == 2 and meta["max_staleness"] == "5d"
    assert meta["inputs"]["BTCUSDT"]["kind"] == "bar"
    assert meta["inputs"]["DXY"] == {"kind": "factor", "category": "fx", "calendar": "us_close", "lag": "1h"}
    norm = json.loads((path / "normalization.json").read_text())
    np.testing.assert_allclose(norm["mean"], fit.mean, rtol=1e-6)
    assert load_bundle(path).spec == spec


def test_export_refuses_a_non_empty_folder(exported, tmp_path):
    fit, _, spec = exported
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle(fit, spec, {}, tmp_path, "card")
    assert (tmp_path / "keep.txt").exists()


def test_parity_gate_fails_loudly_when_graph_and_net_disagree(exported):
    fit, path, _ = exported
    net = fit.net
    saved = net.delta_head.bias.detach().clone()
    try:
        with torch.no_grad():
            net.delta_head.bias.add_(1e-3)
        with pytest.raises(ExportParityError, match="output 'beta'"):
            parity_check(net, path / "model.onnx", [fit.sample_windows])
    finally:
        with torch.no_grad():
            net.delta_head.bias.copy_(saved)


def test_warmup_bars_prefers_serving_history_then_min_history_then_longest_duration():
    assert warmup_bars(FeatureSpec(), "1d") == FeatureSpec().serving_history("1d") == 598

    class WithMinHistory:
        def min_history(self, freq):
            return 181

    class Plain:
        def to_dict(self):
            return {"a": "30d", "b": ["7d", "90d"], "c": 2.0}

    assert warmup_bars(WithMinHistory(), "1d") == 181
    assert warmup_bars(Plain(), "8h") == 90 * 3 + 1
