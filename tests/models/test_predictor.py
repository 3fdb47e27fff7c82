"""Predictor + make_inputs on a simulated market: ORT equals torch on served windows, no skew with
training windows, and history/series shortfalls are DataErrors that say what is missing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.inference import make_inputs
from adaptive_beta.models.bundle.predictor import Predictor
from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.features.spec import FeatureSpec

SPEC = FeatureSpec()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from adaptive_beta.models.bundle.meta import bundle_inputs
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.targets import forward_betas, regime_labels
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("served")
    panel = load_dataset(write_simulation(simulate(SimConfig(n_assets=4, days=700, seed=1)), root / "sim"))
    table = compute_features(panel, SPEC)
    cfg = ModelConfig(lookback="16d", max_steps=8, epochs=2, hidden=16, batch_size=64)
    fit = fit_model(
        table,
        forward_betas(panel, "30d"),
        regime_labels(panel, "7d"),
        ("2021-01-01", "2022-05-31"),
        ("2022-06-15", "2022-10-20"),
        cfg,
        progress=False,
        freq=panel.freq,
        timestamps=panel.index,
    )
    path = export_bundle(fit, SPEC, bundle_inputs(panel), root / "bundle", "# card")
    return panel, table, fit, load_bundle(path)


def test_required_history_is_feature_warmup_plus_window_span(served):
    _, _, fit, bundle = served
    rh = bundle.meta.required_history.model_dump()
    # EWMA/Welch betas weigh the whole past: 598 daily bars keep the lost weight < 1 % (FeatureSpec.serving_history)
    assert SPEC.serving_history("1d") == 598 and fit.steps == 8 and fit.stride == 2
    assert rh["min_periods"] == 598 + 15
    assert rh["series"] == ["BTCUSDT", "CRYPTO_EW", "DGS10", "DXY", "GOLD", "SPX", "VIX", "WTI"]


def test_served_windows_equal_training_windows_and_ort_equals_torch(served):
    from adaptive_beta.models.features.windows import feature_cube, gather_windows
    from adaptive_beta.training.fit import predict_torch

    panel, table, fit, bundle = served
    inp = make_inputs(panel, bundle)
    assert inp.x.shape == (4, 8, len(fit.feature_columns)) and inp.x.dtype == np.float32
    assert inp.symbols == panel.symbols and all(ts == panel.index[-1] for ts in inp.as_of)
    cube, _, _ = feature_cube(table.frame, fit.feature_columns, panel.index, panel.symbols)
    pairs = np.array([[len(panel.index) - 1, j] for j in range(4)])
    np.testing.assert_array_equal(inp.x, gather_windows(cube, pairs, fit.lookback_bars, fit.stride))
    np.testing.assert_allclose(inp.rows.to_numpy(), inp.x[:, -1].astype(float), rtol=1e-6)
    out = Predictor(bundle).predict(inp.x)
    ref = predict_torch(fit.net, inp.x)
    for k in ("beta", "beta_lo", "beta_hi", "regime_prob"):
        assert np.max(np.abs(out[k] - ref[k])) <= 1e-5
    assert np.all(out["beta_lo"] < out["beta"]) and np.all(out["beta"] < out["beta_hi"])
    np.testing.assert_allclose(out["regime_prob"].sum(axis=1), 1.0, atol=1e-6)


def test_short_history_is_a_data_error_naming_the_asset_and_the_shortfall(served):
    panel, _, _, bundle = served
    short = panel.slice(start=panel.index[-500])
    with pytest.raises(
        DataError, match=r"asset \w+: 500 bars of 1d history, the model needs 613 \(113 missing\)"
    ):
        make_inputs(short, bundle)


def test_missing_factor_series_is_a_data_error_naming_it(served):
    panel, _, _, bundle = served
    no_vix = dataclasses.replace(panel, factors=panel.factors.drop(columns=["VIX"]))
    with pytest.raises(DataError, match=r"lacks series \['VIX'\]"):
        make_inputs(no_vix, bundle)


def test_predictor_checks_input_shape_and_accepts_any_batch_and_length(served):
    _, _, fit, bundle = served
    pred = Predictor(bundle, intra_op_threads=2)
    assert pred.session.get_session_options().intra_op_num_threads == 2
    f = len(fit.feature_columns)
    with pytest.raises(DataError, match=rf"shape \[batch, seq, {f}\].*got \[2, 8, {f - 1}\]"):
        pred.predict(np.zeros((2, 8, f - 1), dtype=np.float32))
    x = fit.sample_windows
    assert pred.predict(x[:1, -3:])["beta"].shape == (1, 2)
    assert pred.predict(np.concatenate([x, x], axis=1)[:7])["regime_prob"].shape == (7, 3)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_8h_perps_export_passes_parity_and_serves_the_latest_bar(real_data_dir, tmp_path):
    from pathlib import Path

    from adaptive_beta.models.bundle.meta import bundle_inputs
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.targets import forward_betas, regime_labels
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    manifest = Path(__file__).resolve().parents[2] / "docs" / "datasets" / "binance-perps-8h.toml"
    panel = load_dataset(manifest).slice(start="2024-01-01")
    spec = SPEC
    table = compute_features(panel, spec)
    cfg = ModelConfig(epochs=1, hidden=16, max_train_samples=1000, batch_size=128)
    fit = fit_model(
        table,
        forward_betas(panel, "30d"),
        regime_labels(panel, "7d"),
        ("2024-01-01", "2025-06-30"),
        ("2025-07-15", "2025-12-31"),
        cfg,
        progress=False,
        freq=panel.freq,
        timestamps=panel.index,
    )
    assert (fit.freq, fit.lookback_bars, fit.stride, fit.steps) == ("8h", 192, 6, 32)
    path = export_bundle(fit, spec, bundle_inputs(panel), tmp_path / "b", "# real")
    bundle = load_bundle(path)
    assert bundle.meta.parity_max_abs_diff <= 1e-5  # includes 64 real validation windows
    assert bundle.meta.required_history.min_periods == spec.serving_history("8h") + 187
    inp = make_inputs(panel, bundle)
    assert len(inp.symbols) == 11 and all(ts == panel.index[-1] for ts in inp.as_of)
    out = Predictor(bundle).predict(inp.x)
    from adaptive_beta.training.fit import predict_torch

    ref = predict_torch(fit.net, inp.x)
    assert max(float(np.max(np.abs(out[k] - ref[k]))) for k in out) <= 1e-5
    assert np.all(np.isfinite(out["beta"])) and np.all((out["beta"] > -1) & (out["beta"] < 4))
