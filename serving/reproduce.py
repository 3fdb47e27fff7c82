"""Reproduce a stored-state forecast from the market-data store (issue 12 item 3).

Why: a stored-state audit record does not copy the feature rows (a 200-asset universe record
was ~1.3 MB of them); it names the stored bars instead (`features.bars`: the replay's first bar,
the bar it replayed to, the last bar, the assets read and the bars hash chain).  Here the same
steps the service took are redone on exactly those bars: replay the window first..replayed_to
into a fresh live state, append each later bar from its two-bar tail window, then compare every
logged number with the recomputed one.  The bars hash chain is recomputed on the way, so a store
that no longer holds the same bars (a restatement) is reported, not silently compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptive_beta.models.bundle.live import LiveModelState
from adaptive_beta.serving.live import TAIL_BARS, LiveMarket, chain


@dataclass(frozen=True)
class Reproduction:
    """What `reproduce` found: the recomputed answers and how far the logged ones are from them."""

    bars_match: bool  # the store still holds exactly the bars the record names
    max_abs_diff: float  # over every logged beta, lo, hi, regime probability and driver contribution
    recomputed: dict  # symbol -> the response entry recomputed from the store
    missing: list[str]  # logged symbols the replay gave no forecast for


class NotReproducible(ValueError):
    """The record cannot be reproduced here (not a stored-state record, another model)."""


def model_state(uri: str):
    """An AppState with the model of `uri` and no audit log (reproducing writes nothing)."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.models.bundle.shapley import bundle_groups
    from adaptive_beta.serving.app_state import AppState, resolve_model

    path, version, alias = resolve_model(uri)
    bundle = load_bundle(path)
    meta = bundle.meta
    return AppState(
        bundle=bundle,
        predictor=Predictor(bundle, intra_op_threads=1),
        audit=None,
        model_name=meta.model_name,
        model_version=str(version or meta.model_version or bundle.sha256[:12]),
        alias=alias,
        groups=bundle_groups(meta),
    )


def _us(stamp: str) -> int:
    return int(pd.Timestamp(stamp).value // 1000)


def replay(state, store, bars: dict) -> tuple[LiveModelState, str]:
    """(the live state as of `bars["last"]`, the bars hash chain) rebuilt from `store` exactly as
    the worker built it: the replay window, then one appended bar at a time."""
    live = LiveMarket(state, store)
    live.assets = list(bars["assets"])
    live.read_series = [s for s in live.series if s not in live.assets]
    first, replayed_to, last = _us(bars["first"]), _us(bars["replayed_to"]), _us(bars["last"])
    n = (replayed_to - first) // live.freq_us + 1
    window = store.window(live.assets, live.read_series, n, end_us=replayed_to)
    panel = window.panel(state.bundle.meta)
    live.model = LiveModelState.from_panel(panel, state.bundle, state.predict, list(state.groups.values()))
    digest = window.sha256
    for t in range(replayed_to + live.freq_us, last + 1, live.freq_us):
        w = store.window(live.assets, live.read_series, TAIL_BARS, end_us=t)
        live.model.append(live._bar(w, t))
        digest = chain(digest, w.sha256)
    return live.model, digest


def reproduce(state, store, record: dict) -> Reproduction:
    """Recompute a stored-state /forecast record's forecasts from `store` with `state`'s bundle."""
    from adaptive_beta.serving.forecast_entry import forecast_entry

    bars = (record.get("features") or {}).get("bars")
    if not isinstance(bars, dict) or "assets" not in bars or record.get("endpoint") != "/forecast":
        raise NotReproducible(
            f"record {record.get('request_id')} is not a stored-state /forecast record naming its stored bars"
        )
    if record.get("bundle_sha256") != state.bundle.sha256:
        raise NotReproducible(
            f"record {record['request_id']} was served by bundle {record.get('bundle_sha256')}, "
            f"not the loaded {state.bundle.sha256}: load that model (--model)"
        )
    model, digest = replay(state, store, bars)
    meta = state.bundle.meta
    benches, regimes, names = list(meta.benchmarks), list(meta.regimes), list(state.groups)
    recomputed, missing, diff = {}, [], 0.0
    for logged in record["output"]["forecasts"]:
        f = model.latest.get(logged["symbol"])
        if f is None:
            missing.append(logged["symbol"])
            continue
        entry = forecast_entry(
            f.symbol,
            f.as_of.isoformat(),
            (f.beta, f.lo, f.hi, f.regime_prob),
            (f.phi, f.base, f.full),
            benches,
            regimes,
            names,
        )
        recomputed[f.symbol] = entry
        diff = max(diff, _max_diff(logged, entry))
    return Reproduction(digest == bars["sha256"], diff, recomputed, missing)


def _numbers(entry: dict) -> list[float]:
    """Every number of a response entry, in a fixed order (drivers by group name)."""
    out = [entry["betas"][b][k] for b in sorted(entry["betas"]) for k in ("beta", "lo", "hi")]
    out += [entry["regime_probabilities"][r] for r in sorted(entry["regime_probabilities"])]
    for b in sorted(entry["drivers"]):
        out += [d["contribution"] for d in sorted(entry["drivers"][b], key=lambda d: d["group"])]
    return out


def _max_diff(logged: dict, entry: dict) -> float:
    """Largest absolute difference between two entries' numbers (inf if `as_of` or the drivers
    named differ: then they are not the same forecast)."""
    if logged["as_of"] != entry["as_of"]:
        return float("inf")
    a, b = _numbers(logged), _numbers(entry)
    if len(a) != len(b):
        return float("inf")
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if a else 0.0
