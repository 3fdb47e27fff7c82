"""`abeta evaluate model`: score a trained bundle, unchanged, beside every baseline on another dataset.

The out-of-sample test a researcher runs before trusting a model elsewhere: other assets,
another venue, a later period.  The bundle is run with ONNX Runtime exactly as served (same
feature code, same windows); nothing is refitted.  The evaluation period is one block (`oos`)
from the first bar where the model has a full window (or `--start`) to the last bar with a
realised target; R^2 there is centred on that block's own mean realised beta (no training
period exists on this data), which makes it conservative.
"""

from __future__ import annotations

import pandas as pd

from adaptive_beta.models.data.schema import DataError


def model_forecasts(panel, bundle, features=None) -> tuple[pd.DataFrame, list[str]]:
    """(long frame (timestamp, symbol) of `<bench>`, `<bench>_lo`, `<bench>_hi` at every bar with a window,
    feature columns this dataset cannot produce: fed as the training mean)."""
    from adaptive_beta.models.bundle.inference import predict_every_bar

    missing = [b for b in bundle.benchmarks if b not in panel.benchmark_names]
    if missing:
        raise DataError(
            f"dataset lacks benchmark(s) {missing} the model forecasts (it has {panel.benchmark_names})"
        )
    preds, absent = predict_every_bar(
        panel, bundle, features=features, require_history=False, allow_absent=True, batch=4096
    )
    if preds.empty:
        raise DataError("no bar of this dataset has enough history for the model's window")
    return preds, absent


def evaluate_model(
    model: str,
    data: str,
    horizon: str = "30d",
    start: str | None = None,
    n_boot: int = 500,
    progress: bool = True,
    ray_address: str | None = None,
):
    """Scorecard (records `kind: model` beside every baseline) of `model` on `data`; with
    `ray_address` each benchmark is scored as a Ray task there (the same records)."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.durations import to_periods
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.training.pipeline import _coverage_records
    from adaptive_beta.training.scorecard import score_forecasts
    from adaptive_beta.training.splits import Fold

    bundle = load_bundle(resolve_bundle(model))
    panel = load_dataset(data)
    from adaptive_beta.models.features.targets import forward_betas, forward_moments, true_forward_betas

    features = compute_features(panel, bundle.spec)
    preds, absent = model_forecasts(panel, bundle, features)
    targets = forward_betas(panel, horizon)
    finite = targets.notna().any(axis=1)
    last = finite[finite].index.get_level_values("timestamp").max()
    first = preds.index.get_level_values("timestamp").min()
    if start is not None:
        first = max(first, pd.Timestamp(start, tz="UTC"))
    if not first < last:
        raise DataError(
            f"no evaluation period: the model's first window ({first}) is after the last realised target ({last})"
        )
    fold = Fold(0, first, last, None, None, first, last)
    name = f"{bundle.meta.model_name}:{bundle.meta.model_version or bundle.sha256[:12]}"
    forecasts = dict(
        baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)
    )
    forecasts[name] = preds[list(bundle.benchmarks)]
    kinds = {k: "baseline" for k in forecasts} | {name: "model"}
    truth = true_forward_betas(panel, horizon) if "truth_betas" in panel.meta else None
    card = score_forecasts(
        forecasts,
        kinds,
        targets,
        forward_moments(panel, horizon),
        [fold],
        truth,
        horizon_bars=to_periods(horizon, panel.freq),
        block_bars=to_periods("60d", panel.freq),
        n_boot=n_boot,
        progress=progress,
        ray_address=ray_address,
    )
    for r in card.records:
        if r["split"] == "fold0":
            r["split"] = "oos"
    card.records = [r for r in card.records if r["split"] != "pooled"] + [
        {**r, "split": "pooled"} for r in card.records if r["split"] == "oos"
    ]
    in_period = preds[
        (preds.index.get_level_values("timestamp") >= first)
        & (preds.index.get_level_values("timestamp") <= last)
    ]
    card.records += _coverage_records(
        in_period, targets, list(bundle.benchmarks), "pooled", name, card.samples
    )
    card.meta.update(
        {
            "model": model,
            "bundle_sha256": bundle.sha256,
            "period": [str(first), str(last)],
            "features_absent": absent,
        }
    )
    return card
