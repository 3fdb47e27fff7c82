"""Beta forecasts the overlay backtest sizes hedges from: classical baselines, a model bundle, the truth.

All are benchmark -> T x N frames on the panel's rows; the value at row t is what the estimator
says at bar t's close.

- Baselines: `adaptive_beta.models.estimators.baselines.baseline_forecasts` (causal by contract).
- Model: a trained bundle run through ONNX Runtime on windows ending at each requested row, with
  features from the bundle's own spec computed once on the whole panel (features are causal, so
  a window ending at row t sees rows <= t only).  Rows inside or before the bundle's training or
  validation period are dropped (`out_of_sample_after`): sizing hedges with a model on the data it
  was fitted on would flatter it.
- Truth (simulated data only, `truth_oracle`): the true instantaneous beta of bar t+1, an oracle
  that looks one bar ahead by design; it bounds what any forecast could achieve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import DataError, Panel

ORACLE = "truth_oracle"


def truth_forecasts(panel: Panel) -> dict[str, pd.DataFrame]:
    """Oracle forecasts from `panel.meta['truth_betas']`: row t holds the true beta of bar t+1."""
    truth = panel.meta.get("truth_betas")
    if truth is None:
        raise DataError("the data has no simulated truth (truth_betas): the oracle needs a simulated market")
    out = {}
    for b in panel.benchmark_names:
        col = f"beta_{b}"
        if col not in truth.columns:
            continue
        wide = truth[col].unstack("symbol").reindex(index=panel.index, columns=panel.symbols)
        out[b] = wide.shift(-1)
    return out


def bundle_forecasts(
    panel: Panel, bundle, rows: np.ndarray | None = None, out_of_sample_after: pd.Timestamp | None = None
) -> dict[str, pd.DataFrame]:
    """Model betas at `rows` (default: every row) for every asset with the history the bundle needs
    (`required_history.min_periods` bars, as the service demands); NaN elsewhere."""
    from adaptive_beta.models.bundle.inference import predict_every_bar

    long, _ = predict_every_bar(panel, bundle, rows, out_of_sample_after=out_of_sample_after)
    out = {}
    for b in bundle.benchmarks:
        if len(long):
            out[b] = (
                long[b].astype(np.float64).unstack("symbol").reindex(index=panel.index, columns=panel.symbols)
            )
        else:
            out[b] = pd.DataFrame(np.nan, index=panel.index, columns=panel.symbols)
    return out
