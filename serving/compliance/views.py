"""Turn a stored audit record into what the pages show (pure functions, no HTTP, no database).

What the service logs per endpoint (serving/app_state.py):
  /forecast  output {"forecasts": [{symbol, as_of, betas{b: {beta, lo, hi}}, regime_probabilities,
             summary, drivers}]}; explanation {symbol: {benchmark: [top-3 drivers {group, contribution}]}}
  /explain   output {symbol: {benchmark: beta}}; explanation {"explanations": [{symbol, as_of,
             benchmarks{b: {forecast, baseline_forecast, groups[{group, contribution, features}]}}}]}
  /hedge     output {orders, portfolio_beta, target, residual_beta, betas_used, ...}; no explanation
  all        features {"as_of": {symbol: time}, "rows": {symbol: {feature: value}} (not in a
             stored-state record, which names the stored bars instead: "bars"),
             "inputs": {symbol: {n_bars, first, last, timestamps, closes}} (the last 120 closes the
             request carried), "baseline_forecast": {benchmark: beta} or null (/forecast, /explain)}
             (older records lack "inputs" and "baseline_forecast": the pages fall back, see app.py)
"""

from __future__ import annotations

import math
from typing import Any

from adaptive_beta.serving.compliance.charts import Step, waterfall_steps


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def forecasts_of(rec: dict) -> list[dict]:
    """Per symbol: {symbol, as_of, betas: [{benchmark, beta, lo, hi}], regimes: [{name, p}], summary}."""
    out = rec.get("output") or {}
    as_of = ((rec.get("features") or {}).get("as_of")) or {}
    rows: list[dict] = []
    if isinstance(out, dict) and isinstance(out.get("forecasts"), list):
        for f in out["forecasts"]:
            betas = [
                {
                    "benchmark": b,
                    "beta": _num(v.get("beta")),
                    "lo": _num(v.get("lo")),
                    "hi": _num(v.get("hi")),
                }
                for b, v in (f.get("betas") or {}).items()
            ]
            regimes = [{"name": r, "p": _num(p)} for r, p in (f.get("regime_probabilities") or {}).items()]
            rows.append(
                {
                    "symbol": f.get("symbol"),
                    "as_of": f.get("as_of") or as_of.get(f.get("symbol")),
                    "betas": betas,
                    "regimes": regimes,
                    "summary": f.get("summary"),
                }
            )
    elif rec.get("endpoint") == "/explain" and isinstance(out, dict):
        for sym, per in out.items():
            if isinstance(per, dict):
                betas = [{"benchmark": b, "beta": _num(v), "lo": None, "hi": None} for b, v in per.items()]
                rows.append(
                    {"symbol": sym, "as_of": as_of.get(sym), "betas": betas, "regimes": [], "summary": None}
                )
    elif rec.get("endpoint") == "/hedge" and isinstance(out, dict):
        for sym, per in (out.get("betas_used") or {}).items():
            betas = [
                {"benchmark": b, "beta": _num(v), "lo": None, "hi": None} for b, v in (per or {}).items()
            ]
            rows.append(
                {"symbol": sym, "as_of": as_of.get(sym), "betas": betas, "regimes": [], "summary": None}
            )
    return rows


def headline(rec: dict) -> str:
    """One short text for the records table: the first symbol's betas."""
    fc = forecasts_of(rec)
    if not fc:
        return ""
    first = fc[0]
    parts = [f"{b['benchmark']} {b['beta']:.2f}" for b in first["betas"] if b["beta"] is not None]
    more = f" (+{len(fc) - 1} more)" if len(fc) > 1 else ""
    return f"{first['symbol']}: " + ", ".join(parts) + more


def explanations_of(rec: dict, baselines: dict[str, float] | None = None) -> list[dict]:
    """Per (symbol, benchmark): {symbol, benchmark, forecast, baseline, exact, steps, groups, features}.

    `baselines` (benchmark -> baseline forecast of the serving bundle) completes /forecast records,
    which log only the top drivers and not the baseline.
    """
    expl = rec.get("explanation")
    out: list[dict] = []
    if not isinstance(expl, dict):
        return out
    if isinstance(expl.get("explanations"), list):  # /explain: every group, baseline logged
        for e in expl["explanations"]:
            for b, per in (e.get("benchmarks") or {}).items():
                groups = [(g["group"], float(g["contribution"])) for g in per.get("groups", [])]
                features = [
                    {"group": g["group"], **f}
                    for g in per.get("groups", [])
                    for f in g.get("features", [])
                    if _num(f.get("contribution")) is not None
                ]
                features.sort(key=lambda f: -abs(float(f["contribution"])))
                fc, base = float(per["forecast"]), _num(per.get("baseline_forecast"))
                out.append(_entry(e.get("symbol"), b, fc, base, groups, features[:15], complete=True))
        return out
    forecasts = {f["symbol"]: f for f in forecasts_of(rec)}
    for sym, per_bench in expl.items():  # /forecast: top drivers per symbol and benchmark
        if not isinstance(per_bench, dict):
            continue
        betas = {b["benchmark"]: b["beta"] for b in forecasts.get(sym, {}).get("betas", [])}
        for b, drivers in per_bench.items():
            if betas.get(b) is None or not isinstance(drivers, list):
                continue
            groups = [(d["group"], float(d["contribution"])) for d in drivers]
            base = (baselines or {}).get(b)
            out.append(_entry(sym, b, float(betas[b]), base, groups, [], complete=False))
    return out


def _entry(sym, bench, forecast, baseline, groups, features, complete: bool) -> dict:
    steps: list[Step] = waterfall_steps(forecast, groups, baseline)
    return {
        "symbol": sym,
        "benchmark": bench,
        "forecast": forecast,
        "baseline": baseline,
        "complete": complete,
        "steps": steps,
        "groups": sorted(groups, key=lambda g: -abs(g[1])),
        "features": features,
    }


def feature_summary(rec: dict) -> list[dict]:
    """Per symbol: {symbol, as_of, n, own: [(feature, value)]} (own-history features shown in full).

    A stored-state record logs no feature rows (they are reproduced from the stored bars it
    names): one entry per symbol of `as_of`, with n = 0."""
    feats = rec.get("features") or {}
    as_of = feats.get("as_of") or {}
    rows = feats.get("rows") or ({s: {} for s in as_of} if isinstance(feats.get("bars"), dict) else {})
    out = []
    for sym, values in rows.items():
        values = values or {}
        own = [
            (k, _num(v))
            for k, v in values.items()
            if k.startswith(("ret_", "vol_", "drawdown_", "volume_z_", "funding_"))
        ]
        out.append({"symbol": sym, "as_of": as_of.get(sym), "n": len(values), "own": own})
    return out


def logged_baselines(rec: dict) -> dict[str, float] | None:
    """Benchmark -> the baseline forecast the service logged with the record (None if not logged)."""
    base = (rec.get("features") or {}).get("baseline_forecast")
    if not isinstance(base, dict):
        return None
    out = {str(b): _num(v) for b, v in base.items()}
    clean = {b: v for b, v in out.items() if v is not None}
    return clean or None


def price_history(rec: dict) -> dict[str, dict]:
    """symbol -> {n_bars, first, last, rows: [(ISO stamp, close)]}: the closes the request carried.

    Read from the logged inputs summary; {} for records logged before it existed.  Malformed
    entries (stamps and closes of different lengths) are dropped rather than drawn misaligned.
    """
    inputs = (rec.get("features") or {}).get("inputs")
    out: dict[str, dict] = {}
    if not isinstance(inputs, dict):
        return out
    for sym, h in inputs.items():
        if not isinstance(h, dict):
            continue
        stamps, closes = h.get("timestamps") or [], h.get("closes") or []
        if not stamps or len(stamps) != len(closes):
            continue
        out[str(sym)] = {
            "n_bars": h.get("n_bars"),
            "first": h.get("first"),
            "last": h.get("last"),
            "rows": [(str(t), _num(c)) for t, c in zip(stamps, closes, strict=True)],
        }
    return out


def short_time(iso: str | None) -> str:
    """'2025-03-01T00:00:00+00:00' -> '2025-03-01 00:00' (UTC stamps as the pages show them)."""
    return (iso or "")[:16].replace("T", " ")


def stored_form(rec: dict) -> dict:
    """A flattened record (AuditReader.query) back in the stored form that `record_hash` hashes."""
    from adaptive_beta.models.audit.chain import COLUMNS, PAYLOAD_FIELDS

    stored = {k: rec.get(k) for k in COLUMNS if k not in ("payload", "hash")}
    stored["payload"] = {k: rec.get(k) for k in PAYLOAD_FIELDS}
    return stored


def own_hash_ok(rec: dict) -> bool:
    """True if the record's stored hash matches its contents (the record alone, not the links)."""
    from adaptive_beta.models.audit.chain import record_hash

    try:
        return record_hash(stored_form(rec)) == rec.get("hash")
    except (TypeError, ValueError, KeyError):
        return False


def chain_status_for(seq: int, last: dict | None) -> tuple[str, str]:
    """(css class, sentence) for one record given the cached last full verification, if any."""
    if last is None:
        return "unknown", "The chain has not been verified in this session: use 'Verify chain'."
    when = last["at"]
    if last["ok"]:
        if seq <= last["n_records"]:
            return "ok", f"Intact: the whole chain through seq {last['n_records']} verified at {when}."
        return "unknown", f"Appended after the last verification ({when}, {last['n_records']} records)."
    bad = last["first_bad_seq"]
    if bad is not None and seq < bad:
        return (
            "ok",
            f"Links up to this record are intact; the chain breaks later, at seq {bad} (verified {when}).",
        )
    return "bad", f"The chain is broken at or before this record (first bad seq {bad}, verified {when})."
