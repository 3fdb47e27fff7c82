"""Live bars from raw data are the panel's rows, so the engine fed by them equals the batch."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_beta.models.data.schema import build_panel
from adaptive_beta.models.features.compute import compute_feature_arrays
from adaptive_beta.models.features.incremental import IncrementalFeatures, PanelBars
from adaptive_beta.models.features.live_bar import LiveBarBuilder

from .test_features_incremental import TOL, _market_inputs, _max_abs_diff


@pytest.fixture(scope="module")
def raw():
    assets, factors = _market_inputs(days=500)  # 1,500 bars: gaps, a late listing, factor outages
    return assets, factors, build_panel(assets, factors)


def _feed(builder: LiveBarBuilder, panel, start: int, stop: int):
    """Per-bar raw asset values (the files' rows on the grid) through the builder."""
    cols = {
        k: getattr(panel, k)[builder.symbols].to_numpy()
        for k in ("close", "volume", "funding_rate", "open_interest")
    }
    for i in range(start, stop):
        yield builder.bar(
            panel.index[i], *(cols[k][i] for k in ("close", "volume", "funding_rate", "open_interest"))
        )


def _publish_all(builder: LiveBarBuilder, factors) -> None:
    for name, fs in factors.items():
        for ts, v in fs.values.items():
            builder.publish(name, ts, v)


def test_live_bars_are_the_panel_rows(raw):
    assets, factors, panel = raw
    builder = LiveBarBuilder(list(assets), panel.freq, list(factors))
    assert builder.benchmark_names == panel.benchmark_names
    _publish_all(builder, factors)
    want = PanelBars(panel)
    for i, got in enumerate(_feed(builder, panel, 0, len(panel.index))):
        ref = want.bar(i)
        np.testing.assert_array_equal(got.close, ref.close)
        np.testing.assert_array_equal(got.factors, ref.factors)
        np.testing.assert_array_equal(got.factor_staleness, ref.factor_staleness)
        np.testing.assert_allclose(got.benchmarks, ref.benchmarks, rtol=1e-13, atol=0)
        assert np.array_equal(np.isnan(got.benchmarks), np.isnan(ref.benchmarks))


def test_engine_fed_by_live_bars_equals_batch_and_resumes_from_a_panel(raw):
    assets, factors, panel = raw
    cut = 900
    head = panel.slice(end=panel.index[cut - 1])
    builder = LiveBarBuilder.from_panel(head)
    for name, fs in factors.items():  # prints after the cut (earlier ones are in the panel)
        for ts, v in fs.values[fs.values.index > panel.index[cut - 1]].items():
            builder.publish(name, ts, v)
    engine = IncrementalFeatures.from_panel(head)
    rows = np.stack([engine.append(bar).values for bar in _feed(builder, panel, cut, len(panel.index))])
    worst, mismatch = _max_abs_diff(compute_feature_arrays(panel).arrays, rows, engine.columns, lo=cut)
    assert mismatch == [] and worst <= TOL


def test_live_bar_errors_name_the_field(raw):
    assets, factors, panel = raw
    builder = LiveBarBuilder(list(assets), panel.freq, list(factors))
    with pytest.raises(ValueError, match="field 'volume' has shape"):
        builder.bar(panel.index[0], np.ones(len(assets)), np.ones(2))
    with pytest.raises(ValueError, match="unknown factor 'NOPE'"):
        builder.publish("NOPE", panel.index[0], 1.0)
