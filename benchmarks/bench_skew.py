"""How much the train/serve publication-time fix changes served forecasts on real data.

Before the fix the service published every date-only factor point at 16:00 New York on its date,
ignoring the manifest's lags (DGS10 and EUR 1d, DXY 1h, VIX 15min); training applied them.  For
`--bars` bars spread over the dataset's last `--span`, this builds the /forecast request a client
sends (serving/client.py), builds the request's panel with the bundle's recorded rules and with
the old rule, runs the same bundle on both, and prints |new - old| per benchmark.

    python benchmarks/bench_skew.py --model BUNDLE_DIR --data docs/datasets/binance-perps-8h.toml
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.inference import make_inputs
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.models.bundle.resolve import resolve_bundle
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.serving.app_state import AppState
    from adaptive_beta.serving.client import forecast_request, raw_factor_series
    from adaptive_beta.serving.schemas import ForecastRequest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="bundle folder or models:/NAME@ALIAS")
    ap.add_argument("--data", required=True, help="dataset manifest or folder")
    ap.add_argument("--bars", type=int, default=120, help="bars sampled (default 120)")
    ap.add_argument("--span", default="365D", help="sampled over the data's last SPAN (default 365D)")
    ap.add_argument("--symbols", type=int, default=3, help="assets per request (default 3)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    bundle = load_bundle(resolve_bundle(args.model))
    panel = load_dataset(args.data)
    raw = raw_factor_series(args.data)
    old_meta = bundle.meta.model_copy(
        update={
            "inputs": {
                k: v.model_copy(update={"lag": None, "calendar": "us_close"}) if v.kind == "factor" else v
                for k, v in bundle.meta.inputs.items()
            }
        }
    )
    old_bundle = type(bundle)(**{**bundle.__dict__, "meta": old_meta})
    pred = Predictor(bundle)
    states = [
        AppState(bundle=b, predictor=pred, audit=None, model_name="", model_version="", alias=None)
        for b in (bundle, old_bundle)
    ]
    required = bundle.meta.required_history.model_dump()
    symbols = [s for s in panel.symbols if s not in required["series"]][: args.symbols]
    recent = panel.index[panel.index >= panel.index[-1] - pd.Timedelta(args.span)]
    bars = recent[np.linspace(0, len(recent) - 1, args.bars).astype(int)]
    diffs, changed_inputs = [], 0
    for t in bars:
        req = ForecastRequest.model_validate(forecast_request(panel, required, symbols, raw, end=t))
        xs = [make_inputs(s.panel_from_request(req), bundle).x for s in states]
        changed_inputs += int(not np.array_equal(xs[0], xs[1], equal_nan=True))
        new, old = (pred.predict(x)["beta"].astype(np.float64) for x in xs)
        diffs.append(np.abs(new - old))  # [assets, benchmarks]
    d = np.stack(diffs)  # [bars, assets, benchmarks]
    print(
        f"{bundle.meta.model_name} on {args.data}: {len(bars)} bars x {len(symbols)} assets "
        f"({bars[0]:%Y-%m-%d} .. {bars[-1]:%Y-%m-%d}); lags {_lags(bundle)}"
    )
    print(f"requests whose model inputs change: {changed_inputs} of {len(bars)}")
    print(f"{'benchmark':<12}{'mean |dbeta|':>14}{'median':>10}{'p95':>10}{'max':>10}")
    for k, b in enumerate(bundle.benchmarks):
        v = d[:, :, k].ravel()
        print(f"{b:<12}{v.mean():>14.2e}{np.median(v):>10.2e}{np.quantile(v, 0.95):>10.2e}{v.max():>10.2e}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _lags(bundle) -> str:
    return ", ".join(f"{k} {v.lag}" for k, v in bundle.meta.factors().items() if v.lag) or "none"


if __name__ == "__main__":
    raise SystemExit(main())
