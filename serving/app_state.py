"""What the service does per request, without BentoML: load the bundle, turn a request into the
model's inputs with the training feature code, predict, explain, hedge, and write the audit log.

Kept apart from `service.py` so the logic is plain Python (testable, reusable by batch jobs) and
torch-free: only numpy, pandas, onnxruntime and the torch-free `models` modules are imported.

Every request goes: pydantic shape checks (schemas.py) -> `check_against_model` (history length,
gaps, required series) -> `panel_from_observations` (models/data/, as training) -> `make_inputs`
(models/bundle/inference.py: the training feature pipeline) -> ONNX Runtime -> audit append -> response.
A problem with the request is a `RequestError` (422, names the field); a problem with the audit
log is `AuditUnavailable` (503, no forecast is returned).
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from adaptive_beta.models.audit.chain import payload_text
from adaptive_beta.models.bundle.shapley import (
    MAX_ROWS_PER_CALL,
    baseline_from_means,
    batched_beta_shapley,
    bundle_groups,
    shapley_of_windows,
    training_means,
)
from adaptive_beta.models.data.schema import (
    DataError,
    infer_category,
)
from adaptive_beta.serving.finite import require_finite
from adaptive_beta.serving.schemas import (
    ForecastRequest,
    RequestError,
    check_against_model,
    check_series_used,
    history_columns,
    request_sha256,
)

MAX_FEATURES_SHOWN = 10  # per detailed group, largest |contribution| first
AUDIT_CLOSES = 120  # closes per asset kept in the audit entry's inputs summary (bounds record size)
BASELINE_DOC = (
    "every feature at its training mean (bundle normalization.json), constant over the lookback window"
)


@dataclass
class ServeConfig:
    """Where the model and the audit log are; read from the settings by `from_env` (the defaults below
    are for direct construction: `from_env` resolves the audit log under ABETA_HOME)."""

    model: str = "models:/adaptive-beta@champion"  # ABETA_MODEL: bundle folder or registry URI
    audit_db: str = "audit/audit.db"  # ABETA_AUDIT_DB: path, sqlite:///path or postgresql://
    intra_op_threads: int = 1  # ABETA_ORT_THREADS: ORT threads per worker (workers x threads <= cores)
    summary_drivers: int = 3  # drivers named in the /forecast summary
    anchor_file: str | None = None  # ABETA_AUDIT_ANCHORS: signed anchors (default DB.anchors beside SQLite)
    anchor_key: str | None = None  # ABETA_AUDIT_ANCHOR_KEY: HMAC key file (default DB.anchor-key)
    anchor_every: int = 1000  # ABETA_AUDIT_ANCHOR_EVERY: anchor at least every N records ...
    anchor_seconds: float = 60.0  # ABETA_AUDIT_ANCHOR_SECONDS: ... and every T seconds
    max_record_bytes: int = 1024 * 1024  # ABETA_MAX_RECORD_BYTES: larger audit records are refused (422)
    market_db: str = "audit/market.db"  # ABETA_MARKET_DB: the market-data store POST /bars writes
    live_history_bars: int = 0  # ABETA_LIVE_HISTORY_BARS: stored bars replayed into the live state (0: all)

    @classmethod
    def from_env(cls) -> ServeConfig:
        """From the validated settings (adaptive_beta.models.settings: SettingsError on a bad value)."""
        from adaptive_beta.models.settings import get_settings

        s = get_settings()
        return cls(
            model=s.model,
            audit_db=str(s.audit_db),
            intra_op_threads=s.ort_threads,
            anchor_file=s.audit_anchors,
            anchor_key=s.audit_anchor_key,
            anchor_every=s.audit_anchor_every,
            anchor_seconds=s.audit_anchor_seconds,
            max_record_bytes=s.max_record_bytes,
            market_db=str(s.market_db),
            live_history_bars=s.live_history_bars,
        )

    def anchor_settings(self) -> Any:
        """AnchorSettings for the audit log; None (anchors off, with a warning) for a PostgreSQL
        log without an anchor file, which has no folder to put one in by default."""
        from adaptive_beta.models.audit.anchors import AnchorSettings, has_default_anchor_file

        if self.anchor_file is None and not has_default_anchor_file(self.audit_db):
            logging.getLogger("abeta.service").warning(
                "audit anchors are off: set ABETA_AUDIT_ANCHORS (or --anchor-file) for a PostgreSQL audit "
                "log, or truncation and rewrites of its end go undetected"
            )
            return None
        return AnchorSettings(self.anchor_file, self.anchor_key, self.anchor_every, self.anchor_seconds)


def resolve_model(uri: str) -> tuple[str, str | None, str | None]:
    """(local bundle folder, registry version, alias) for a folder path, `models:/NAME@ALIAS` or
    `bento:NAME[:VERSION]` (version and alias: the MLflow ones it was exported from).

    The one place the service resolves a model (torch-free: `adaptive_beta.models.bundle.resolve` imports mlflow only
    for registry URIs, and mlflow does not import torch).
    """
    from adaptive_beta.models.bundle.resolve import BENTO_SCHEME, bento_model, resolve_bundle

    path = resolve_bundle(uri)
    version = alias = None
    if uri.startswith(BENTO_SCHEME):  # the MLflow version and alias it was exported from, if any
        labels = bento_model(uri)[1].info.labels
        version, alias = labels.get("mlflow_version"), labels.get("mlflow_alias")
    elif uri.startswith("models:/"):
        name_part = uri[len("models:/") :]
        if "@" in name_part:
            name, alias = name_part.split("@", 1)
            try:
                from mlflow import MlflowClient

                version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
            except Exception:  # registry lookup is informational only
                version = None
        elif "/" in name_part:
            version = name_part.split("/", 1)[1]
    return str(path), version, alias


@dataclass
class AppState:
    bundle: Any  # adaptive_beta.models.bundle.folder.Bundle
    predictor: Any  # adaptive_beta.models.bundle.predictor.Predictor
    audit: Any  # adaptive_beta.models.audit.log.AuditLog
    model_name: str
    model_version: str
    alias: str | None
    groups: dict[str, list[int]] = field(default_factory=dict)  # group -> feature column indices
    max_record_bytes: int = ServeConfig.max_record_bytes  # ServeConfig.max_record_bytes
    market_db: str = ServeConfig.market_db  # opened on the first POST /bars (serving/endpoints/bars.py)
    live_history_bars: int = 0  # ServeConfig.live_history_bars
    live: Any = field(default=None, repr=False)  # LiveMarket, made on the first stored-state call
    answers: Any = field(default=None, repr=False)  # StoredAnswers over `live` (serving/stored_answers.py)
    coalitions: Any = field(default=False, repr=False)  # GruCoalitions | None, made on first `shapley`

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, cfg: ServeConfig) -> AppState:
        from adaptive_beta.models.audit.log import AuditLog
        from adaptive_beta.models.bundle.folder import load_bundle
        from adaptive_beta.models.bundle.predictor import Predictor

        path, version, alias = resolve_model(cfg.model)
        bundle = load_bundle(path)
        predictor = Predictor(bundle, intra_op_threads=cfg.intra_op_threads)
        audit_url = cfg.audit_db
        if "://" not in audit_url:
            os.makedirs(os.path.dirname(os.path.abspath(audit_url)), exist_ok=True)
        audit = AuditLog(audit_url, anchors=cfg.anchor_settings())
        meta = bundle.meta
        groups = bundle_groups(meta)
        return cls(
            bundle=bundle,
            predictor=predictor,
            audit=audit,
            model_name=meta.model_name,
            model_version=str(version or meta.model_version or bundle.sha256[:12]),
            alias=alias,
            groups=groups,
            max_record_bytes=cfg.max_record_bytes,
            market_db=cfg.market_db,
            live_history_bars=cfg.live_history_bars,
        )

    # ---------------------------------------------------------------- warm-up
    def warm_up_request(self, seed: int = 0) -> ForecastRequest:
        """A synthetic request the model accepts: one asset and every required series, `min_periods` bars.

        Random walks on the model's grid ending at the last whole bar; factor series are daily
        date-only closes over the same span (plus a week), as a client sends them.
        """
        rng = np.random.default_rng(seed)
        n = int(self.required["min_periods"])
        freq = self.freq
        end = pd.Timestamp.now(tz="UTC").floor("1D") - freq
        idx = pd.date_range(end=end, periods=n, freq=freq)
        mkt = rng.normal(0.0, 0.02, n)

        def walk(beta: float, noise: float) -> np.ndarray:
            return 100.0 * np.exp(np.cumsum(beta * mkt + rng.normal(0.0, noise, n)))

        stamps = [t.isoformat() for t in idx]
        asset_close = walk(1.2, 0.02)
        history = [
            {"timestamp": t, "close": float(c), "volume": 1e6, "funding_rate": 1e-4, "open_interest": 1e8}
            for t, c in zip(stamps, asset_close, strict=True)
        ]
        series = {}
        days = pd.date_range(idx[0].normalize() - pd.Timedelta("7D"), idx[-1].normalize(), freq="1D")
        for name in self.required.get("series", []):
            if self.bundle.meta.inputs[name].kind == "bar":
                closes = walk(1.0, 0.002)
                series[name] = [
                    {"timestamp": t, "close": float(c)} for t, c in zip(stamps, closes, strict=True)
                ]
            else:
                level = (
                    3.0 + np.cumsum(rng.normal(0.0, 0.01, len(days)))
                    if infer_category(name) == "rates"
                    else None
                )
                if level is None:
                    level = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, len(days))))
                series[name] = [
                    {"timestamp": d.strftime("%Y-%m-%d"), "close": float(v)}
                    for d, v in zip(days, level, strict=True)
                ]
        return ForecastRequest.model_validate(
            {"assets": [{"symbol": "WARMUPUSDT", "history": history}], "series": series}
        )

    def warm_up(self) -> float:
        """Run one forecast (features, ORT, group Shapley, per-feature detail) without logging it.

        The first request on a fresh process otherwise pays for lazy imports, pandas/numpy code
        paths and ONNX Runtime's first-run allocations (2.4 s measured vs 0.2 s after).  Returns
        the seconds it took; raises if the model cannot forecast a well-formed synthetic request.
        """
        from adaptive_beta.models.bundle.shapley import top_features_within_groups

        t0 = time.perf_counter()
        req = self.warm_up_request()
        inputs, _ = self.forecast_core(req)
        phi, _, _ = self.shapley(inputs.x)
        means = baseline_from_means(self._means(), lookback=inputs.x.shape[1])
        top_features_within_groups(
            self._beta_fn, inputs.x[0], means, self.groups, self.bundle.feature_columns, phi[0], top_groups=1
        )
        self.feature_rows(inputs)
        request_sha256(req)
        return time.perf_counter() - t0

    def warm_up_live(self) -> float | None:
        """Build the stored-state forecasts if the market-data store already exists and holds the
        model's series (seconds taken), else None: a restarted worker answers `{"symbols": ...}`
        at once instead of replaying the store on its first such request."""
        from adaptive_beta.models.database import sqlite_file
        from adaptive_beta.serving.live import StoreEmpty

        path = sqlite_file(self.market_db, "market-data store")
        if path is not None and not path.exists():
            return None
        t0 = time.perf_counter()
        try:
            self.live_market().sync()
        except StoreEmpty:
            return None
        return time.perf_counter() - t0

    # ---------------------------------------------------------------- facts about the model
    @property
    def freq(self) -> pd.Timedelta:
        from adaptive_beta.models.durations import parse_duration

        return parse_duration(self.bundle.meta.freq)

    @property
    def required(self) -> dict:
        return self.bundle.meta.required_history.model_dump()

    @property
    def feature_spec_hash(self) -> str:
        return self.bundle.meta.feature_spec_hash  # load_bundle checked it equals the spec's hash

    def model_info(self) -> dict:
        return {
            "name": self.model_name,
            "version": self.model_version,
            "bundle_sha256": self.bundle.sha256,
            "feature_spec_hash": self.feature_spec_hash,
        }

    def model_card(self) -> dict:
        meta = self.bundle.meta
        req = self.required
        return {
            **self.model_info(),
            "alias": self.alias,
            "model_card": self.bundle.model_card,
            "training_period": meta.training_period.model_dump(),
            "benchmarks": list(meta.benchmarks),
            "regimes": list(meta.regimes),
            "interval_level": meta.interval_level,
            "feature_groups": list(self.groups),
            "required_history": {
                "frequency": req["frequency"],
                "min_periods": int(req["min_periods"]),
                "series": list(req["series"]),
            },
            "explanation_baseline": BASELINE_DOC,
            "metrics": meta.metrics,
        }

    # ---------------------------------------------------------------- request -> model inputs
    def panel_from_request(self, req: ForecastRequest, extra_series: Collection[str] = ()):
        """The request's Panel, built by the data layer as training built its panel
        (`adaptive_beta.models.bundle.panel_frame.observation_panel`: the model's publication rule
        for each factor, bar series on the grid, factors as-of joined with `max_staleness`).  A
        series the model does not use is a 422 unless the endpoint uses it (`extra_series`:
        /stress shocks, /backtest benchmarks)."""
        from adaptive_beta.models.bundle.panel_frame import observation_panel

        check_series_used(req, list(self.bundle.meta.inputs), extra_series)
        assets = {}
        for a in req.assets:
            cols = history_columns(a)  # numpy columns built once while the request was validated
            assets[a.symbol] = (cols.us, {"close": cols.close, **cols.extras})
        series = {}
        for name, pts in req.series.items():
            cols = history_columns(pts)
            series[name] = (cols.us, {"close": cols.close})
        try:
            return observation_panel(self.bundle.meta, assets, series)
        except DataError as exc:
            raise RequestError(str(exc), "assets") from exc

    def inputs(self, req: ForecastRequest, symbols: list[str] | None = None):
        return self._inputs_and_panel(req, symbols)[0]

    def _inputs_and_panel(
        self, req: ForecastRequest, symbols: list[str] | None = None, extra_series: Collection[str] = ()
    ):
        """(model inputs, the request's Panel): callers that also need the panel build it once."""
        from adaptive_beta.models.bundle.inference import make_inputs

        check_against_model(
            req,
            self.freq,
            int(self.required["min_periods"]),
            list(self.required.get("series", [])),
            benchmarks=self.bundle.meta.benchmarks,
        )
        panel = self.panel_from_request(req, extra_series)
        try:
            return make_inputs(panel, self.bundle, symbols=symbols), panel
        except DataError as exc:
            sym = exc.column
            where = "assets"
            for i, a in enumerate(req.assets):
                if a.symbol == sym:
                    where = f"assets[{i}].history"
            raise RequestError(exc.message, where) from exc

    # ---------------------------------------------------------------- model calls
    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.predictor.predict(x)

    def _beta_fn(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, batch.shape[0], MAX_ROWS_PER_CALL):
            out.append(self.predict(batch[s : s + MAX_ROWS_PER_CALL])["beta"])
        return np.concatenate(out, axis=0).astype(np.float64)

    def shapley(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Group Shapley of every asset's beta: (phi [N, G, K], base [K], full [N, K]).

        By the one-GRU fast path when the bundle has that shape (models/bundle/gru_shapley.py, as
        the stored-state path: the input projection once per window and group, ~1/3 of the plain
        graph's cost), else `batched_beta_shapley` (one stacked ORT batch); the same values within
        float32 rounding (< 1e-6, checked on a probe when the fast path is made)."""
        fast = self.gru_coalitions()
        if fast is not None:
            return shapley_of_windows(fast.beta_values(x))
        return batched_beta_shapley(self.predict, x, self._means(), list(self.groups.values()))

    def gru_coalitions(self):
        """The bundle's `GruCoalitions` (None: not one forward GRU, or the probe disagreed), made
        once (at `warm_up`, so no request pays for the graph split and probe)."""
        if self.coalitions is False:
            from adaptive_beta.models.bundle.gru_shapley import GruCoalitions

            threads = self.predictor.session.get_session_options().intra_op_num_threads
            self.coalitions = GruCoalitions.from_bundle(
                self.bundle, list(self.groups.values()), self._means(), self.predict, threads
            )
        return self.coalitions

    def _means(self) -> np.ndarray:
        return training_means(self.bundle)

    # ---------------------------------------------------------------- audit
    def new_request_id(self) -> str:
        """A fresh request id (32 hex digits); its own method so a test can force collisions."""
        return uuid.uuid4().hex

    def log_unique(
        self, body: dict, endpoint: str, caller: str, req, inputs, output, explanation, baseline=None
    ) -> None:
        """`audit_append` under body["request_id"]; on a duplicate id draw a new one (up to 3 times).

        The id in the response is always the one logged; a collision never reaches the client as
        an error.  Three collisions in a row mean the id source is broken: AuditUnavailable (503).
        """
        require_finite(body)  # the response: what is logged below is part of it
        require_finite(explanation or {}, "explanation")
        self._unique_id(
            body,
            endpoint,
            lambda rid: self.audit_append(endpoint, rid, caller, req, inputs, output, explanation, baseline),
        )

    def _unique_id(self, body: dict, endpoint: str, append) -> None:
        """`append(request_id)`, drawing a new body["request_id"] on a duplicate (up to 3 times)."""
        from adaptive_beta.models.audit.log import AuditUnavailable, DuplicateRequest

        for _ in range(3):
            try:
                return append(body["request_id"])
            except DuplicateRequest:
                body["request_id"] = self.new_request_id()
        raise AuditUnavailable(f"audit: three request ids in a row were already logged ({endpoint})")

    def log_stored(self, body: dict, endpoint: str, caller: str, req, answers: list, bars: dict) -> None:
        """Log a stored-state /forecast answered from kept answers (serving/stored_answers.py):
        the record's payload is spliced from their canonical fragments (checked finite when they
        were made), measured once for the size limit and stored and hashed as that text."""
        from adaptive_beta.serving.stored_answers import record_payload

        base = answers[0].forecast.base
        baseline = {b: float(base[k]) for k, b in enumerate(self.bundle.meta.benchmarks)}
        payload = record_payload(answers, self.stored_answers().bars_text(bars), baseline)
        symbols = [a.response["symbol"] for a in answers]

        def append(request_id: str) -> None:
            self.append_prepared(self._entry_head(request_id, caller, endpoint, symbols, req), payload)

        self._unique_id(body, endpoint, append)

    @staticmethod
    def feature_rows(inputs) -> dict:
        """symbol -> {feature: value or None (non-finite)}: the as-of feature row the audit log keeps."""
        # numpy rows + math.isfinite: the same dict as rows.to_dict(orient="index"), 10x cheaper per request
        # labels by `tolist` (iterating pandas' Arrow-backed string indexes is ~10x slower)
        cols = [str(c) for c in inputs.rows.columns.tolist()]
        values = inputs.rows.to_numpy(dtype=np.float64).tolist()
        isfinite = math.isfinite
        return {
            s: {c: (v if isfinite(v) else None) for c, v in zip(cols, row, strict=True)}
            for s, row in zip(inputs.rows.index.tolist(), values, strict=True)
        }

    @staticmethod
    def inputs_summary(req, symbols) -> dict:
        """symbol -> the price history the request carried, compact: bar count, first/last stamp and
        the last AUDIT_CLOSES closes (UTC ISO stamps, closes), so a reviewer can see what the model saw
        without the request body (only its sha256 is logged).  Bounded: MAX_ASSETS x AUDIT_CLOSES."""
        wanted = set(symbols)
        out = {}
        for a in req.assets:
            if a.symbol not in wanted:
                continue
            cols = history_columns(a)  # either form of the history (objects or columns)
            out[a.symbol] = {
                "n_bars": len(cols.us),
                "first": _iso_us(cols.us[0]),
                "last": _iso_us(cols.us[-1]),
                "timestamps": _iso_many(cols.us[-AUDIT_CLOSES:]),
                "closes": cols.close[-AUDIT_CLOSES:].tolist(),
            }
        return out

    def audit_append(
        self, endpoint: str, request_id: str, caller: str, req, inputs, output, explanation, baseline=None
    ) -> None:
        """Durably log the call; raises adaptive_beta.models.audit.log.AuditUnavailable (-> 503) if it cannot.

        `baseline` ({benchmark: beta with every feature at its training mean}) is logged with the
        features when the endpoint explained its forecast, so a review page can draw the waterfall
        without the bundle."""
        bars = getattr(inputs, "bars", None)  # a stored-state request: the bars name the inputs
        features = {
            "as_of": {s: t.isoformat() for s, t in zip(inputs.symbols, inputs.as_of, strict=True)},
            **({} if bars else {"rows": self.feature_rows(inputs)}),
            "inputs": self.inputs_summary(req, inputs.symbols),
            **({"bars": bars} if bars else {}),
            "baseline_forecast": baseline,
        }
        self.append_prepared(
            self._entry_head(request_id, caller, endpoint, list(inputs.symbols), req),
            payload_text({"features": features, "output": output, "explanation": explanation}),
        )

    def append_prepared(self, head: dict, payload: str) -> None:
        """Append a record whose payload is already its canonical text: the text is measured
        once for the size limit and hashed and stored as it is (the writer thread does not
        re-serialise it).  The other fields (ids, model, hashes, symbols) are counted generously."""
        self._check_size(len(payload.encode()) + 1024 + sum(len(s) + 3 for s in head["symbols"]))
        self.audit.append({**head, "payload": payload})

    def _entry_head(self, request_id: str, caller: str, endpoint: str, symbols: list, req) -> dict:
        """The record's fields besides its payload: who asked, what for, with which model."""
        return {
            "request_id": request_id,
            "caller": caller,
            "endpoint": endpoint,
            "symbols": symbols,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "bundle_sha256": self.bundle.sha256,
            "run_id": self.bundle.meta.run_id,
            "feature_spec_hash": self.feature_spec_hash,
            "input_sha256": request_sha256(req),
        }

    def _check_size(self, size: int) -> None:
        """RequestError (422, field `body`) when a record of `size` bytes exceeds
        `max_record_bytes`: the record is refused whole (never truncated) and the response
        withheld with it."""
        if size > self.max_record_bytes:
            raise RequestError(
                f"the audit record of this request would be {size} bytes, above the limit of "
                f"{self.max_record_bytes} bytes (ABETA_MAX_RECORD_BYTES): send fewer assets, series "
                "or scenarios per request",
                "body",
            )

    # ---------------------------------------------------------------- what every endpoint needs
    def live_market(self):
        """This worker's stored-state forecasts (serving/live.py), created on first use over the
        market-data store of `market_db` (the store POST /bars writes)."""
        if self.live is None:
            from adaptive_beta.serving.live import LiveMarket
            from adaptive_beta.serving.market_stores import market_store

            self.live = LiveMarket(self, market_store(self.market_db), self.live_history_bars)
        return self.live

    def stored_answers(self):
        """The per-asset answers of the kept forecasts (serving/stored_answers.py), made once per bar."""
        if self.answers is None:
            from adaptive_beta.serving.stored_answers import StoredAnswers

            self.answers = StoredAnswers(self, self.live_market())
        return self.answers

    def forecast_with_shapley(self, req: ForecastRequest):
        """(inputs, model outputs, (phi, base, full)) of a /forecast or /explain request: computed
        now from the request's history, or, for a stored-state request (`symbols` / `universe`),
        read from the forecasts kept since the last bar (serving/live.py)."""
        if req.stored:
            return self.live_market().inputs(None if req.universe else list(req.symbols))
        inputs, out = self.forecast_core(req)
        return inputs, out, self.shapley(inputs.x)

    def forecast_core(self, req: ForecastRequest, symbols: list[str] | None = None):
        """(inputs, model outputs) for the request's assets (or `symbols`), non-finite outputs refused."""
        inputs, out, _ = self.forecast_core_with_panel(req, symbols)
        return inputs, out

    def forecast_core_with_panel(
        self, req: ForecastRequest, symbols: list[str] | None = None, extra_series: Collection[str] = ()
    ):
        """(inputs, model outputs, the request's Panel), with non-finite outputs refused."""
        inputs, panel = self._inputs_and_panel(req, symbols, extra_series)
        out = self.predict(inputs.x)
        for name in ("beta", "beta_lo", "beta_hi", "regime_prob"):
            bad = ~np.isfinite(out[name]).all(axis=1)
            if bad.any():
                sym = inputs.symbols[int(np.argmax(bad))]
                raise RequestError(
                    f"asset {sym}: the model produced a non-finite {name}; its history lacks data the model needs",
                    "assets",
                )
        return inputs, out, panel


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _utc_index(stamps: list) -> pd.DatetimeIndex:
    """Request datetimes -> UTC DatetimeIndex[us] (naive = UTC), as `pd.to_datetime(stamps, utc=True)`.

    Exact integer microseconds since the epoch (datetime arithmetic, no float), then one numpy cast:
    about half the time of pandas' object-array conversion on the ~6,000 stamps of a request.
    """
    if not stamps:  # pandas' own (empty) result, unit included
        return pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    us = np.fromiter(
        (((d if d.tzinfo is not None else d.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND for d in stamps),
        dtype=np.int64,
        count=len(stamps),
    )
    return pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC")


def _iso_us(us: int) -> str:
    """int64 microseconds since the epoch -> UTC ISO 8601 (`+00:00`): only the stamps the audit
    summary keeps are converted, not a pandas index of the whole history."""
    return (_EPOCH + timedelta(microseconds=int(us))).isoformat()


def _iso_many(us: np.ndarray) -> list[str]:
    """`_iso_us` of each stamp; whole seconds (every bar grid) in one numpy call (~10x cheaper)."""
    if len(us) and not (us % 1_000_000).any():
        return [t + "+00:00" for t in np.datetime_as_string(us.astype("datetime64[us]"), unit="s").tolist()]
    return [_iso_us(u) for u in us.tolist()]
