"""The serving bundle as seen by the compliance pages: its model card and its explanation baseline.

A record names the bundle that served it by sha256.  If that is the bundle this process serves
(`adaptive_beta.serving.service` already loaded it) or the one `ABETA_MODEL` points at, we can show its full
model card and recompute the explanation baseline (every feature at its training mean, one ONNX
Runtime call) that /forecast records do not log.  Otherwise the page shows what the record holds.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class ModelInfo:
    def __init__(self, model_uri: str | None = None):
        if model_uri is None:
            from adaptive_beta.models.settings import get_settings

            settings = get_settings()  # ABETA_MODEL when set
            model_uri = settings.model if "model" in settings.model_fields_set else None
        self.model_uri = model_uri
        self._lock = threading.Lock()
        self._bundle: Any = None
        self._predictor: Any = None
        self._tried = False
        self._baselines: dict[str, dict[str, float]] = {}

    def _served_state(self) -> Any:
        mod = sys.modules.get("adaptive_beta.serving.service")  # never import BentoML just for this
        return getattr(mod, "_STATE", {}).get("state") if mod is not None else None

    def bundle(self) -> Any:
        state = self._served_state()
        if state is not None:
            return state.bundle
        with self._lock:
            if not self._tried and self.model_uri:
                self._tried = True
                try:
                    from adaptive_beta.models.bundle.folder import load_bundle
                    from adaptive_beta.models.bundle.resolve import resolve_bundle

                    self._bundle = load_bundle(resolve_bundle(self.model_uri))
                except Exception as exc:
                    log.warning("compliance pages: bundle %s not available: %s", self.model_uri, exc)
            return self._bundle

    def bundle_for(self, sha256: str | None) -> Any:
        b = self.bundle()
        return b if b is not None and sha256 and b.sha256 == sha256 else None

    def _predict(self, bundle: Any, x: np.ndarray) -> dict:
        state = self._served_state()
        if state is not None and state.bundle is bundle:
            return state.predict(x)
        with self._lock:
            if self._predictor is None:
                from adaptive_beta.models.bundle.predictor import Predictor

                self._predictor = Predictor(bundle, intra_op_threads=1)
            return self._predictor.predict(x)

    def baselines(self, sha256: str | None) -> dict[str, float] | None:
        """Benchmark -> baseline forecast of the bundle `sha256`, if that bundle is available."""
        bundle = self.bundle_for(sha256)
        if bundle is None:
            return None
        if bundle.sha256 not in self._baselines:
            from adaptive_beta.models.bundle.shapley import baseline_from_means

            norm = bundle.normalization
            mean = dict(zip(norm.get("columns", bundle.feature_columns), norm["mean"], strict=True))
            means = np.array([mean[c] for c in bundle.feature_columns], dtype=np.float32)
            x = baseline_from_means(means, lookback=bundle.meta.lookback_bars)[None]
            beta = self._predict(bundle, x.astype(np.float32))["beta"][0]
            self._baselines[bundle.sha256] = {
                b: float(v) for b, v in zip(bundle.benchmarks, beta, strict=True)
            }
        return self._baselines[bundle.sha256]

    def card(self, rec: dict) -> dict:
        """What the page shows about the model that served `rec`."""
        info = {
            "name": rec.get("model_name"),
            "version": rec.get("model_version"),
            "bundle_sha256": rec.get("bundle_sha256"),
            "run_id": rec.get("run_id"),
            "feature_spec_hash": rec.get("feature_spec_hash"),
            "available": False,
        }
        bundle = self.bundle_for(rec.get("bundle_sha256"))
        if bundle is not None:
            meta = bundle.meta
            info.update(
                available=True,
                card_markdown=bundle.model_card,
                training_period=meta.training_period.model_dump(),
                benchmarks=list(meta.benchmarks),
                regimes=list(meta.regimes),
                freq=meta.freq,
                lookback_bars=meta.lookback_bars,
                interval_level=meta.interval_level,
                metrics=meta.metrics,
            )
        return info
