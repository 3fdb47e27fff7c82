"""Beta forecasts the overlay backtest sizes hedges from: classical baselines, a model bundle, the truth.

All are benchmark -> T x N frames on the panel's rows; the value at row t is what the estimator
says at bar t's close.

- Baselines: `models.estimators.baseline_forecasts` (causal by contract).
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

from models.schema import DataError, Panel

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


def training_end(meta: dict) -> pd.Timestamp | None:
    """Last date the bundle saw in training or validation (from meta `training_period`), if stated."""
    period = meta.get("training_period")
    if not period:
        return None
    values: list = []
    if isinstance(period, dict):
        for v in period.values():
            values += list(v) if isinstance(v, list | tuple) else [v]
    elif isinstance(period, list | tuple):
        values = list(period)
    stamps = []
    for v in values:
        try:
            ts = pd.Timestamp(v)
        except (TypeError, ValueError):
            continue
        stamps.append(ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC"))
    return max(stamps) if stamps else None


def bundle_forecasts(
    panel: Panel, bundle, rows: np.ndarray | None = None, out_of_sample_after: pd.Timestamp | None = None
) -> dict[str, pd.DataFrame]:
    """Model betas at `rows` (default: every row) for every asset with the history the bundle needs
    (`required_history.min_periods` bars, as the service demands); NaN elsewhere."""
    from models.features import compute_features
    from models.predictor import Predictor
    from models.windowing import feature_cube, gather_windows, n_steps

    if panel.freq_label != bundle.meta["freq"]:
        raise DataError(
            f"data frequency is {panel.freq_label} but the model was trained on {bundle.meta['freq']} bars"
        )
    table = compute_features(panel, bundle.spec)
    columns = bundle.feature_columns
    absent = [c for c in columns if c not in table.frame.columns]
    if absent:
        raise DataError(f"feature pipeline did not produce column(s) {absent} the model expects")
    cube, ts, syms = feature_cube(table.frame, columns, panel.index, panel.symbols)
    lookback, stride = int(bundle.meta["lookback_bars"]), int(bundle.meta["stride"])
    span = (n_steps(lookback, stride) - 1) * stride + 1
    base = [columns.index(bundle.meta["base_columns"][b]) for b in bundle.benchmarks]
    valid = np.isfinite(cube[:, :, base]).all(axis=2)
    keep_rows = np.zeros(len(ts), dtype=bool)
    keep_rows[np.arange(len(ts)) if rows is None else np.asarray(rows, dtype=np.int64)] = True
    keep_rows[: span - 1] = False
    if out_of_sample_after is not None:
        keep_rows &= np.asarray(ts > out_of_sample_after)
    valid &= keep_rows[:, None]
    # the service refuses an asset with less history than the bundle needs (feature warm-up + window)
    need = int(bundle.meta.get("required_history", {}).get("min_periods", span))
    close = panel.close.reindex(columns=syms).to_numpy(dtype=float)
    seen = np.cumsum(np.isfinite(close), axis=0) > 0
    age = np.cumsum(seen, axis=0)  # bars since the first close, inclusive
    valid &= age >= need
    t_idx, n_idx = np.nonzero(valid)
    arrays = {b: np.full((len(ts), len(syms)), np.nan) for b in bundle.benchmarks}
    pred = Predictor(bundle, intra_op_threads=1) if t_idx.size else None
    pairs = np.stack([t_idx, n_idx], axis=1).astype(np.int64)
    for lo in range(0, len(pairs), 1024):
        chunk = pairs[lo : lo + 1024]
        x = gather_windows(cube, chunk, lookback, stride)
        beta = pred.predict(x)["beta"]
        for k, b in enumerate(bundle.benchmarks):
            arrays[b][chunk[:, 0], chunk[:, 1]] = beta[:, k]
    return {b: pd.DataFrame(a, index=panel.index, columns=panel.symbols) for b, a in arrays.items()}
