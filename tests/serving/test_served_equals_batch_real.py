"""Served equals batch, on real data: `abeta train`'s training API on the real 8h perps and daily
manifests (factors with calendars and publication lags), the bundle served by `bentoml serve`,
requests built by the client from the dataset; at sampled bars (weekends, a US DST change, US
holidays) the HTTP /forecast answer equals the batch forecast of the same bundle on the same
history (`predict_every_bar`, the backtest's and `abeta evaluate model`'s path) within 1e-6.

A served factor value that arrived a day earlier than in training (the old rule: every date at
16:00 New York, lags ignored) changes the forecast by far more than 1e-6 at these bars
(`test_the_old_publication_rule_would_not_match`), so the test catches that skew.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import E2E_SPEC, Server, auth

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-6
CASES = {
    "8h": {
        "manifest": "binance-perps-8h.toml",
        "start": "2023-01-01",  # training data from here (keeps the fit under a minute)
        "bars": [
            "2025-03-08 16:00",  # Saturday
            "2025-03-09 08:00",  # Sunday: US DST starts
            "2025-03-10 16:00",  # Monday after the change: the US close is 20:00 UTC
            "2025-07-04 16:00",  # US holiday (Friday): no SPY/DGS10 print
            "2025-07-07 00:00",  # Monday after it: DGS10 of Thursday, published Monday (lag 1d)
            "2025-11-02 16:00",  # Sunday: US DST ends
        ],
    },
    "1d": {
        "manifest": "yahoo-crypto-daily.toml",
        "start": "2020-06-01",
        "bars": [
            "2024-11-02",  # Saturday
            "2024-11-03",  # Sunday: US DST ends
            "2024-11-04",  # Monday after the change
            "2024-11-28",  # Thanksgiving
            "2024-12-25",  # Christmas (Wednesday)
            "2025-01-20",  # Martin Luther King day (Monday)
        ],
    },
}
TINY = {  # a tiny TrainConfig: one fold, one epoch, hidden 8, short feature windows
    "horizon": "30d",
    "features": E2E_SPEC,
    "model": {
        "hidden": 8,
        "lookback": "16d",
        "max_steps": 8,
        "epochs": 1,
        "batch_size": 128,
        "max_train_samples": 1500,
    },
    "walk_forward": {"train_min": "365d", "val": "60d", "test": "90d", "max_folds": 1},
    "register_model": False,
    "promote": False,
    "n_boot": 50,
    "attribution_windows": 8,
    "plot_assets": 1,
    "progress": False,
}


def _manifest(real_data_dir: Path, name: str, out: Path) -> Path:
    """The shipped manifest with its data root pointed at `real_data_dir`."""
    lines = (ROOT / "docs" / "datasets" / name).read_text().splitlines()
    text = "\n".join(f'root = "{real_data_dir}"' if ln.startswith("root =") else ln for ln in lines)
    out.write_text(text + "\n")
    return out


@pytest.fixture(scope="module", params=list(CASES))
def served(request, real_data_dir, tmp_path_factory):
    """(case, panel, bundle, server): a bundle trained by the training API, served over HTTP."""
    pytest.importorskip("torch")
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.training.train_config import load_train_config
    from adaptive_beta.training.train_run import train

    case = CASES[request.param]
    root = tmp_path_factory.mktemp(f"real-{request.param}")
    manifest = _manifest(real_data_dir, case["manifest"], root / case["manifest"])
    panel = load_dataset(manifest)
    cfg = load_train_config(None, data=str(manifest), **TINY)
    result = train(cfg, panel=panel.slice(start=case["start"]))
    bundle = load_bundle(result.bundle_dir)
    srv = Server(result.bundle_dir, root / "audit" / "audit.db", root / "server.log")
    try:
        srv.wait_ready(timeout=120)
        yield case, panel, bundle, srv, manifest
    finally:
        srv.stop()


def _request(panel, bundle, manifest, t: pd.Timestamp) -> dict:
    from adaptive_beta.serving.client import forecast_request, raw_factor_series

    required = bundle.meta.required_history.model_dump()
    symbols = [s for s in panel.symbols if s not in required["series"]][:3]
    return forecast_request(panel, required, symbols, raw_factor_series(manifest), end=t)


def _batch(panel, bundle, body, t: pd.Timestamp) -> pd.DataFrame:
    """`predict_every_bar` on the dataset's panel cut to the request's history, at bar t."""
    from adaptive_beta.models.bundle.inference import predict_every_bar

    first = pd.Timestamp(body["assets"][0]["history"][0]["timestamp"])
    cut = panel.slice(first, t).select([a["symbol"] for a in body["assets"]])
    long, _ = predict_every_bar(cut, bundle, rows=[len(cut.index) - 1])
    return long.xs(t, level="timestamp")


def test_served_forecast_equals_batch_forecast_at_weekends_dst_and_holidays(served):
    case, panel, bundle, srv, manifest = served
    assert any(s.lag for s in bundle.meta.factors().values())  # DGS10 1d, DXY 1h, VIX 15min
    worst = 0.0
    for bar in case["bars"]:
        t = pd.Timestamp(bar, tz="UTC")
        body = _request(panel, bundle, manifest, t)
        r = httpx.post(srv.url + "/forecast", json=body, headers=auth(), timeout=120)
        assert r.status_code == 200, (bar, r.text)
        want = _batch(panel, bundle, body, t)
        for f in r.json()["forecasts"]:
            assert f["as_of"] == t.isoformat(), bar
            for b in bundle.benchmarks:
                got = f["betas"][b]
                row = want.loc[f["symbol"]]
                for key, col in (("beta", b), ("lo", f"{b}_lo"), ("hi", f"{b}_hi")):
                    diff = abs(got[key] - float(row[col]))
                    worst = max(worst, diff)
                    assert diff <= ATOL, (bar, f["symbol"], b, key, got[key], float(row[col]))
    assert worst <= ATOL


def test_the_old_publication_rule_would_not_match(served):
    """Publishing every date at 16:00 New York without the manifest's lags (the old serving rule)
    moves the served forecasts by more than the tolerance: the equality above is not vacuous."""
    from adaptive_beta.models.bundle.inference import make_inputs
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.serving.app_state import AppState
    from adaptive_beta.serving.schemas import ForecastRequest

    case, panel, bundle, _, manifest = served
    no_lags = bundle.meta.model_copy(
        update={"inputs": {k: v.model_copy(update={"lag": None}) for k, v in bundle.meta.inputs.items()}}
    )
    old = type(bundle)(**{**bundle.__dict__, "meta": no_lags})
    pred = Predictor(bundle)
    gaps = []
    for bar in case["bars"]:
        body = _request(panel, bundle, manifest, pd.Timestamp(bar, tz="UTC"))
        req = ForecastRequest.model_validate(body)
        outs = []
        for b in (bundle, old):
            state = AppState(
                bundle=b, predictor=pred, audit=None, model_name="", model_version="", alias=None
            )
            outs.append(pred.predict(make_inputs(state.panel_from_request(req), bundle).x)["beta"])
        gaps.append(float(np.abs(outs[0] - outs[1]).max()))
    assert max(gaps) > 10 * ATOL, gaps
