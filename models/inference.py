"""`make_inputs`: a request's panel -> the model's input windows, with the bundle's own feature spec.

Torch-free.  Features are computed by the same `models.features.compute_features` as in training
(no training/serving skew); each asset's window ends at its latest bar.  History shortfalls and
missing series are `DataError`s that name the asset or series and how much is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bundle import Bundle
from models.schema import DataError, Panel
from models.windowing import latest_windows


@dataclass
class ModelInputs:
    """What the predictor consumes and what the audit log records."""

    x: np.ndarray  # [N, L, F] float32 raw features, bundle column order
    symbols: list[str]  # N assets, row order of x
    as_of: list[pd.Timestamp]  # per asset: open time of the bar the window ends at
    rows: pd.DataFrame  # the feature row at as_of per asset (index symbol, columns feature_columns)


def check_history(panel: Panel, bundle: Bundle, symbols: list[str]) -> None:
    """Raise DataError if a required series is absent or an asset has fewer bars than the model needs."""
    req = bundle.meta["required_history"]
    need = int(req["min_periods"])
    have_series = set(panel.benchmark_names) | set(panel.factor_names)
    missing = [s for s in req.get("series", []) if s not in have_series]
    if missing:
        raise DataError(
            f"request lacks series {missing} required by the model (it has {sorted(have_series)})"
        )
    if panel.freq_label != bundle.meta["freq"]:
        raise DataError(
            f"data frequency is {panel.freq_label} but the model was trained on {bundle.meta['freq']} bars"
        )
    for sym in symbols:
        close = panel.close[sym].to_numpy(dtype=float)
        finite = np.nonzero(np.isfinite(close))[0]
        have = 0 if finite.size == 0 else len(close) - int(finite[0])
        if have < need:
            raise DataError(
                f"asset {sym}: {have} bars of {bundle.meta['freq']} history, the model needs {need} "
                f"({need - have} missing)",
                column=sym,
            )


def make_inputs(
    panel: Panel, bundle: Bundle, symbols: list[str] | None = None, allow_stale: bool = False
) -> ModelInputs:
    """Latest window per asset of `panel` for `bundle` (all panel assets unless `symbols` is given).

    A window must end at the asset's last bar with a close unless `allow_stale`: serving a
    forecast built from older data while saying nothing would mislead the hedger.
    """
    from models.features import compute_features

    symbols = list(symbols or panel.symbols)
    check_history(panel, bundle, symbols)
    table = compute_features(panel, bundle.spec)
    columns = bundle.feature_columns
    absent = [c for c in columns if c not in table.frame.columns]
    if absent:
        raise DataError(f"feature pipeline did not produce column(s) {absent} the model expects")
    base = [bundle.meta["base_columns"][b] for b in bundle.benchmarks]
    try:
        x, as_of, ends = latest_windows(
            table.frame,
            columns,
            int(bundle.meta["lookback_bars"]),
            int(bundle.meta["stride"]),
            symbols,
            timestamps=panel.index,
            require_finite=base,
        )
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if not allow_stale:
        for sym, ts in zip(symbols, as_of, strict=True):
            last = panel.close[sym].last_valid_index()
            if last is not None and ts < last:
                raise DataError(
                    f"asset {sym}: base beta not available at its last bar {last} (latest usable bar {ts})",
                    column=sym,
                )
    frame = table.frame
    rows = pd.DataFrame(
        [frame.loc[(ts, sym), columns].to_numpy(dtype=float) for sym, ts in zip(symbols, as_of, strict=True)],
        index=pd.Index(symbols, name="symbol"),
        columns=columns,
    )
    return ModelInputs(x=x.astype(np.float32), symbols=symbols, as_of=as_of, rows=rows)
