"""Prediction-service latency and throughput, side by side with its floors, in ONE run and ONE table.

    python benchmarks/bench_service.py [--root /tmp/abeta-bench] [--requests 300] [--cap-s 30]

Rows (all on 127.0.0.1, one worker, one ORT thread, audit log on SQLite WAL synchronous=FULL):
  /forecast (one asset)  at 1, 8 and 32 concurrent clients (bounded asyncio load, httpx)
  /forecast (columns)    the same request with histories and series as columns, at 1 and 32 clients
  no-op BentoML          the same bodies posted to benchmarks/noop_service.py (same worker/traffic)
  /explain               at 1 client
  in-process rows        (b) Predictor.predict on the request's window; (c) features + predict
                         (AppState.inputs: checks, panel, features, windows) + predict; also the
                         request parsing alone and the whole AppState.forecast (with Shapley, audit);
                         (e) the floors of the columnar path, each alone: decoding the body
                         (json.loads), the panel, the features, Shapley, the durable audit append

The bundle is trained the way the main job does (default FeatureSpec, default lookback 64d / 32
steps; one epoch on a 1000-day simulated market: model quality is irrelevant to speed) and
cached under --root.  Each level sends a fixed number of requests and stops at a time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from pathlib import Path

import numpy as np

from adaptive_beta.serving.client import cpu_seconds, process_tree

LEVELS = (1, 8, 32)
# not the defaults (ABETA_MAX_CONCURRENCY is 16 by default): README and docs/serving.md quote these beside the figures
ENV = {"ABETA_WORKERS": "1", "ABETA_ORT_THREADS": "1", "ABETA_MAX_CONCURRENCY": "64"}


def ensure_bundle(root: Path) -> tuple[Path, Path]:
    """(data folder, bundle folder) under root, trained once (needs torch) and reused afterwards."""
    if not (root / "bundle" / "manifest.json").exists():
        from adaptive_beta.training.toy_bundle import build_real_bundle

        root.mkdir(parents=True, exist_ok=True)
        build_real_bundle(root, spec={}, days=1000, model={"lookback": "64d", "max_steps": 32})
    return root / "data", root / "bundle"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if values else float("nan")


def row(name: str, clients: int, lat: list[float], errors: int, wall: float) -> dict:
    return {
        "name": name,
        "clients": clients,
        "n": len(lat),
        "errors": errors,
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "rps": len(lat) / wall if wall > 0 else float("nan"),
    }


def columns_level(url: str, payload: bytes, headers: dict, clients: int, pid: int, args) -> dict:
    """One load level of the columns body, with the server's CPU ms per request beside it."""
    from adaptive_beta.serving.client import bounded_load

    cpu0 = cpu_seconds(process_tree(pid))
    lat, err, wall = asyncio.run(bounded_load(url, payload, headers, clients, args.requests, args.cap_s))
    out = row("", clients, lat, err, wall)
    out["cpu_ms"] = (
        (cpu_seconds(process_tree(pid)) - cpu0) * 1e3 / (len(lat) + err + 1)
    )  # + the warm-up request
    return out


def timed(fn, n: int, cap_s: float) -> list[float]:
    fn()
    out = []
    deadline = time.perf_counter() + cap_s
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        if time.perf_counter() > deadline:
            break
    return out


def in_process_rows(
    bundle_dir: Path, body: dict, columns: dict, tmp: Path, n: int, cap_s: float
) -> list[dict]:
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.models.features.compute import compute_feature_arrays
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.endpoints.forecast import forecast
    from adaptive_beta.serving.schemas import ForecastRequest

    raw, raw_cols = json.dumps(body), json.dumps(columns)
    req = ForecastRequest.model_validate_json(raw)
    state = AppState.load(ServeConfig(model=str(bundle_dir), audit_db=str(tmp / "inproc-audit.db")))
    state.warm_up()
    gc.collect()
    gc.freeze()  # as the service does after its warm-up
    gc.set_threshold(20_000, 20, 20)
    pred = Predictor(load_bundle(bundle_dir), intra_op_threads=1)
    x = state.inputs(req).x
    req_cols = ForecastRequest.model_validate_json(raw_cols)
    panel = state.panel_from_request(req_cols)
    record = _record_like_a_forecast(state, req_cols)
    rows = []
    for name, fn in (
        ("(b) in-process ORT predict", lambda: pred.predict(x)),
        ("(c) in-process features+predict", lambda: state.predict(state.inputs(req).x)),
        ("    request parsing (pydantic)", lambda: ForecastRequest.model_validate_json(raw)),
        ("    request parsing, columns", lambda: ForecastRequest.model_validate_json(raw_cols)),
        ("    in-process endpoints.forecast", lambda: forecast(state, req, "bench")),
        (
            "    columns: parse + endpoints.forecast",
            lambda: forecast(state, ForecastRequest.model_validate_json(raw_cols), "bench"),
        ),
        # floors of the columnar path: what a request cannot avoid, each measured alone
        ("(e) json.loads of the columns body", lambda: json.loads(raw_cols)),
        ("(e) request panel (columns)", lambda: state.panel_from_request(req_cols)),
        ("(e) features (compute_feature_arrays)", lambda: compute_feature_arrays(panel, state.bundle.spec)),
        ("(e) exact group Shapley (ORT)", lambda: state.shapley(x)),
        ("(e) durable audit append alone", lambda: state.audit.append(next(record))),
    ):
        t0 = time.perf_counter()
        lat = timed(fn, n, cap_s)
        rows.append(row(name, 1, lat, 0, time.perf_counter() - t0))
    state.audit.close()
    return rows


def _record_like_a_forecast(state, req):
    """Endless audit entries equal to the one /forecast logs for `req`, each with a new request id
    (the append alone: record preparation, the writer's canonical JSON and hash, commit and fsync)."""
    import uuid

    from adaptive_beta.models.audit.chain import ENTRY_FIELDS
    from adaptive_beta.serving.endpoints.forecast import forecast

    rid = forecast(state, req, "bench")["request_id"]
    logged = next(r for r in state.audit.query(limit=5) if r["request_id"] == rid)
    entry = {k: v for k, v in logged.items() if k in ENTRY_FIELDS}
    while True:
        yield {**entry, "request_id": uuid.uuid4().hex}


def main() -> None:
    import tempfile

    import httpx

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.serving.client import (
        LocalService,
        as_columns,
        bounded_load,
        forecast_request,
        raw_factor_series,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "abeta-bench-service")
    ap.add_argument("--requests", type=int, default=300, help="requests per load level")
    ap.add_argument("--cap-s", type=float, default=30.0, help="time cap per load level (seconds)")
    args = ap.parse_args()

    data_dir, bundle_dir = ensure_bundle(args.root)
    panel = load_dataset(data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="abeta-bench-"))
    results: list[dict] = []
    with LocalService(str(bundle_dir), tmp / "audit.db", tmp / "service.log", extra_env=ENV) as svc:
        info = httpx.get(svc.url + "/model", headers=svc.headers(), timeout=30).json()
        symbols = [s for s in panel.symbols if s not in info["required_history"]["series"]][:1]
        body = forecast_request(panel, info["required_history"], symbols, raw_factor_series(data_dir))
        payload = json.dumps(body).encode()
        columns = as_columns(body)
        col_payload = json.dumps(columns).encode()
        print(
            f"request: 1 asset, {info['required_history']['min_periods']} bars, "
            f"{len(body['series'])} series, {len(payload) / 1024:.0f} KiB as objects, "
            f"{len(col_payload) / 1024:.0f} KiB as columns"
        )
        for c in LEVELS:
            lat, err, wall = asyncio.run(
                bounded_load(svc.url + "/forecast", payload, svc.headers(), c, args.requests, args.cap_s)
            )
            results.append(row("/forecast", c, lat, err, wall))
        for c in (1, 32):
            r = columns_level(svc.url + "/forecast", col_payload, svc.headers(), c, svc.proc.pid, args)
            results.append({**r, "name": "/forecast (columns)"})
        explain = json.dumps({**body, "top_groups": 2}).encode()
        lat, err, wall = asyncio.run(
            bounded_load(svc.url + "/explain", explain, svc.headers(), 1, args.requests // 2, args.cap_s)
        )
        results.append(row("(d) /explain", 1, lat, err, wall))
    with LocalService(
        "unused",
        tmp / "noop-audit.db",
        tmp / "noop.log",
        extra_env=ENV,
        service="benchmarks.noop_service:Noop",
    ) as noop:
        for c in LEVELS:
            lat, err, wall = asyncio.run(
                bounded_load(noop.url + "/forecast", payload, {}, c, args.requests, args.cap_s)
            )
            results.append(row("(a) no-op BentoML", c, lat, err, wall))
        for c in (1, 32):
            r = columns_level(noop.url + "/forecast", col_payload, {}, c, noop.proc.pid, args)
            results.append({**r, "name": "(a) no-op, columns body"})
    results += in_process_rows(bundle_dir, body, columns, tmp, args.requests, args.cap_s)

    print(
        f"\n{'':40s} {'clients':>7s} {'n':>5s} {'errors':>6s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} "
        f"{'req/s':>8s} {'server CPU ms/req':>18s}"
    )
    for r in results:
        cpu = f"{r['cpu_ms']:18.1f}" if "cpu_ms" in r else ""
        print(
            f"{r['name']:40s} {r['clients']:7d} {r['n']:5d} {r['errors']:6d} "
            f"{r['p50']:8.2f} {r['p90']:8.2f} {r['p99']:8.2f} {r['rps']:8.1f} {cpu}"
        )
    get = {(r["name"], r["clients"]): r for r in results}
    fc1, noop1 = get[("/forecast", 1)], get[("(a) no-op BentoML", 1)]
    fc32, noop32 = get[("/forecast", 32)], get[("(a) no-op BentoML", 32)]
    ex1 = get[("(d) /explain", 1)]
    col1, noopc1 = get[("/forecast (columns)", 1)], get[("(a) no-op, columns body", 1)]
    errors = sum(r["errors"] for r in results)
    checks = [
        (
            "/forecast p50 <= 2x no-op p50",
            fc1["p50"] <= 2 * noop1["p50"],
            f"{fc1['p50']:.1f} vs {noop1['p50']:.1f} ms",
        ),
        (
            "throughput at 32 clients >= 50 % of no-op",
            fc32["rps"] >= 0.5 * noop32["rps"],
            f"{fc32['rps']:.1f} vs {noop32['rps']:.1f} req/s",
        ),
        (
            "columns /forecast p50 <= 3x no-op (same bytes)",
            col1["p50"] <= 3 * noopc1["p50"],
            f"{col1['p50']:.1f} vs {noopc1['p50']:.1f} ms",
        ),
        (
            "columns: server CPU/request <= 3x no-op's",  # the same ratio without the machine's load
            col1["cpu_ms"] <= 3 * noopc1["cpu_ms"],
            f"{col1['cpu_ms']:.1f} vs {noopc1['cpu_ms']:.1f} ms (informative, not the issue's goal)",
        ),
        ("zero errors", errors == 0, f"{errors} errors"),
        (
            "/explain p50 <= 3x /forecast p50",
            ex1["p50"] <= 3 * fc1["p50"],
            f"{ex1['p50']:.1f} vs {fc1['p50']:.1f} ms",
        ),
    ]
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name:48s} {detail}")
    print(
        f"\nlogs and audit databases in {tmp}; median of p50s: {statistics.median(r['p50'] for r in results):.2f} ms"
    )


if __name__ == "__main__":
    main()
