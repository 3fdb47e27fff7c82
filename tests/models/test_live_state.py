"""The live model state (issue 12 item 3) forecasts exactly what the stateless path forecasts
from the same bars: windows cut from incrementally updated features equal `make_inputs` on the
batch features, bar after bar, and the kept Shapley values are the service's.

On a real trained bundle (`build_real_bundle`: simulate, features, fit, export), ONNX Runtime.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.inference import make_inputs
from adaptive_beta.models.bundle.live import LiveModelState
from adaptive_beta.models.bundle.predictor import Predictor
from adaptive_beta.models.bundle.shapley import batched_beta_shapley, bundle_groups, training_means
from adaptive_beta.models.features.incremental import PanelBars

pytest.importorskip("torch")  # the bundle is trained here


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from adaptive_beta.training.toy_bundle import build_real_bundle

    facts = build_real_bundle(tmp_path_factory.mktemp("live"), n_assets=4, days=420, seed=3)
    bundle = load_bundle(facts["bundle"])
    pred = Predictor(bundle, intra_op_threads=1)
    groups = list(bundle_groups(bundle.meta).values())
    return facts["panel"], bundle, pred, groups


def _stateless(panel, bundle, pred, groups, symbols):
    inputs = make_inputs(panel, bundle, symbols=symbols)
    out = pred.predict(inputs.x)
    phi, base, full = batched_beta_shapley(pred.predict, inputs.x, training_means(bundle), groups)
    return inputs, out, phi, base


def test_replayed_state_forecasts_what_the_stateless_path_forecasts(setup):
    panel, bundle, pred, groups = setup
    live = LiveModelState.from_panel(panel, bundle, pred.predict, groups)
    assert live.coalitions is not None  # explained by the one-GRU fast path (gru_shapley.py)
    symbols = sorted(live.latest)
    assert symbols == sorted(panel.symbols)  # every asset trades at the last bar
    inputs, out, phi, base = _stateless(panel, bundle, pred, groups, symbols)
    for i, s in enumerate(symbols):
        f = live.latest[s]
        assert f.as_of == inputs.as_of[i] == panel.index[-1]
        np.testing.assert_allclose(f.window, inputs.x[i], rtol=1e-6, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(f.beta, out["beta"][i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.lo, out["beta_lo"][i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.regime_prob, out["regime_prob"][i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.phi, phi[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(f.base, base, rtol=1e-6)
        row = inputs.rows.loc[s].to_numpy(dtype=float)
        np.testing.assert_allclose(f.row, row, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_appending_bars_equals_replaying_the_longer_history(setup):
    panel, bundle, pred, groups = setup
    k = 6
    head = panel.slice(None, panel.index[-k - 1])
    live = LiveModelState.from_panel(head, bundle, pred.predict, groups)
    first = {s: f.beta.copy() for s, f in live.latest.items()}
    bars = PanelBars(panel, live.symbols)
    for i in range(len(panel.index) - k, len(panel.index)):
        updated = live.append(bars.bar(i))
        assert sorted(updated) == sorted(panel.symbols)
        sub = panel.slice(None, panel.index[i])
        inputs, out, _, _ = _stateless(sub, bundle, pred, groups, live.symbols)
        got = np.stack([live.latest[s].beta for s in live.symbols])
        np.testing.assert_allclose(got, out["beta"], rtol=1e-5, atol=1e-5)
        assert all(live.latest[s].as_of == panel.index[i] for s in live.symbols)
    assert any(not np.allclose(first[s], live.latest[s].beta) for s in first)  # the forecasts moved


def test_an_asset_without_a_close_at_the_new_bar_keeps_its_older_forecast(setup):
    panel, bundle, pred, groups = setup
    live = LiveModelState.from_panel(panel.slice(None, panel.index[-2]), bundle, pred.predict, groups)
    bars = PanelBars(panel, live.symbols)
    bar = bars.bar(len(panel.index) - 1)
    gone = live.symbols[1]
    bar.close = bar.close.copy()
    bar.close[1] = np.nan
    updated = live.append(bar)
    assert gone not in updated and len(updated) == len(live.symbols) - 1
    assert live.latest[gone].as_of == panel.index[-2] < live.latest[updated[0]].as_of


def test_a_new_listing_is_not_forecast_before_it_has_min_periods_bars(setup):
    panel, bundle, pred, groups = setup
    late = panel.symbols[2]
    close = panel.close.copy()
    start = len(panel.index) - bundle.meta.required_history.min_periods + 3  # 3 bars short
    close.iloc[:start, close.columns.get_loc(late)] = np.nan
    thin = dataclasses.replace(panel, close=close)
    live = LiveModelState.from_panel(thin, bundle, pred.predict, groups)
    assert late not in live.latest and len(live.latest) == len(panel.symbols) - 1
    assert isinstance(live.last_timestamp, pd.Timestamp)
