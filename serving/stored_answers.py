"""Stored-state answers made once per bar, so a request only assembles them (issue 12).

Why: everything about an asset's kept forecast that does not depend on the request (betas,
interval, regime probabilities, drivers, summary, `as_of`) changes only when a bar arrives, yet a
`{"universe": true}` call used to rebuild, check and serialise it for 200 assets on every call
(~320 ms, most of it the audit record).  Here each kept `LiveForecast` gets, the first time it is
asked for (once per asset per bar), its response entry (the same `forecast_entry` as the
stateless path, so the shape is identical), checked finite once, and the canonical JSON of its
audit fragments (`models/audit/chain.py` `CanonicalText`).  A request then takes the entries in
the order asked and splices the fragments into one record text: one serialisation, used as is by
the size check, the hash and the database row.

What the record holds (`features`): `as_of` per symbol, `bars` (the stored bars used: range, the
assets the replay read and the hash chain `serving/live.py` `bars_chain` recomputes),
`baseline_forecast`, and no feature rows: `abeta audit reproduce` recomputes the forecasts from
the store (serving/reproduce.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from adaptive_beta.models.audit.chain import CanonicalText, canonical_array, canonical_json, canonical_object
from adaptive_beta.serving.finite import require_finite
from adaptive_beta.serving.forecast_entry import forecast_entry
from adaptive_beta.serving.schemas import RequestError


@dataclass(frozen=True)
class KeptAnswer:
    """One asset's answer as of its kept forecast, with its serialised forms."""

    forecast: object  # the LiveForecast it was made from (a new bar replaces that object)
    response: dict  # its entry of the /forecast response (never mutated: shared by requests)
    response_json: bytes  # `response` as the HTTP answer carries it (field order of the schema)
    output_text: str  # canonical JSON of `response`: the record's output.forecasts[i]
    as_of_item: str  # '"SYMBOL":<canonical as_of>': a member of the record's features.as_of
    drivers_item: str  # '"SYMBOL":<canonical drivers>': a member of the record's explanation
    error: RequestError | None = None  # a non-finite output: refused (422) when asked for


class StoredAnswers:
    """The answers of one worker's kept forecasts (serving/live.py `LiveMarket`)."""

    def __init__(self, state, live):
        self.state, self.live = state, live
        self.benches = list(state.bundle.meta.benchmarks)
        self.regimes = list(state.bundle.meta.regimes)
        self.names = list(state.groups)
        self.cache: dict[str, KeptAnswer] = {}
        self._bars: tuple[str, CanonicalText] | None = None

    def get(self, symbols: list[str] | None) -> tuple[list[KeptAnswer], dict]:
        """(answers in the order asked, `features.bars` of the record) for `symbols` (None: all);
        RequestError naming `symbols[i]` for an asset whose kept forecast is not finite."""
        wanted, kept, bars = self.live.kept(symbols)
        cache = self.cache
        answers = []
        for i, (sym, f) in enumerate(zip(wanted, kept, strict=True)):
            a = cache.get(sym)
            if a is None or a.forecast is not f:
                a = cache[sym] = self._make(sym, f)
            if a.error is not None:
                raise RequestError(a.error.message, f"symbols[{i}]" if symbols is not None else "universe")
            answers.append(a)
        return answers, bars

    def prepare(self, symbols: list[str]) -> None:
        """Make the answers of `symbols` now (POST /bars, right after their bar is forecast), so
        the first request after a bar does not pay for them (~0.13 ms of CPU per asset)."""
        kept = self.live.model.latest if self.live.model is not None else {}
        for sym in symbols:
            f = kept.get(sym)
            if f is not None:
                self.cache[sym] = self._make(sym, f)

    def bars_text(self, bars: dict) -> CanonicalText:
        """Canonical JSON of `bars`, kept while the stored bars named stay the same."""
        held = self._bars
        if held is None or held[0] != bars["sha256"] + bars["last"]:
            held = self._bars = (bars["sha256"] + bars["last"], CanonicalText(canonical_json(bars)))
        return held[1]

    def _make(self, sym: str, f) -> KeptAnswer:
        entry = forecast_entry(
            sym,
            f.as_of.isoformat(),
            (f.beta, f.lo, f.hi, f.regime_prob),
            (f.phi, f.base, f.full),
            self.benches,
            self.regimes,
            self.names,
        )
        try:
            require_finite(entry, f"forecasts[{sym}]")
        except RequestError as exc:
            error = RequestError(f"asset {sym}: {exc.message}", "symbols")
            return KeptAnswer(f, entry, b"", "", "", "", error)
        key = json.dumps(sym, ensure_ascii=False) + ":"
        # the record's explanation keeps each driver's group and contribution (views.py), as
        # the drivers' text is in output.forecasts[i] already
        drivers = {
            b: [{"group": d["group"], "contribution": d["contribution"]} for d in ds]
            for b, ds in entry["drivers"].items()
        }
        return KeptAnswer(
            f,
            entry,
            json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode(),
            canonical_json(entry),
            key + canonical_json(entry["as_of"]),
            key + canonical_json(drivers),
        )


def response_bytes(request_id: str, model: dict, answers: list[KeptAnswer]) -> bytes:
    """The stored-state /forecast answer as JSON bytes, the entries' serialised forms joined:
    parses to exactly the `ForecastResponse` of the same body (tests/serving/test_stored_records.py)."""
    head = json.dumps({"request_id": request_id, "model": model}, separators=(",", ":"), ensure_ascii=False)
    return b"".join(
        (head[:-1].encode(), b',"forecasts":[', b",".join(a.response_json for a in answers), b"]}")
    )


def record_payload(answers: list[KeptAnswer], bars_text: str, baseline: dict) -> CanonicalText:
    """The canonical text of a stored-state /forecast record's payload {explanation, features,
    output}, spliced from the answers' fragments (equal to `canonical_json` of the parsed value:
    tests/serving/test_stored_records.py)."""
    by_symbol = sorted(answers, key=lambda a: a.response["symbol"])  # object members in key order
    features = canonical_object(
        {
            "as_of": "{" + ",".join(a.as_of_item for a in by_symbol) + "}",
            "bars": bars_text,
            "baseline_forecast": canonical_json(baseline),
            "inputs": "{}",
        }
    )
    return canonical_object(
        {
            "explanation": "{" + ",".join(a.drivers_item for a in by_symbol) + "}",
            "features": features,
            "output": canonical_object({"forecasts": canonical_array([a.output_text for a in answers])}),
        }
    )
